// Sports: ranked highlights (click to watch in the original), and the reel built from the top k.

import { api, blobUrl } from "../api.js";
import { clear, errorBox, fmtConf, fmtTime, h } from "../dom.js";
import { Player, streamPicker } from "./common.js";

export function show(root, streamId) {
  root.append(h("h2", { text: "Sports highlights" }), h("p", { class: "toolbar" }, streamPicker("sports", streamId)));
  if (!streamId) return null;
  const base = `/v1/streams/${encodeURIComponent(streamId)}`;
  const list = h("ol", { class: "highlights", id: "highlights" });
  const player = new Player(streamId);
  const k = h("input", { id: "reel-k", type: "number", min: 1, max: 50, value: 5 });
  const reel = h("video", { id: "reel", controls: true, muted: true, preload: "auto" });
  const reelNote = h("p", { class: "hint", id: "reel-note" });
  const build = h("button", {
    type: "button",
    id: "build-reel",
    text: "Build reel",
    onclick: async () => {
      build.disabled = true;
      reelNote.textContent = "cutting the reel…";
      try {
        const made = await api(`${base}/reel`, { method: "POST", body: { k: Number(k.value) } });
        if (reel.src) URL.revokeObjectURL(reel.src);
        reel.src = await blobUrl(made.url); // the key goes in a header: fetch, then an object URL
        reelNote.textContent = `${made.highlights.length} highlights, ${made.duration_s.toFixed(1)} s`;
        reelNote.dataset.duration = String(made.duration_s);
        reel.play().catch(() => {});
      } catch (err) {
        reelNote.textContent = err.message;
      }
      build.disabled = false;
    },
  });
  root.append(
    h("div", { class: "columns" },
      h("div", {}, h("h3", { text: "Ranked" }), list),
      h("div", {}, h("h3", { text: "Reel" }), h("p", { class: "toolbar" }, "top ", k, " ", build), reel, reelNote, h("h3", { text: "Original" }), player.el)),
  );
  api(`${base}/highlights?k=20`)
    .then((top) => {
      if (!top.items.length) list.append(h("li", { class: "hint", text: top.sport ? "no highlights yet" : "not a sports stream" }));
      for (const item of top.items) {
        list.append(h("li", { class: "highlight", dataset: { event: item.event_id } },
          h("button", { type: "button", class: "seek", text: `${fmtTime(item.start)}–${fmtTime(item.end)}`, onclick: () => player.seek(item.start) }),
          " ", h("strong", { class: "label", text: item.label }),
          ` score ${item.score.toFixed(3)} · ${fmtConf(item.confidence)} `,
          h("span", { class: "description", text: item.description })));
      }
    })
    .catch((err) => clear(list).append(errorBox(err)));
  return null;
}
