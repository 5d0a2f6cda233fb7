// Live alerts: the SSE feed of event changes, newest first, one card per event updated in place.

import { Feed, blobUrl } from "../api.js";
import { fmtConf, fmtTime, fmtWall, h } from "../dom.js";

const REPLAY_S = 3600; // on opening, show the last hour of changes (the feed's ids are ms timestamps)

export function show(root) {
  const state = h("span", { class: "feed-state", id: "feed-state", text: "connecting…" });
  const counter = h("span", { class: "hint", id: "feed-count", text: "0 changes" });
  const list = h("ol", { class: "alerts", id: "alerts" });
  const cards = new Map(); // event id -> card
  let changes = 0;
  const since = Date.now() - REPLAY_S * 1000;
  const feed = new Feed(`/v1/feed?since=${since}`, {
    onState: (s, detail) => {
      state.textContent = `${s}${detail ? ` (${detail})` : ""}`;
      state.dataset.state = s;
    },
    onMessage: (msg) => {
      if (msg.event === "gap") return;
      changes += 1;
      counter.textContent = `${changes} changes`;
      const card = render(msg.data, cards.get(msg.data.event.event_id), msg.id);
      cards.set(msg.data.event.event_id, card);
      list.prepend(card); // newest first: a changed event moves to the top
    },
  });
  const reconnect = h("button", { type: "button", id: "reconnect", text: "Reconnect", onclick: () => feed.reconnect() });
  root.append(h("h2", { text: "Live alerts" }), h("p", { class: "toolbar" }, state, " ", counter, " ", reconnect), list);
  return { stop: () => feed.close() };
}

function render(change, card, feedId) {
  const e = change.event;
  const changesSeen = card ? Number(card.dataset.changes) + 1 : 1;
  const img = card ? card.querySelector("img") : h("img", { class: "thumb", alt: `key frame of ${e.label}` });
  if (!card) {
    blobUrl(`/v1/events/${encodeURIComponent(e.event_id)}/thumbnail.jpg`)
      .then((url) => { img.src = url; })
      .catch(() => img.classList.add("missing"));
  }
  const next = h(
    "li",
    { class: `alert state-${change.kind}`, dataset: { event: e.event_id, kind: change.kind, changes: changesSeen, feedId } },
    img,
    h(
      "div",
      { class: "alert-body" },
      h("div", { class: "alert-head" }, h("strong", { class: "label", text: e.label }), h("span", { class: `badge kind-${change.kind}`, text: change.kind })),
      h("div", { class: "meta" }, `${e.stream_id} · ${fmtConf(e.confidence)} · ${fmtTime(e.start)}–${fmtTime(e.end)} · `, h("time", { text: fmtWall(e.wall_start || e.updated_at) })),
      h("div", { class: "description", text: e.description }),
      h("a", { href: `#/timeline/${encodeURIComponent(e.stream_id)}`, text: "timeline" }),
    ),
  );
  if (card) card.replaceWith(next);
  return next;
}
