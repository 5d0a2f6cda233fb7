// Timeline of one stream: events, segments and captions as tracks over media time; zoom, pan, filters;
// an event's evidence (thumbnail with its boxes, clips, frame times) and the original video at that time.

import { allPages, api, blobUrl } from "../api.js";
import { clear, errorBox, fmtConf, fmtTime, h } from "../dom.js";
import { Player, streamPicker } from "./common.js";

let selectedId = null; // the event whose evidence is shown, kept across redraws

export function show(root, streamId) {
  root.append(h("h2", { text: "Timeline" }), h("p", { class: "toolbar" }, streamPicker("timeline", streamId)));
  if (!streamId) return null;
  const body = h("div", { class: "timeline-body" }, h("p", { class: "hint", text: "loading…" }));
  root.append(body);
  load(body, streamId).catch((err) => clear(body).append(errorBox(err)));
  return null;
}

async function load(body, streamId) {
  const base = `/v1/streams/${encodeURIComponent(streamId)}`;
  const [events, segments, captions] = await Promise.all([
    allPages(`${base}/events?limit=500`),
    allPages(`${base}/segments?limit=500`),
    allPages(`${base}/captions?limit=500`),
  ]);
  const end = Math.max(10, ...[...events, ...segments, ...captions].map((r) => r.end));
  const view = { t0: 0, t1: end, full: end };
  const filters = { label: "", minConf: 0 };
  const player = new Player(streamId);
  const detail = h("aside", { class: "evidence", id: "evidence" }, h("p", { class: "hint", text: "Click an event to see its evidence." }));
  const tracks = h("div", { class: "tracks", id: "tracks" });
  const draw = () => drawTracks(tracks, view, { events: events.filter((e) => keep(e, filters)), segments, captions }, (e) => showEvidence(detail, e, player));
  clear(body).append(controls(view, filters, events, draw), tracks, h("div", { class: "below" }, detail, player.el));
  panAndZoom(tracks, view, draw);
  draw();
}

function keep(e, f) {
  return (!f.label || e.label === f.label) && e.confidence >= f.minConf;
}

function controls(view, filters, events, draw) {
  const zoom = (factor) => () => {
    const mid = (view.t0 + view.t1) / 2;
    const half = Math.min(view.full, Math.max(1, (view.t1 - view.t0) * factor)) / 2;
    setView(view, mid - half, mid + half);
    draw();
  };
  const pan = (frac) => () => {
    const d = (view.t1 - view.t0) * frac;
    setView(view, view.t0 + d, view.t1 + d);
    draw();
  };
  const labels = [...new Set(events.map((e) => e.label))].sort();
  const label = h("select", { id: "label-filter", "aria-label": "Label" }, h("option", { value: "", text: "all labels" }), labels.map((l) => h("option", { value: l, text: l })));
  label.addEventListener("change", () => { filters.label = label.value; draw(); });
  const conf = h("input", { id: "conf-filter", type: "range", min: 0, max: 1, step: 0.05, value: 0 });
  const confText = h("span", { text: "≥ 0%" });
  conf.addEventListener("input", () => { filters.minConf = Number(conf.value); confText.textContent = `≥ ${fmtConf(filters.minConf)}`; draw(); });
  const button = (id, text, fn) => h("button", { type: "button", id, text, onclick: fn });
  return h(
    "div",
    { class: "toolbar" },
    button("zoom-in", "Zoom in", zoom(0.5)), button("zoom-out", "Zoom out", zoom(2)),
    button("pan-left", "◀", pan(-0.25)), button("pan-right", "▶", pan(0.25)),
    button("zoom-reset", "All", () => { setView(view, 0, view.full); draw(); }),
    button("reload", "Reload", () => window.dispatchEvent(new HashChangeEvent("hashchange"))),
    " ", label, " confidence ", conf, confText,
  );
}

function setView(view, t0, t1) {
  const width = Math.min(view.full, t1 - t0);
  const start = Math.min(Math.max(0, t0), view.full - width);
  view.t0 = start;
  view.t1 = start + width;
}

function panAndZoom(tracks, view, draw) {
  tracks.addEventListener("wheel", (ev) => {
    ev.preventDefault();
    const box = tracks.getBoundingClientRect();
    const at = view.t0 + ((ev.clientX - box.left) / box.width) * (view.t1 - view.t0);
    const factor = ev.deltaY > 0 ? 1.25 : 0.8;
    setView(view, at - (at - view.t0) * factor, at + (view.t1 - at) * factor);
    draw();
  }, { passive: false });
  let drag = null;
  tracks.addEventListener("pointerdown", (ev) => {
    if (ev.target.closest(".item")) return; // a click on an item selects it
    drag = { x: ev.clientX, t0: view.t0, t1: view.t1 };
    tracks.setPointerCapture(ev.pointerId);
  });
  tracks.addEventListener("pointermove", (ev) => {
    if (!drag) return;
    const dt = ((drag.x - ev.clientX) / tracks.getBoundingClientRect().width) * (drag.t1 - drag.t0);
    setView(view, drag.t0 + dt, drag.t1 + dt);
    draw();
  });
  tracks.addEventListener("pointerup", () => { drag = null; });
}

