// The console's shell: the key form, hash routing (#/page/stream-id) and page life cycle.

import { key } from "./api.js";
import { clear, errorBox, h } from "./dom.js";
import * as alerts from "./pages/alerts.js";
import * as lecture from "./pages/lecture.js";
import * as sports from "./pages/sports.js";
import * as streams from "./pages/streams.js";
import * as timeline from "./pages/timeline.js";

const PAGES = { streams, alerts, timeline, sports, lecture };
const view = document.getElementById("view");
let current = null; // { stop() } of the page shown

function showKeyState() {
  document.getElementById("key-state").textContent = key.get() ? "key set (this tab only)" : "no key";
}

function route() {
  if (current && current.stop) current.stop();
  current = null;
  const [, name = "streams", ...rest] = location.hash.split("/");
  const page = PAGES[name] || streams;
  for (const a of document.querySelectorAll("#nav a")) a.classList.toggle("active", a.dataset.page === name);
  clear(view);
  if (!key.get()) {
    view.append(h("p", { class: "hint", text: "Paste an API key above to start." }));
    return;
  }
  const root = h("section", { class: `page page-${name}`, id: `page-${name}` });
  view.append(root);
  try {
    current = page.show(root, decodeURIComponent(rest.join("/")));
  } catch (err) {
    root.append(errorBox(err));
  }
}

document.getElementById("key-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const input = document.getElementById("api-key");
  if (input.value.trim()) key.set(input.value.trim());
  input.value = "";
  showKeyState();
  route();
});
document.getElementById("forget-key").addEventListener("click", () => {
  key.forget();
  showKeyState();
  route();
});
window.addEventListener("hashchange", route);
showKeyState();
route();
