// A tiny Markdown-to-DOM renderer for model-written text: it builds elements and sets textContent, so
// markup inside the text (<script>, <img onerror>) is shown literally and never parsed as HTML.
// Covers what summaries use: headings, paragraphs, lists, quotes, code, **bold**, *italic*, `code`,
// and [links](https://...) (http/https only; anything else stays text).

import { h } from "./dom.js";

const INLINE = /(\*\*([^*]+)\*\*|__([^_]+)__|\*([^*\s][^*]*)\*|_([^_\s][^_]*)_|`([^`]+)`|\[([^\]]+)\]\(([^)\s]+)\))/;

export function inline(text) {
  const out = [];
  let rest = text;
  for (;;) {
    const m = INLINE.exec(rest);
    if (!m) break;
    if (m.index > 0) out.push(document.createTextNode(rest.slice(0, m.index)));
    out.push(span(m));
    rest = rest.slice(m.index + m[0].length);
  }
  if (rest) out.push(document.createTextNode(rest));
  return out;
}

function span(m) {
  if (m[2] !== undefined || m[3] !== undefined) return h("strong", {}, inline(m[2] ?? m[3]));
  if (m[4] !== undefined || m[5] !== undefined) return h("em", {}, inline(m[4] ?? m[5]));
  if (m[6] !== undefined) return h("code", { text: m[6] });
  const safe = /^https?:\/\//i.test(m[8]);
  return safe ? h("a", { href: m[8], rel: "noopener noreferrer", target: "_blank" }, inline(m[7])) : document.createTextNode(m[0]);
}

export function renderMarkdown(source) {
  const root = h("div", { class: "markdown" });
  const lines = String(source).replace(/\r\n?/g, "\n").split("\n");
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    if (!line.trim()) {
      i += 1;
    } else if (line.startsWith("```")) {
      const code = [];
      for (i += 1; i < lines.length && !lines[i].startsWith("```"); i += 1) code.push(lines[i]);
      root.append(h("pre", {}, h("code", { text: code.join("\n") })));
      i += 1;
    } else if (/^#{1,6} /.test(line)) {
      const level = line.indexOf(" ");
      root.append(h(`h${level}`, {}, inline(line.slice(level + 1))));
      i += 1;
    } else if (/^\s*([-*+]|\d+[.)]) /.test(line)) {
      const ordered = /^\s*\d/.test(line);
      const list = h(ordered ? "ol" : "ul");
      for (; i < lines.length && /^\s*([-*+]|\d+[.)]) /.test(lines[i]); i += 1) {
        list.append(h("li", {}, inline(lines[i].replace(/^\s*([-*+]|\d+[.)]) /, ""))));
      }
      root.append(list);
    } else if (line.startsWith(">")) {
      const quote = [];
      for (; i < lines.length && lines[i].startsWith(">"); i += 1) quote.push(lines[i].replace(/^> ?/, ""));
      root.append(h("blockquote", {}, inline(quote.join(" "))));
    } else {
      const para = [];
      for (; i < lines.length && lines[i].trim() && !/^(#{1,6} |```|>|\s*([-*+]|\d+[.)]) )/.test(lines[i]); i += 1) {
        para.push(lines[i].trim());
      }
      root.append(h("p", {}, inline(para.join(" "))));
    }
  }
  return root;
}
