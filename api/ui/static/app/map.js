// @ts-check
/** The live fleet map: a marker per device (status colour, heading arrow, popup with the latest state),
 * clustered when zoomed out, filtered by the filter bar; the live subscription follows the visible area.
 * The geofences are drawn under the markers, and drawn and edited there by operators (fences.js). */

import {addBackground} from "./background.js";
import {FenceLayer} from "./fences.js";
import {age, el, num} from "./format.js";

const CENTRE = [52.52, 13.405];
const ZOOM = 11;
const MOVE_DEBOUNCE_MS = 300;
const BOX_PAD = 0.1; // subscribe a little beyond the view, so a truck entering is already known
const BOX_DIGITS = 4;

export class MapScreen {
  /**
   * @param {HTMLElement} container
   * @param {import("./store.js").FleetStore} store
   * @param {import("./live.js").LiveLink} live
   * @param {import("./filters.js").Filters} filters
   * @param {import("./api.js").Api} api
   * @param {import("./auth.js").Session} session
   */
  constructor(container, store, live, filters, api, session) {
    this.store = store;
    this.live = live;
    this.filters = filters;
    const L = /** @type {any} */ (window).L;
    this.L = L;
    this.map = L.map(container, {maxZoom: 18, worldCopyJump: true}).setView(CENTRE, ZOOM);
    L.control.scale().addTo(this.map);
    this.cluster = L.markerClusterGroup({chunkedLoading: true, disableClusteringAtZoom: 16, showCoverageOnHover: false});
    this.fences = new FenceLayer(this.map, api, () => session.allows("operator") && !document.body.classList.contains("readonly"));
    this.map.addLayer(this.cluster);
    /** @type {Map<string, any>} */
    this.markers = new Map();
    /** @type {number | undefined} */
    this.moveTimer = undefined;
    this.active = false;
    addBackground(this.map).catch((err) => console.warn("map background:", err));
    this.map.on("moveend", () => {
      clearTimeout(this.moveTimer);
      this.moveTimer = window.setTimeout(() => { if (this.active) this.subscribeView(); }, MOVE_DEBOUNCE_MS);
    });
    store.onChange((ids) => this.updateAll(ids));
    filters.onChange(() => this.updateAll(this.store.states.keys()));
    live.onSubscribed((selector, ids) => this.reconcile(selector, ids));
  }

  show() {
    this.active = true;
    this.map.invalidateSize();
    this.subscribeView();
    if (!this.fences.canEdit()) this.fences.cancel();
    this.fences.load();
  }

  hide() {
    this.active = false;
  }

  /** @returns {number[]} the visible area, padded, as [min_lon, min_lat, max_lon, max_lat] */
  box() {
    const b = this.map.getBounds().pad(BOX_PAD);
    const round = (/** @type {number} */ v) => Number(v.toFixed(BOX_DIGITS));
    return [
      round(Math.max(-180, b.getWest())), round(Math.max(-90, b.getSouth())),
      round(Math.min(180, b.getEast())), round(Math.min(90, b.getNorth())),
    ];
  }

  subscribeView() {
    this.live.select({bbox: this.box()});
  }

  /** After a box's snapshots: a marker inside the box that no snapshot named is no longer there.
   * @param {any} selector @param {Set<string>} ids */
  reconcile(selector, ids) {
    if (!selector.bbox) return;
    const [w, s, e, n] = selector.bbox;
    for (const [id, marker] of this.markers) {
      const p = marker.getLatLng();
      if (!ids.has(id) && p.lng >= w && p.lng <= e && p.lat >= s && p.lat <= n) this.store.dropPosition(id);
    }
  }

  /** Bring the markers of `ids` up to date; markers come and go in one batch each, as the cluster
   * layer re-clusters once per batch rather than once per marker (seconds, with thousands).
   * @param {Iterable<string>} ids */
  updateAll(ids) {
    /** @type {any[]} */
    const added = [];
    /** @type {any[]} */
    const removed = [];
    for (const id of ids) this.update(id, added, removed);
    if (removed.length) this.cluster.removeLayers(removed);
    if (added.length) this.cluster.addLayers(added);
  }

  /** @param {string} id @param {any[]} added markers to add @param {any[]} removed markers to remove */
  update(id, added, removed) {
    const state = this.store.states.get(id);
    const p = state?.position;
    let marker = this.markers.get(id);
    if (!p || !this.filters.matches(id)) {
      if (marker) { removed.push(marker); this.markers.delete(id); }
      return;
    }
    const status = this.store.status(id);
    if (!marker) {
      marker = this.L.marker([p.lat, p.lon], {icon: this.icon(status), title: id});
      marker.deviceId = id;
      marker.status = status;
      marker.on("add", () => this.turn(marker));
      marker.bindPopup(() => this.popup(id), {minWidth: 200});
      this.markers.set(id, marker);
      added.push(marker);
    } else {
      const at = marker.getLatLng();
      if (at.lat !== p.lat || at.lng !== p.lon) marker.setLatLng([p.lat, p.lon]);
      if (marker.status !== status) { marker.status = status; marker.setIcon(this.icon(status)); this.turn(marker); }
    }
    marker.heading = p.heading;
    this.turn(marker);
    if (marker.isPopupOpen()) marker.setPopupContent(this.popup(id));
  }

  /** @param {string} status */
  icon(status) {
    return this.L.divIcon({className: "truck s-" + status, html: "<i></i>", iconSize: [18, 18], iconAnchor: [9, 9]});
  }

  /** Point the marker's arrow along its heading (set through the DOM: no inline style in markup). @param {any} marker */
  turn(marker) {
    const arrow = marker.getElement()?.firstElementChild;
    if (arrow) {
      arrow.style.transform = "rotate(" + (marker.heading ?? 0) + "deg)";
      arrow.classList.toggle("still", marker.heading == null);
    }
  }

  /** @param {string} id @returns {HTMLElement} */
  popup(id) {
    const state = this.store.states.get(id);
    const device = this.store.registry.get(id);
    const box = el("div", undefined, "popup");
    box.appendChild(el("strong", id + (device?.name ? " · " + device.name : "")));
    const status = this.store.status(id);
    box.appendChild(el("div", status + (state?.presence ? " since " + age(state.presence.since) : ""), "s-text s-" + status));
    const rows = [
      ["Last update", age(state?.ts)],
      ["Speed", num(state?.position?.speed, 0, "km/h")],
      ["Heading", num(state?.position?.heading, 0, "°")],
      ["Fuel", num(state?.metrics.fuel?.value, 1, "%")],
      ["Engine", num(state?.metrics.engine_temp?.value, 1, "°C")],
    ];
    const dl = el("dl");
    for (const [k, v] of rows) { dl.appendChild(el("dt", k)); dl.appendChild(el("dd", v)); }
    box.appendChild(dl);
    const link = /** @type {HTMLAnchorElement} */ (el("a", "Details"));
    link.href = "#/device/" + encodeURIComponent(id);
    box.appendChild(link);
    return box;
  }

  /** For tests and debugging: where the map shows a device, or null. @param {string} id */
  markerAt(id) {
    const marker = this.markers.get(id);
    if (!marker) return null;
    const p = marker.getLatLng();
    return {lat: p.lat, lng: p.lng, status: marker.status};
  }
}
