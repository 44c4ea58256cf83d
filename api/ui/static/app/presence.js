// @ts-check
/** The device page's presence timeline: online and offline intervals over the selected range
 * (`GET /api/v1/devices/{id}/presence`), and how much of the range the device was online. */

import {el} from "./format.js";

/** @typedef {{presence: "online" | "offline", source: string | null, from: string, to: string}} Interval */

/** @param {string} ts */
const clock = (ts) => new Date(ts).toISOString().replace("T", " ").slice(0, 19) + " UTC";

/**
 * Draw `timeline` (the API's answer, or null when it failed) into `bar`, and a summary into `summary`.
 * @param {HTMLElement} bar @param {HTMLElement} summary
 * @param {{intervals: Interval[], truncated: boolean} | null} timeline @param {Date} from @param {Date} to
 */
export function renderPresence(bar, summary, timeline, from, to) {
  bar.replaceChildren();
  const span = to.getTime() - from.getTime();
  let onlineMs = 0, knownMs = 0;
  for (const interval of timeline?.intervals || []) {
    const start = Date.parse(interval.from), end = Date.parse(interval.to);
    const seg = el("span", undefined, "seg s-" + interval.presence);
    seg.dataset.presence = interval.presence;
    seg.style.left = Math.max(0, (start - from.getTime()) / span * 100) + "%";
    seg.style.width = Math.max(0.3, (end - start) / span * 100) + "%";
    seg.title = interval.presence + " from " + clock(interval.from) + " to " + clock(interval.to)
      + (interval.source ? " (" + (interval.source === "heartbeat" ? "silent past its timeout" : "its status") + ")" : "");
    bar.appendChild(seg);
    knownMs += end - start;
    if (interval.presence === "online") onlineMs += end - start;
  }
  if (!timeline) { summary.textContent = "unavailable"; return; }
  const changes = timeline.intervals.length;
  summary.textContent = changes === 0
    ? "no presence recorded in this range"
    : "online " + Math.round(onlineMs / Math.max(knownMs, 1) * 100) + " % of the known time · "
      + changes + (changes === 1 ? " interval" : " intervals") + (timeline.truncated ? " (more not shown)" : "");
}