function drawTracks(tracks, view, data, onEvent) {
  const span = view.t1 - view.t0;
  const place = (el, start, end) => {
    el.style.left = `${((start - view.t0) / span) * 100}%`;
    el.style.width = `${Math.max(0.4, ((end - start) / span) * 100)}%`;
    return el;
  };
  const visible = (r) => r.end >= view.t0 && r.start <= view.t1;
  const axis = h("div", { class: "track axis" });
  const step = niceStep(span / 8);
  for (let t = Math.ceil(view.t0 / step) * step; t <= view.t1; t += step) {
    const tick = h("span", { class: "tick", text: fmtTime(t) });
    tick.style.left = `${((t - view.t0) / span) * 100}%`;
    axis.append(tick);
  }
  const eventTrack = h("div", { class: "track events", id: "track-events" });
  for (const e of data.events.filter(visible)) {
    const item = h("button", { type: "button", class: `item event state-${e.state}${e.event_id === selectedId ? " selected" : ""}`, title: `${e.label} ${fmtConf(e.confidence)}`, dataset: { event: e.event_id, start: e.start }, onclick: () => onEvent(e) }, e.label);
    item.style.opacity = String(0.45 + 0.55 * e.confidence);
    eventTrack.append(place(item, e.start, e.end));
  }
  const segTrack = h("div", { class: "track segments", id: "track-segments" });
  for (const s of data.segments.filter(visible)) segTrack.append(place(h("div", { class: "item segment", title: s.description, text: s.title || "segment" }), s.start, s.end));
  const capTrack = h("div", { class: "track captions", id: "track-captions" });
  for (const c of data.captions.filter(visible)) capTrack.append(place(h("div", { class: "item caption", title: c.text, text: c.text }), c.start, c.end));
  const row = (name, track) => h("div", { class: "row" }, h("span", { class: "track-name", text: name }), track);
  clear(tracks).append(
    row("time", axis), row(`events (${data.events.length})`, eventTrack), row(`segments (${data.segments.length})`, segTrack), row(`captions (${data.captions.length})`, capTrack),
    h("p", { class: "hint", id: "view-range", text: `showing ${fmtTime(view.t0)} – ${fmtTime(view.t1)} (drag to pan, wheel to zoom)` }),
  );
}

function niceStep(raw) {
  const pow = 10 ** Math.floor(Math.log10(Math.max(raw, 0.1)));
  return [1, 2, 5, 10].map((m) => m * pow).find((s) => s >= raw) || pow * 10;
}

async function showEvidence(panel, event, player) {
  selectedId = event.event_id;
  for (const el of document.querySelectorAll(".item.event")) el.classList.toggle("selected", el.dataset.event === selectedId);
  clear(panel).append(h("p", { class: "hint", text: "loading evidence…" }));
  try {
    const e = await api(`/v1/events/${encodeURIComponent(event.event_id)}`);
    const canvas = h("canvas", { class: "evidence-frame", id: "evidence-frame", width: 320, height: 180 });
    clear(panel).append(
      h("h3", { class: "label", text: e.label }),
      h("p", { class: "meta" }, `${e.state} · ${fmtConf(e.confidence)} · ${fmtTime(e.start)}–${fmtTime(e.end)}`),
      h("p", { class: "description", text: e.description }),
      canvas,
      h("p", { class: "meta", id: "box-count", text: `${e.boxes.length} box(es) drawn on the key frame at ${fmtTime(e.thumbnail_t)}` }),
      h("h4", { text: "Clips" }),
      h("ul", { class: "clips", id: "evidence-clips" }, e.evidence.map((c) => h("li", {}, h("code", { text: c.clip_id }), ` ${fmtTime(c.t_start)}–${fmtTime(c.t_end)}, ${c.observations.length} observation(s)`))),
      h("h4", { text: "Frames" }),
      h("p", { class: "frames", text: e.frame_timestamps.map((t) => fmtTime(t)).join(" · ") }),
    );
    drawFrame(canvas, e).catch(() => canvas.classList.add("missing"));
    await player.seek(e.start);
  } catch (err) {
    clear(panel).append(errorBox(err));
  }
}

async function drawFrame(canvas, e) {
  const url = await blobUrl(`/v1/events/${encodeURIComponent(e.event_id)}/thumbnail.jpg`);
  const img = new Image();
  img.src = url;
  await img.decode();
  canvas.width = img.naturalWidth;
  canvas.height = img.naturalHeight;
  const ctx = canvas.getContext("2d");
  ctx.drawImage(img, 0, 0);
  ctx.lineWidth = 2;
  ctx.strokeStyle = "#ff3b30";
  for (const b of e.boxes) ctx.strokeRect(b.x1, b.y1, b.x2 - b.x1, b.y2 - b.y1);
  canvas.dataset.boxes = String(e.boxes.length);
  URL.revokeObjectURL(url);
}
