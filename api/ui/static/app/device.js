// @ts-check
/** One device: its live values, metric charts over a chosen range (downsampled history), its track with
 * replay, a reporting timeline (stored samples per interval), a presence timeline (online and offline
 * intervals), its activity (trips, stops, idling, events, geofence events: activity.js; a trip selected
 * there is drawn over the track and replayed), its commands (sent from here, followed live: commands.js) and
 * the messages the bridge refused, with their reasons. */

import {DeviceActivity} from "./activity.js";
import {devicePath} from "./api.js";
import {addBackground} from "./background.js";
import {DeviceCommands} from "./commands.js";
import {age, el, num} from "./format.js";
import {renderPresence} from "./presence.js";

const CHART_POINTS = 400;
// Up to 6 hours, charts show stored values (LTTB-downsampled); beyond, per-bucket averages from the
// rollups: `?points=` reads every sample of the window (at most 200,000: 2.3 days at 1 Hz).
const DOWNSAMPLE_MAX_S = 6 * 3600;
const TIMELINE_BUCKETS = 120;
const REJECTED_SHOWN = 20;
const CHART_HEIGHT_PX = 140;
const METRIC_UNITS = /** @type {Record<string, string>} */ ({
  fuel: "%", engine_temp: "°C", odometer: "km", temperature: "°C", pressure: "PSI", vibration: "mm/s",
  flow: "L/min", level: "%", battery: "%",
});

export class DeviceScreen {
  /**
   * @param {import("./api.js").Api} api
   * @param {import("./store.js").FleetStore} store
   * @param {import("./live.js").LiveLink} live
   */
  constructor(api, store, live) {
    this.api = api;
    this.store = store;
    this.live = live;
    /** @type {string | null} */
    this.id = null;
    const $ = (/** @type {string} */ id) => /** @type {HTMLElement} */ (document.getElementById(id));
    this.title = $("d-title"); this.statusEl = $("d-status"); this.meta = $("d-meta"); this.now = $("d-now");
    this.timeline = $("d-timeline"); this.presence = $("d-presence"); this.presenceSummary = $("d-presence-summary");
    this.rejectedCount = $("d-rejected-count"); this.charts = $("d-charts"); this.rejected = $("d-rejected");
    this.range = /** @type {HTMLSelectElement} */ ($("d-range"));
    this.play = /** @type {HTMLButtonElement} */ ($("d-play"));
    this.speed = /** @type {HTMLSelectElement} */ ($("d-speed"));
    this.seek = /** @type {HTMLInputElement} */ ($("d-seek"));
    this.replayTime = $("d-replay-time");
    this.disable = /** @type {HTMLButtonElement} */ ($("d-disable"));
    const L = /** @type {any} */ (window).L;
    this.L = L;
    this.map = L.map($("d-map"), {maxZoom: 18}).setView([52.52, 13.405], 11);
    addBackground(this.map).catch((err) => console.warn("map background:", err));
    this.trackLayer = L.layerGroup().addTo(this.map);
    this.tripLayer = L.layerGroup().addTo(this.map);
    /** @type {any} the range's track, shown whole when no trip is selected */
    this.rangeLine = null;
    /** @type {{t: number, lat: number, lon: number}[]} */
    this.rangeFixes = [];
    /** @type {any} */
    this.replayMarker = null;
    /** @type {{t: number, lat: number, lon: number}[]} */
    this.fixes = [];
    this.replayAt = 0;
    this.playing = false;
    this.lastFrame = 0;
    /** @type {any[]} */
    this.plots = [];
    this.range.addEventListener("change", () => this.loadHistory());
    this.play.addEventListener("click", () => this.togglePlay());
    this.seek.addEventListener("input", () => this.seekTo(Number(this.seek.value) / 1000));
    this.disable.addEventListener("click", () => this.toggleDisabled());
    store.onChange((ids) => { if (this.id && ids.has(this.id)) this.renderNow(); });
    this.activity = new DeviceActivity(api, (trip) => this.showTrip(trip));
    live.onEvent((deviceId, event) => this.activity.heard(deviceId, event));
    this.commands = new DeviceCommands(api);
    live.onCommand((state, at, command) => this.commands.heard(state, at, command));
  }

