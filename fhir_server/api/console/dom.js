// Building the page from untrusted job content: every value is set as text (textContent,
// attributes through the DOM), never parsed as HTML; a link only for an http(s) URL.

/** An element: h("a", {href, class: "x", onclick}, child, "text", ...). */
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
    else if (name === "class") element.className = value;
    else if (name in element && typeof value !== "string") element[name] = value;
    else element.setAttribute(name, value === true ? "" : String(value));
  }
  append(element, children);
  return element;
}

function append(element, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replace an element's children. */
export function fill(element, ...children) {
  element.replaceChildren();
  append(element, children);
  return element;
}

/** The URL when it is an absolute http(s) URL, else null (javascript:, data:, relative…). */
export function httpUrl(text) {
  if (typeof text !== "string") return null;
  try {
    const url = new URL(text);
    return url.protocol === "http:" || url.protocol === "https:" ? url.href : null;
  } catch {
    return null;
  }
}

/** A link for an http(s) URL (opened without referrer or opener), else the text. */
export function link(text) {
  const url = httpUrl(text);
  if (url === null) return h("span", { class: "mono" }, String(text));
  return h("a", { href: url, rel: "noopener noreferrer", target: "_blank", class: "mono" }, text);
}

/** An instant as the browser's local time, with the instant itself as its title. */
export function time(instant) {
  if (!instant) return h("span", { class: "muted" }, "—");
  const date = new Date(instant);
  const text = Number.isNaN(date.getTime()) ? String(instant) : date.toLocaleString();
  return h("time", { datetime: String(instant), title: String(instant) }, text);
}

export function seconds(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return "—";
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(s < 10 ? 2 : 1)} s`;
  if (s < 3600) return `${(s / 60).toFixed(1)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}

export function statusBadge(status) {
  return h("span", { class: `badge status-${/^[a-z]+$/.test(status) ? status : "other"}` }, status ?? "?");
}

/** JSON as indented text (for what has no better rendering). */
export function jsonBlock(value) {
  return h("pre", { class: "json" }, JSON.stringify(value, null, 2));
}
