// Streams: every job with its status, clip progress and last event; submit, pause, resume, cancel.

import { api } from "../api.js";
import { clear, errorBox, fmtConf, fmtTime, h } from "../dom.js";

const REFRESH_MS = 2000;

export function show(root) {
  const table = h("tbody", { id: "jobs" });
  const status = h("p", { class: "hint", id: "jobs-status" });
  root.append(
    h("h2", { text: "Streams" }),
    submitForm(() => refresh()),
    h(
      "table",
      { class: "jobs" },
      h("thead", {}, h("tr", {}, ["Stream", "Source", "Kind", "Status", "Clips", "Last event", ""].map((t) => h("th", { text: t })))),
      table,
    ),
    status,
  );
  let timer = null;
  let stopped = false;
  async function refresh() {
    clearTimeout(timer);
    try {
      const [jobs, listed] = await Promise.all([api("/v1/jobs?limit=100"), api("/v1/streams")]);
      const last = await Promise.all(jobs.items.map(lastEvent));
      const withJob = new Set(jobs.items.map((j) => j.stream_id));
      const orphans = listed.items.filter((id) => !withJob.has(id)); // results kept, job expired or elsewhere
      clear(table).append(...jobs.items.map((job, i) => row(job, last[i], refresh)), ...orphans.map(resultsOnly));
      const n = jobs.items.length;
      status.textContent = n || orphans.length ? `${n} job(s), refreshed ${new Date().toLocaleTimeString()}` : "No jobs yet.";
    } catch (err) {
      clear(status).append(errorBox(err));
    }
    if (!stopped) timer = setTimeout(refresh, REFRESH_MS);
  }
  refresh();
  return { stop: () => { stopped = true; clearTimeout(timer); } };
}

async function lastEvent(job) {
  // events come by start time: ask only for the last two minutes of analysed media
  const from = Math.max(0, job.progress.media_seconds - 120);
  try {
    const page = await api(`/v1/streams/${encodeURIComponent(job.stream_id)}/events?start=${from}&limit=200`);
    return page.items.length ? page.items[page.items.length - 1] : null;
  } catch (_) {
    return null;
  }
}

function row(job, event, refresh) {
  const p = job.progress;
  const act = (label, method, path) =>
    h("button", {
      type: "button",
      class: `act-${label.toLowerCase()}`,
      text: label,
      onclick: async (ev) => {
        ev.target.disabled = true;
        try {
          await api(path, { method });
        } catch (err) {
          alert(err.message); // eslint-disable-line no-alert
        }
        refresh();
      },
    });
  const id = encodeURIComponent(job.job_id);
  const actions = [];
  if (["queued", "running", "retry"].includes(job.status)) actions.push(act("Pause", "POST", `/v1/jobs/${id}/pause`));
  if (job.status === "paused") actions.push(act("Resume", "POST", `/v1/jobs/${id}/resume`));
  if (!["done", "failed", "cancelled"].includes(job.status)) actions.push(act("Cancel", "DELETE", `/v1/jobs/${id}`));
  return h(
    "tr",
    { dataset: { job: job.job_id, stream: job.stream_id, status: job.status } },
    h("td", {}, h("a", { href: `#/timeline/${encodeURIComponent(job.stream_id)}`, text: job.stream_id })),
    h("td", { class: "source", text: job.source, title: job.source }),
    h("td", { text: job.live ? "live" : "file" }),
    h("td", {}, h("span", { class: `status status-${job.status}`, text: job.status }), job.error ? h("div", { class: "error", text: job.error }) : null),
    h("td", {}, bars(p)),
    h("td", { class: "last-event" }, event ? `${event.label} · ${fmtConf(event.confidence)} · ${fmtTime(event.start)} · ${event.state}` : "–"),
    h("td", { class: "actions" }, actions),
  );
}

function resultsOnly(streamId) {
  return h(
    "tr",
    { dataset: { stream: streamId, status: "results" } },
    h("td", {}, h("a", { href: `#/timeline/${encodeURIComponent(streamId)}`, text: streamId })),
    h("td", { class: "hint", colspan: 6, text: "results only (no job record visible to this key)" }),
  );
}

function bars(p) {
  const total = Math.max(p.clips_acked, 1);
  const part = (cls, n) => {
    const el = h("span", { class: cls, title: `${n}` });
    el.style.width = `${(100 * n) / total}%`; // CSSOM, allowed by the CSP (inline style attributes are not)
    return el;
  };
  const ok = Math.max(0, p.clips_analysed);
  return h(
    "div",
    { class: "progress" },
    h("div", { class: "bar", role: "img", "aria-label": "analysed and failed of acknowledged clips" }, part("ok", ok), part("failed", p.clips_failed + p.clips_dead_lettered)),
    h("div", { class: "counts" }, `${p.clips_acked} acknowledged · `, h("span", { class: "n-analysed", text: `${p.clips_analysed} analysed` }), ` · ${p.clips_failed} failed`, p.clips_dead_lettered ? ` · ${p.clips_dead_lettered} dead-lettered` : "", p.analysis_complete ? " · complete" : ""),
  );
}

function submitForm(done) {
  const field = (label, input) => h("label", {}, label, input);
  const stream = h("input", { name: "stream_id", required: true, placeholder: "cam-1", pattern: "[A-Za-z0-9][A-Za-z0-9._\\-]{0,127}" });
  const source = h("input", { name: "source", required: true, placeholder: "rtsp://… or a file under the media roots", size: 40 });
  const preset = h("select", { name: "preset" }, ["", "surveillance", "sports", "lecture"].map((p) => h("option", { value: p, text: p || "(none)" })));
  const task = h("select", { name: "task" }, ["events", "segments", "caption"].map((t) => h("option", { value: t, text: t })));
  const events = h("input", { name: "event_types", placeholder: "person falls, car stops", size: 30 });
  const sport = h("select", { name: "sport" }, ["", "soccer", "basketball", "tennis"].map((s) => h("option", { value: s, text: s || "(sport)" })));
  const message = h("span", { class: "hint", id: "submit-message" });
  const form = h(
    "form",
    { class: "submit", id: "submit-job" },
    field("Stream id ", stream), field("Source ", source), field("Preset ", preset), field("Task ", task),
    field("Event types ", events), field("Sport ", sport), h("button", { type: "submit", text: "Submit job" }), message,
  );
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const body = { stream_id: stream.value.trim(), source: source.value.trim() };
    if (preset.value) body.preset = preset.value;
    else body.task = task.value;
    const types = events.value.split(",").map((s) => s.trim()).filter(Boolean);
    if (types.length) body.event_types = types;
    if (sport.value) body.sport = sport.value;
    try {
      const job = await api("/v1/jobs", { method: "POST", body });
      message.textContent = `submitted ${job.job_id}`;
      done();
    } catch (err) {
      message.textContent = err.message;
    }
  });
  return form;
}
