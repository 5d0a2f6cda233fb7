// Lecture: chapters and key points (click a time to seek), the summary rendered from Markdown as DOM,
// refreshed while the lecture is still being analysed (partial).

import { api } from "../api.js";
import { clear, errorBox, fmtTime, h } from "../dom.js";
import { renderMarkdown } from "../markdown.js";
import { Player, streamPicker } from "./common.js";

const REFRESH_MS = 3000;

export function show(root, streamId) {
  root.append(h("h2", { text: "Lecture" }), h("p", { class: "toolbar" }, streamPicker("lecture", streamId)));
  if (!streamId) return null;
  const base = `/v1/streams/${encodeURIComponent(streamId)}`;
  const player = new Player(streamId);
  const state = h("p", { class: "lecture-state", id: "lecture-state" });
  const chapters = h("ol", { class: "chapters", id: "chapters" });
  const points = h("ul", { class: "key-points", id: "key-points" });
  const summary = h("div", { class: "summary", id: "summary" });
  root.append(state, h("div", { class: "columns" },
    h("div", {}, h("h3", { text: "Chapters" }), chapters, h("h3", { text: "Key points" }), points),
    h("div", {}, player.el, h("h3", { text: "Summary" }), summary)));
  const seekButton = (t) => h("button", { type: "button", class: "seek", dataset: { t }, text: fmtTime(t), onclick: () => player.seek(t) });
  let timer = null;
  let stopped = false;
  async function refresh() {
    try {
      const [s, md] = await Promise.all([api(`${base}/summary`), api(`${base}/summary.md`)]);
      state.textContent = s.partial ? `Partial: analysed up to ${fmtTime(s.covered_until)}; refreshing while it runs.` : `Complete: ${fmtTime(s.covered_until)} analysed.`;
      state.dataset.partial = String(s.partial);
      clear(chapters).append(...s.chapters.map((c) => h("li", { class: "chapter" }, seekButton(c.start), " ", h("strong", { class: "title", text: c.title }), h("div", { class: "chapter-summary", text: c.summary }))));
      clear(points).append(...s.key_points.map((p) => h("li", {}, seekButton(p.t), " ", h("span", { text: p.text }))));
      clear(summary).append(renderMarkdown(md));
      if (s.partial && !stopped) timer = setTimeout(refresh, REFRESH_MS);
    } catch (err) {
      clear(state).append(errorBox(err));
      if (err.status === 404 && !stopped) timer = setTimeout(refresh, REFRESH_MS); // nothing analysed yet
    }
  }
  refresh();
  return { stop: () => { stopped = true; clearTimeout(timer); } };
}
