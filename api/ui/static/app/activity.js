// @ts-check
/** A device's activity over the device page's range (device times): its day in figures (the range's last
 * day, UTC), its trips (a trip selected shows its track on the device map), stops and idling, the events
 * it sent (new ones added as the live connection brings them) and its geofence enter and exit events. */

import {devicePath} from "./api.js";
import {duration, el, num, when} from "./format.js";

const ITEMS_SHOWN = 200; // trips, stops, idle intervals and geofence events: the first of the range
const EVENTS_SHOWN = 100; // the newest

/** @typedef {{lat: number, lon: number}} Place */
/** @typedef {{start_at: string, end_at: string, start: Place, end: Place, distance_m: number, duration_s: number,
 *   max_speed_kmh: number, avg_speed_kmh: number, fuel_used_pct: number | null, complete: boolean}} Trip */
/** @typedef {{start_at: string, end_at: string, place: Place, duration_s: number, complete?: boolean}} Interval */
/** @typedef {{seq: number, ts: string, boot: number, name: string, data: object, received_at: string}} DeviceEvent */

/**
 * A table, or a line saying there is nothing.
 * @param {string} className @param {string[]} headings @param {HTMLTableRowElement[]} rows @param {string} none
 * @returns {HTMLElement}
 */
function table(className, headings, rows, none) {
  if (rows.length === 0) return el("p", none, "muted");
  const node = el("table", undefined, "list " + className);
  const head = el("tr");
  for (const name of headings) head.appendChild(el("th", name));
  node.append(head, ...rows);
  return node;
}

/** @param {string} className @param {string[]} cells @returns {HTMLTableRowElement} */
function row(className, cells) {
  const tr = /** @type {HTMLTableRowElement} */ (el("tr", undefined, className));
  for (const text of cells) tr.appendChild(el("td", text));
  return tr;
}

/** @param {Place} place */
const where = (place) => num(place.lat, 5) + ", " + num(place.lon, 5);

/** @param {{next_cursor: unknown}} page @param {number} shown */
const more = (page, shown) => (page.next_cursor ? "(the first " + shown + ")" : "");

/** @param {DeviceEvent} event */
const eventKey = (event) => event.boot + ":" + event.seq;

export class DeviceActivity {
  /**
   * @param {import("./api.js").Api} api
   * @param {(trip: Trip | null) => void} onTrip told of the trip selected (null: none)
   */
  constructor(api, onTrip) {
    this.api = api;
    this.onTrip = onTrip;
    const $ = (/** @type {string} */ id) => /** @type {HTMLElement} */ (document.getElementById(id));
    this.summary = $("d-summary"); this.trips = $("d-trips"); this.tripsMore = $("d-trips-more");
    this.stops = $("d-stops"); this.events = $("d-events"); this.fenceEvents = $("d-fence-events");
    /** @type {string | null} */
    this.id = null;
    this.generation = 0;
    /** @type {Trip[]} */
    this.tripList = [];
    /** @type {number | null} */
    this.selected = null;
    /** @type {DeviceEvent[]} newest first */
    this.eventList = [];
    this.trips.addEventListener("click", (event) => {
      const tr = /** @type {HTMLElement} */ (event.target).closest("tr.trip");
      if (tr) this.select(Number(/** @type {HTMLElement} */ (tr).dataset.index));
    });
  }

  /** Read the device's activity in [from, to). @param {string} id @param {Date} from @param {Date} to */
  async load(id, from, to) {
    this.id = id;
    const generation = ++this.generation;
    this.select(null);
    const base = devicePath(id);
    const range = "since=" + from.toISOString() + "&until=" + to.toISOString();
    const [summary, trips, stops, idling, events, fences] = await Promise.allSettled([
      this.api.get(base + "/summary?day=" + to.toISOString().slice(0, 10)),
      this.api.get(base + "/trips?limit=" + ITEMS_SHOWN + "&" + range),
      this.api.get(base + "/stops?limit=" + ITEMS_SHOWN + "&" + range),
      this.api.get(base + "/idling?limit=" + ITEMS_SHOWN + "&" + range),
      this.api.get(base + "/events?limit=" + EVENTS_SHOWN + "&" + range),
      this.api.get(base + "/geofence-events?limit=" + ITEMS_SHOWN + "&" + range),
    ]);
    if (generation !== this.generation) return; // another device or range was chosen meanwhile
    const value = (/** @type {PromiseSettledResult<any>} */ result) => (result.status === "fulfilled" ? result.value : null);
    this.renderSummary(value(summary));
    this.renderTrips(value(trips));
    this.renderStops(value(stops), value(idling));
    this.eventList = value(events)?.items || [];
    this.renderEvents(events.status === "fulfilled");
    this.renderFenceEvents(value(fences));
  }