  /** @param {string} id */
  async show(id) {
    this.id = id;
    this.title.textContent = id;
    this.meta.textContent = "";
    this.live.select({devices: [id]});
    this.map.invalidateSize();
    this.renderNow();
    /** @type {string | null} */
    let kind = null;
    try {
      const details = await this.api.get(devicePath(id));
      this.store.register([details]);
      this.renderDetails(details);
      kind = details.kind;
    } catch (err) {
      this.meta.textContent = "not in the registry (" + String(/** @type {Error} */ (err).message) + ")";
    }
    await Promise.all([this.loadHistory(), this.loadRejected(), this.commands.load(id, kind)]);
  }

  hide() {
    this.playing = false;
    this.play.textContent = "Play";
  }

  /** @param {any} details */
  renderDetails(details) {
    this.meta.textContent = [details.kind, details.name, details.group && "group " + details.group, details.disabled && "disabled"]
      .filter(Boolean).join(" · ");
    // Operators and admins may switch a device off and on; viewers never see the button (its data-role).
    this.disable.hidden = false;
    this.disable.textContent = details.disabled ? "Enable device" : "Disable device";
    this.disable.dataset.disabled = String(Boolean(details.disabled));
  }

  async toggleDisabled() {
    if (!this.id) return;
    const disabled = this.disable.dataset.disabled !== "true";
    try {
      await this.api.patch(devicePath(this.id), {disabled});
      this.renderDetails(await this.api.get(devicePath(this.id)));
    } catch (err) {
      this.meta.textContent = "change refused: " + String(/** @type {Error} */ (err).message);
    }
  }

  renderNow() {
    if (!this.id) return;
    const state = this.store.states.get(this.id);
    const status = this.store.status(this.id);
    this.statusEl.textContent = status;
    this.statusEl.className = "pill s-" + status;
    const items = [
      ["Last update", age(state?.ts)],
      ["Position", state?.position ? num(state.position.lat, 5) + ", " + num(state.position.lon, 5) : "—"],
      ["Speed", num(state?.position?.speed, 0, "km/h")],
    ];
    for (const [name, field] of Object.entries(state?.metrics || {})) items.push([name, num(field.value, 1, METRIC_UNITS[name])]);
    this.now.replaceChildren(...items.map(([k, v]) => {
      const box = el("div", undefined, "stat");
      box.appendChild(el("span", k, "muted"));
      box.appendChild(el("b", v));
      return box;
    }));
  }

  window() {
    const to = new Date();
    const from = new Date(to.getTime() - Number(this.range.value) * 1000);
    return {from, to, query: "from=" + from.toISOString() + "&to=" + to.toISOString()};
  }

  async loadHistory() {
    const id = this.id;
    if (!id) return;
    const {from, to, query} = this.window();
    const bucketS = Math.max(1, Math.ceil((to.getTime() - from.getTime()) / 1000 / TIMELINE_BUCKETS));
    const activity = this.activity.load(id, from, to);
    const [series, buckets, track, presence] = await Promise.allSettled([
      this.loadSeries(id, query, (to.getTime() - from.getTime()) / 1000),
      this.api.get(devicePath(id) + "/telemetry?bucket=" + bucketS + "s&metric=position&" + query),
      this.api.get(devicePath(id) + "/track?format=geojson&" + query),
      this.api.get(devicePath(id) + "/presence?" + query),
    ]);
    if (id !== this.id) return;
    renderPresence(this.presence, this.presenceSummary, presence.status === "fulfilled" ? presence.value : null, from, to);
    this.renderCharts(series.status === "fulfilled" ? series.value : null, from, to);
    this.renderTimeline(buckets.status === "fulfilled" ? buckets.value : null, from, to, bucketS);
    this.renderTrack(track.status === "fulfilled" ? track.value : null);
    await activity;
  }

  /**
   * Each metric's values over the window, as chart series.
   * @param {string} id @param {string} query @param {number} rangeS
   * @returns {Promise<{source: string, series: {metric: string, xs: number[], ys: number[]}[]}>}
   */
  async loadSeries(id, query, rangeS) {
    if (rangeS <= DOWNSAMPLE_MAX_S) {
      const history = await this.api.get(devicePath(id) + "/telemetry?points=" + CHART_POINTS + "&" + query);
      return {
        source: "points",
        series: history.series.map((/** @type {any} */ s) => ({
          metric: s.metric,
          xs: s.points.map((/** @type {any} */ p) => Date.parse(p.ts) / 1000),
          ys: s.points.map((/** @type {any} */ p) => p.value),
        })),
      };
    }
    // Whole minutes, so that the minute or hour rollup answers.
    const minutes = Math.max(1, Math.ceil(rangeS / CHART_POINTS / 60));
    const history = await this.api.get(devicePath(id) + "/telemetry?bucket=" + minutes + "m&" + query);
    /** @type {Map<string, {metric: string, xs: number[], ys: number[]}>} */
    const byMetric = new Map();
    for (const bucket of history.buckets) {
      const x = Date.parse(bucket.start) / 1000;
      for (const [metric, agg] of Object.entries(bucket.metrics)) {
        let series = byMetric.get(metric);
        if (!series) { series = {metric, xs: [], ys: []}; byMetric.set(metric, series); }
        series.xs.push(x);
        series.ys.push(/** @type {any} */ (agg).avg);
      }
    }
    return {source: "buckets", series: [...byMetric.values()]};
  }

