// The API client: the key lives in sessionStorage (this tab only) and travels as a header, never in a URL.

const KEY = "vstream.apiKey";

export class ApiError extends Error {
  constructor(status, title, detail) {
    super(detail ? `${title}: ${detail}` : title);
    this.status = status;
  }
}

export const key = {
  get: () => sessionStorage.getItem(KEY) || "",
  set: (value) => sessionStorage.setItem(KEY, value),
  forget: () => sessionStorage.removeItem(KEY),
};

function headers(extra = {}) {
  const out = { ...extra };
  const k = key.get();
  if (k) out.Authorization = `Bearer ${k}`;
  return out;
}

async function raise(res) {
  let title = `HTTP ${res.status}`;
  let detail = "";
  try {
    const body = await res.json();
    title = body.title || title;
    detail = body.detail || "";
  } catch (_) {
    /* not a problem document */
  }
  throw new ApiError(res.status, title, detail);
}

export async function api(path, { method = "GET", body, signal } = {}) {
  const init = { method, headers: headers(), signal };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const res = await fetch(path, init);
  if (!res.ok) await raise(res);
  if (res.status === 204) return null;
  const type = res.headers.get("Content-Type") || "";
  return type.includes("json") ? res.json() : res.text();
}

// An object URL for an authenticated binary (thumbnails, the reel): <img>/<video> cannot send the key.
export async function blobUrl(path) {
  const res = await fetch(path, { headers: headers() });
  if (!res.ok) await raise(res);
  return URL.createObjectURL(await res.blob());
}

// Every page of a listing (events, segments, captions), up to `max` records.
export async function allPages(path, max = 5000) {
  const items = [];
  let cursor = null;
  do {
    const sep = path.includes("?") ? "&" : "?";
    const page = await api(cursor ? `${path}${sep}cursor=${encodeURIComponent(cursor)}` : path);
    items.push(...page.items);
    cursor = page.next_cursor;
  } while (cursor && items.length < max);
  return items;
}

// Server-Sent Events over fetch(), because EventSource cannot send the key as a header. On a drop (or
// reconnect()), it reconnects with Last-Event-ID = the last id it handled, so nothing is missed, and
// ignores any id it already handled, so nothing is shown twice.
export class Feed {
  constructor(path, { onMessage, onState }) {
    this.path = path;
    this.onMessage = onMessage;
    this.onState = onState || (() => {});
    this.lastId = null;
    this.retryMs = 3000;
    this.closed = false;
    this.connections = 0;
    this.start();
  }

  async start() {
    while (!this.closed) {
      this.abort = new AbortController();
      try {
        await this.read(this.abort.signal);
      } catch (err) {
        if (this.closed) return;
        if (err instanceof ApiError && err.status < 500) {
          this.onState("error", err.message);
          return; // a bad key will not get better by retrying
        }
        if (err.name !== "AbortError") this.onState("reconnecting", err.message);
      }
      if (!this.closed && !this.abort.signal.aborted) await new Promise((r) => setTimeout(r, this.retryMs));
    }
  }

  async read(signal) {
    const extra = { Accept: "text/event-stream" };
    if (this.lastId) extra["Last-Event-ID"] = this.lastId;
    const res = await fetch(this.path, { headers: headers(extra), signal, cache: "no-store" });
    if (!res.ok) await raise(res);
    this.connections += 1;
    this.onState("live", this.lastId ? `resumed after ${this.lastId}` : "connected");
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) throw new Error("the feed closed");
      buffer += value.replace(/\r\n?/g, "\n");
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        this.dispatch(buffer.slice(0, end));
        buffer = buffer.slice(end + 2);
      }
    }
  }

  dispatch(block) {
    let id = null;
    let event = "message";
    const data = [];
    for (const line of block.split("\n")) {
      if (!line || line.startsWith(":")) continue;
      const i = line.indexOf(":");
      const field = i < 0 ? line : line.slice(0, i);
      const value = i < 0 ? "" : line.slice(i + 1).replace(/^ /, "");
      if (field === "id") id = value;
      else if (field === "event") event = value;
      else if (field === "data") data.push(value);
      else if (field === "retry" && /^\d+$/.test(value)) this.retryMs = Number(value);
    }
    if (!data.length) return;
    if (id && this.lastId && compareIds(id, this.lastId) <= 0) return; // already handled
    if (id) this.lastId = id;
    this.onMessage({ id, event, data: JSON.parse(data.join("\n")) });
  }

  reconnect() {
    this.abort.abort();
  }

  close() {
    this.closed = true;
    this.abort.abort();
  }
}

function parseId(id) {
  const [ms, seq = "0"] = id.split("-");
  return [BigInt(ms), BigInt(seq)];
}

function compareIds(a, b) {
  const [am, as] = parseId(a);
  const [bm, bs] = parseId(b);
  if (am !== bm) return am < bm ? -1 : 1;
  return as === bs ? 0 : as < bs ? -1 : 1;
}

// A URL the <video> element can load: a short-lived token bound to the stream's file (see api/routes/media.py).
export async function mediaUrl(streamId) {
  const grant = await api(`/v1/streams/${encodeURIComponent(streamId)}/media-token`, { method: "POST" });
  return grant.url;
}
