// @ts-check
/** How values read on screen: numbers with their units, ages, and a missing value as a dash. */

/** @param {number | null | undefined} value @param {number} digits @param {string} [unit] */
export function num(value, digits, unit) {
  return typeof value === "number" ? value.toFixed(digits) + (unit ? " " + unit : "") : "—";
}

/** @param {string | null | undefined} ts @returns {string} how long ago, e.g. "12 s ago" */
export function age(ts) {
  if (!ts) return "never";
  const s = Math.max(0, Math.round((Date.now() - Date.parse(ts)) / 1000));
  if (s < 60) return s + " s ago";
  if (s < 3600) return Math.floor(s / 60) + " min ago";
  if (s < 86400) return Math.floor(s / 3600) + " h ago";
  return Math.floor(s / 86400) + " d ago";
}

/** @param {string} tag @param {string} [text] @param {string} [className] @returns {HTMLElement} */
export function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  if (className) node.className = className;
  return node;
}

/** @param {string | null | undefined} ts @returns {string} the local date and time, or a dash */
export function when(ts) {
  return ts ? new Date(ts).toLocaleString() : "—";
}

/** @param {number | null | undefined} seconds @returns {string} e.g. "1 h 05 min", "12 min", "40 s" */
export function duration(seconds) {
  if (typeof seconds !== "number") return "—";
  const s = Math.round(seconds);
  if (s < 60) return s + " s";
  const min = Math.floor(s / 60) % 60, h = Math.floor(s / 3600);
  return h ? h + " h " + String(min).padStart(2, "0") + " min" : min + " min";
}