  /** @param {{source: string, series: {metric: string, xs: number[], ys: number[]}[]} | null} history @param {Date} from @param {Date} to */
  renderCharts(history, from, to) {
    for (const plot of this.plots) plot.destroy();
    this.plots = [];
    this.charts.replaceChildren();
    if (!history || history.series.length === 0) { this.charts.appendChild(el("p", "No stored metrics in this range.", "muted")); return; }
    const uPlot = /** @type {any} */ (window).uPlot;
    const width = Math.max(280, this.charts.clientWidth - 8);
    for (const s of history.series) {
      const box = el("div", undefined, "chart");
      box.dataset.metric = s.metric;
      box.dataset.source = history.source;
      this.charts.appendChild(box);
      const unit = METRIC_UNITS[s.metric] || "";
      const title = s.metric + (unit ? " (" + unit + ")" : "") + (history.source === "buckets" ? ", average per interval" : "");
      this.plots.push(new uPlot({
        width, height: CHART_HEIGHT_PX, title,
        scales: {x: {time: true, min: from.getTime() / 1000, max: to.getTime() / 1000}},
        series: [{}, {label: s.metric, stroke: "#2563eb", width: 1.5}],
        legend: {show: false},
      }, [s.xs, s.ys], box));
    }
  }

  /** @param {any} history @param {Date} from @param {Date} to @param {number} bucketS */
  renderTimeline(history, from, to, bucketS) {
    this.timeline.replaceChildren();
    const span = to.getTime() - from.getTime();
    for (const bucket of history?.buckets || []) {
      const start = Date.parse(bucket.start);
      const seg = el("span", undefined, "seg");
      seg.style.left = Math.max(0, (start - from.getTime()) / span * 100) + "%";
      seg.style.width = Math.max(0.3, bucketS * 1000 / span * 100) + "%";
      seg.title = bucket.start + ": " + bucket.samples + " samples";
      this.timeline.appendChild(seg);
    }
    if (!this.timeline.childElementCount) this.timeline.appendChild(el("span", "nothing stored in this range", "muted"));
  }

  /** @param {any} feature a GeoJSON Feature with `times` */
  renderTrack(feature) {
    this.trackLayer.clearLayers();
    this.tripLayer.clearLayers();
    this.rangeFixes = fixesOf(feature);
    this.rangeLine = null;
    if (this.rangeFixes.length >= 2) {
      this.rangeLine = this.L.polyline(this.rangeFixes.map((f) => [f.lat, f.lon]), {color: "#2563eb", weight: 3});
      this.trackLayer.addLayer(this.rangeLine);
      this.map.fitBounds(this.rangeLine.getBounds(), {padding: [20, 20]});
    }
    this.replayOver(this.rangeFixes, "no track in this range");
  }

  /** Draw a trip's track over the range's and replay it; null: back to the whole range.
   * @param {import("./activity.js").Trip | null} trip */
  async showTrip(trip) {
    const id = this.id;
    this.tripLayer.clearLayers();
    if (!trip || !id) {
      if (this.rangeLine) this.map.fitBounds(this.rangeLine.getBounds(), {padding: [20, 20]});
      this.replayOver(this.rangeFixes, "no track in this range");
      return;
    }
    // `to` is exclusive: a second past the trip's end keeps its last fix.
    const to = new Date(Date.parse(trip.end_at) + 1000).toISOString();
    let feature = null;
    try {
      feature = await this.api.get(devicePath(id) + "/track?format=geojson&from=" + encodeURIComponent(trip.start_at) + "&to=" + encodeURIComponent(to));
    } catch (err) {
      console.warn("trip track:", err);
    }
    if (id !== this.id || this.activity.tripList[this.activity.selected ?? -1] !== trip) return; // chosen otherwise meanwhile
    const fixes = fixesOf(feature);
    if (fixes.length >= 2) {
      const line = this.L.polyline(fixes.map((f) => [f.lat, f.lon]), {color: "#f97316", weight: 5, className: "trip-track"});
      this.tripLayer.addLayer(line);
      this.map.fitBounds(line.getBounds(), {padding: [20, 20]});
    }
    this.replayOver(fixes, "no track stored for this trip");
  }

