// Pieces several pages share: the stream picker and the player of a stream's original file.

import { allPages, api, mediaUrl } from "../api.js";
import { h } from "../dom.js";

export async function streamIds() {
  const [listed, jobs] = await Promise.all([api("/v1/streams"), api("/v1/jobs?limit=200")]);
  return [...new Set([...listed.items, ...jobs.items.map((j) => j.stream_id)])].sort();
}

// A <select> of streams that navigates to #/<page>/<stream>.
export function streamPicker(page, selected) {
  const select = h("select", { id: "stream-picker", "aria-label": "Stream" }, h("option", { value: "", text: "choose a stream…" }));
  select.addEventListener("change", () => {
    location.hash = `#/${page}/${encodeURIComponent(select.value)}`;
  });
  streamIds().then((ids) => {
    for (const id of ids) select.append(h("option", { value: id, text: id }));
    select.value = selected || "";
  });
  return h("label", { class: "picker" }, "Stream ", select);
}

// The original video of a file source; seek(t) plays from media time t (the token is fetched once).
export class Player {
  constructor(streamId) {
    this.streamId = streamId;
    this.video = h("video", { id: "player", controls: true, muted: true, preload: "metadata" });
    this.note = h("p", { class: "hint player-note" });
    this.el = h("div", { class: "player" }, this.video, this.note);
    this.ready = null;
  }

  async load() {
    if (!this.ready) {
      this.ready = mediaUrl(this.streamId).then((url) => {
        this.video.src = url;
        return new Promise((resolve, reject) => {
          this.video.addEventListener("loadedmetadata", resolve, { once: true });
          this.video.addEventListener("error", () => reject(new Error("the video could not be loaded")), { once: true });
        });
      });
      this.ready.catch((err) => {
        this.note.textContent = `No video: ${err.message}`;
        this.ready = null;
      });
    }
    return this.ready;
  }

  async seek(t) {
    await this.load();
    this.video.currentTime = t;
    this.note.textContent = `playing from ${t.toFixed(1)} s`;
    this.video.play().catch(() => {}); // autoplay may be refused; the position is set either way
  }
}

export { allPages };
