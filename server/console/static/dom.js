// Small DOM helpers. Text always goes in as text (never innerHTML): event
// payloads are data from the database.

/**
 * h builds an element: h("li", {class: "x", onclick: f, dataset: {id: 1}}, child, "text").
 * @returns {HTMLElement}
 */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(props ?? {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") el.className = v;
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

/** HH:MM:SS.mmm in local time. */
export function clock(date = new Date()) {
  const p = (n, w = 2) => String(n).padStart(w, "0");
  return `${p(date.getHours())}:${p(date.getMinutes())}:${p(date.getSeconds())}.${p(date.getMilliseconds(), 3)}`;
}

/** json renders a value as indented JSON with spans for keys, strings, numbers and literals. */
export function json(value) {
  const pre = h("pre", { class: "json" });
  const text = JSON.stringify(value, null, 2) ?? "undefined";
  // Tokenise the JSON text: strings (keys when a colon follows), numbers, literals.
  const re = /("(?:\\.|[^"\\])*")(\s*:)?|(-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)|\b(true|false|null)\b/g;
  let last = 0;
  for (const m of text.matchAll(re)) {
    if (m.index > last) pre.append(text.slice(last, m.index));
    if (m[1] !== undefined) {
      pre.append(h("span", { class: m[2] ? "k" : "s" }, m[1]));
      if (m[2]) pre.append(m[2]);
    } else if (m[3] !== undefined) pre.append(h("span", { class: "n" }, m[3]));
    else pre.append(h("span", { class: "l" }, m[4]));
    last = m.index + m[0].length;
  }
  pre.append(text.slice(last));
  return pre;
}

/** cell renders a record value for the grid. */
export function cellText(v) {
  if (v === undefined) return "";
  if (v === null) return "null";
  if (typeof v === "object") return JSON.stringify(v);
  return String(v);
}

/** flash restarts a CSS animation class on el. */
export function flash(el, cls) {
  el.classList.remove(cls);
  void el.offsetWidth; // restart the animation
  el.classList.add(cls);
}

/** ids parses "1, 2,3" into [1,2,3]; throws on anything else. */
export function ids(text, what) {
  const t = text.trim();
  if (t === "") return undefined;
  return t.split(",").map((s) => {
    const n = Number(s.trim());
    if (!Number.isSafeInteger(n) || n < 1) throw new Error(`${what}: "${s.trim()}" is not a positive integer`);
    return n;
  });
}