  /** Make `fixes` what the replay plays. @param {{t: number, lat: number, lon: number}[]} fixes @param {string} none */
  replayOver(fixes, none) {
    this.playing = false;
    this.play.textContent = "Play";
    if (this.replayMarker) this.replayMarker.remove();
    this.replayMarker = null;
    this.fixes = fixes;
    if (fixes.length < 2) { this.replayTime.textContent = none; return; }
    this.replayMarker = this.L.circleMarker([fixes[0].lat, fixes[0].lon], {radius: 7, color: "#111", fillColor: "#f59e0b", fillOpacity: 1});
    this.replayMarker.addTo(this.map);
    this.seekTo(0);
  }

  togglePlay() {
    if (this.fixes.length < 2) return;
    this.playing = !this.playing;
    this.play.textContent = this.playing ? "Pause" : "Play";
    if (this.playing) {
      if (this.replayAt >= 1) this.replayAt = 0;
      this.lastFrame = performance.now();
      requestAnimationFrame((t) => this.frame(t));
    }
  }

  /** @param {number} now */
  frame(now) {
    if (!this.playing) return;
    const span = this.fixes[this.fixes.length - 1].t - this.fixes[0].t;
    const advance = (now - this.lastFrame) * Number(this.speed.value) / Math.max(span, 1);
    this.lastFrame = now;
    this.seekTo(Math.min(1, this.replayAt + advance));
    if (this.replayAt >= 1) { this.playing = false; this.play.textContent = "Play"; return; }
    requestAnimationFrame((t) => this.frame(t));
  }

  /** Put the replay marker where the device was at this share of the track's time. @param {number} share */
  seekTo(share) {
    if (this.fixes.length < 2 || !this.replayMarker) return;
    this.replayAt = share;
    this.seek.value = String(Math.round(share * 1000));
    const f = this.fixes;
    const t = f[0].t + (f[f.length - 1].t - f[0].t) * share;
    let i = 1;
    while (i < f.length - 1 && f[i].t < t) i++;
    const a = f[i - 1], b = f[i];
    const k = b.t > a.t ? Math.min(1, Math.max(0, (t - a.t) / (b.t - a.t))) : 1;
    this.replayMarker.setLatLng([a.lat + (b.lat - a.lat) * k, a.lon + (b.lon - a.lon) * k]);
    this.replayTime.textContent = new Date(t).toISOString().replace("T", " ").slice(0, 19) + " UTC";
  }

  async loadRejected() {
    const id = this.id;
    if (!id) return;
    this.rejected.replaceChildren();
    this.rejectedCount.textContent = "";
    let page;
    try {
      page = await this.api.get(devicePath(id) + "/rejected?limit=" + REJECTED_SHOWN);
    } catch (err) {
      this.rejected.appendChild(el("p", "unavailable: " + String(/** @type {Error} */ (err).message), "muted"));
      return;
    }
    if (page.items.length === 0) { this.rejected.appendChild(el("p", "None.", "muted")); return; }
    this.rejectedCount.textContent = "(" + page.items.length + " shown, newest first" + (page.next_cursor ? "; older ones not shown" : "") + ")";
    const table = el("table", undefined, "rejected");
    const head = el("tr");
    for (const name of ["Received", "Reason", "Start of the message"]) head.appendChild(el("th", name));
    table.appendChild(head);
    for (const item of page.items) {
      const tr = el("tr");
      const when = el("td", age(item.received_at));
      when.title = item.received_at;
      tr.appendChild(when);
      tr.appendChild(el("td", item.reason));
      tr.appendChild(el("td", item.payload_preview, "preview"));
      table.appendChild(tr);
    }
    this.rejected.appendChild(table);
  }
}

/** @param {any} feature a GeoJSON track Feature with `times`, or null @returns {{t: number, lat: number, lon: number}[]} */
function fixesOf(feature) {
  const coords = feature?.geometry?.coordinates || [];
  const times = feature?.properties?.times || [];
  return coords.map((/** @type {number[]} */ c, /** @type {number} */ i) => ({t: Date.parse(times[i]), lat: c[1], lon: c[0]}));
}