  /** An event the live connection brought. @param {string} deviceId @param {DeviceEvent} event */
  heard(deviceId, event) {
    if (deviceId !== this.id || this.eventList.some((e) => eventKey(e) === eventKey(event))) return;
    this.eventList = [event, ...this.eventList]
      .sort((a, b) => Date.parse(b.ts) - Date.parse(a.ts) || b.boot - a.boot || b.seq - a.seq)
      .slice(0, EVENTS_SHOWN);
    this.renderEvents(true);
  }

  /** @param {any} day a daily summary, or null when unavailable */
  renderSummary(day) {
    this.summary.textContent = !day ? "" : day.day + " (UTC): " + [
      day.trips + (day.trips === 1 ? " trip" : " trips"),
      num(day.distance_m / 1000, 1, "km"),
      "driving " + duration(day.driving_s),
      "stopped " + duration(day.stopped_s),
      "idle " + duration(day.idle_s),
      "top speed " + num(day.max_speed_kmh, 0, "km/h"),
      day.fuel_used_pct == null ? null : "fuel used " + num(day.fuel_used_pct, 1, "%"),
    ].filter(Boolean).join(" · ");
  }

  /** @param {{items: Trip[], next_cursor: unknown} | null} page */
  renderTrips(page) {
    this.tripList = page?.items || [];
    this.tripsMore.textContent = page ? more(page, ITEMS_SHOWN) : "";
    const rows = this.tripList.map((trip, index) => {
      const tr = row("trip", [
        when(trip.start_at), trip.complete ? when(trip.end_at) : "under way", duration(trip.duration_s),
        num(trip.distance_m / 1000, 2, "km"), num(trip.max_speed_kmh, 0, "km/h"), num(trip.avg_speed_kmh, 0, "km/h"),
        num(trip.fuel_used_pct, 1, "%"),
      ]);
      tr.dataset.index = String(index);
      tr.title = "Show this trip's track on the map";
      return tr;
    });
    const headings = ["Started", "Ended", "Duration", "Distance", "Top speed", "Average", "Fuel used"];
    this.trips.replaceChildren(page ? table("trips", headings, rows, "No trips in this range.") : el("p", "unavailable", "muted"));
  }

  /** @param {{items: Interval[], next_cursor: unknown} | null} stops @param {{items: Interval[], next_cursor: unknown} | null} idling */
  renderStops(stops, idling) {
    const items = [
      ...(stops?.items || []).map((item) => ({kind: "stop", item})),
      ...(idling?.items || []).map((item) => ({kind: "idle", item})),
    ].sort((a, b) => Date.parse(a.item.start_at) - Date.parse(b.item.start_at));
    const rows = items.map(({kind, item}) => row(kind, [
      kind === "stop" ? "stopped" : "idling", when(item.start_at), item.complete === false ? "still there" : when(item.end_at),
      duration(item.duration_s), where(item.place),
    ]));
    const shown = table("stops", ["", "From", "To", "Duration", "Place"], rows, "No stops or idling in this range.");
    this.stops.replaceChildren(stops || idling ? shown : el("p", "unavailable", "muted"));
  }

  /** @param {boolean} available */
  renderEvents(available) {
    const rows = this.eventList.map((event) => {
      const tr = row("event", [when(event.ts), event.name, JSON.stringify(event.data)]);
      tr.dataset.key = eventKey(event);
      return tr;
    });
    const shown = table("events", ["Time", "Event", "Data"], rows, "No events in this range.");
    this.events.replaceChildren(available ? shown : el("p", "unavailable", "muted"));
  }

  /** @param {{items: any[], next_cursor: unknown} | null} page */
  renderFenceEvents(page) {
    const rows = (page?.items || []).map((event) => row("fence-event " + event.kind, [
      when(event.ts), event.fence_name, event.kind === "enter" ? (event.crossed ? "entered" : "inside from its first point") : "left",
    ]));
    const shown = table("fence-events", ["Time", "Geofence", ""], rows, "No geofence entered or left in this range.");
    this.fenceEvents.replaceChildren(page ? shown : el("p", "unavailable", "muted"));
  }

  /** Select a trip (its row marked, its track shown), or none; the selected one again: none. @param {number | null} index */
  select(index) {
    this.selected = index === this.selected || index === null || !this.tripList[index] ? null : index;
    for (const tr of this.trips.querySelectorAll("tr.trip")) {
      tr.classList.toggle("on", /** @type {HTMLElement} */ (tr).dataset.index === String(this.selected));
    }
    this.onTrip(this.selected === null ? null : this.tripList[this.selected]);
  }
}
