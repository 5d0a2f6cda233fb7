// Element construction without HTML parsing: text always goes in as text nodes, never as markup.
// No module of the console assigns markup to an element or parses strings as HTML (a test greps for the sinks).

export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") el.className = value;
    else if (name === "text") el.textContent = String(value);
    else if (name.startsWith("on") && typeof value === "function") el.addEventListener(name.slice(2), value);
    else if (name === "dataset") Object.assign(el.dataset, value);
    else if (name === "value") el.value = value;
    else if (name.startsWith("on")) throw new Error(`refusing a string handler for ${name}`);
    else el.setAttribute(name, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function clear(el) {
  el.replaceChildren();
  return el;
}

export function fmtTime(seconds) {
  if (seconds === null || seconds === undefined || Number.isNaN(seconds)) return "–";
  const s = Math.max(0, seconds);
  const m = Math.floor(s / 60);
  const rest = (s - m * 60).toFixed(1).padStart(4, "0");
  return `${m}:${rest}`;
}

export function fmtWall(unix) {
  return unix ? new Date(unix * 1000).toLocaleString() : "–";
}

export function fmtConf(c) {
  return c === undefined || c === null ? "–" : `${Math.round(c * 100)}%`;
}

export function errorBox(err) {
  return h("p", { class: "error", role: "alert", text: err && err.message ? err.message : String(err) });
}
