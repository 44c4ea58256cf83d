// @ts-check
/** Geofences on the fleet map: every fence drawn (polygons, and circles: a Point with `radius_m`), its name
 * on hover. Operators and admins draw a polygon (click the vertices; double-click or "Finish" closes it) or
 * a circle (click the centre, then its edge, or type the radius), name it and save it; a fence clicked is
 * edited: its name, its shape (drag a vertex or the centre, type the radius) or deleted. Saved over REST
 * (`POST`, `PUT`, `DELETE /api/v1/geofences`), whose refusals are shown with their reasons; the fences are
 * read again after every change and whenever the map is shown (they have no live messages). */

const FENCES = "/api/v1/geofences";
const STYLE = {color: "#7c3aed", weight: 2, fillOpacity: 0.08, className: "fence"};
const DRAFT_STYLE = {color: "#db2777", weight: 3, dashArray: "6 4", fillOpacity: 0.15, className: "fence-draft"};
const SAME_VERTEX_PX = 6; // a click this close to the last vertex adds none (a double-click's own clicks)
const DIGITS = 6; // about 0.1 m

/** @typedef {{type: "Feature", id: number, geometry: {type: string, coordinates: any}, properties: Record<string, any>}} Fence */
/** @typedef {{kind: "polygon" | "circle", id: number | null, vertices: any[], closed: boolean, centre: any,
 *   radius: number, properties: Record<string, any>, geometry: any}} Draft
 * `geometry` is kept as it was for a fence whose shape the page does not edit (holes, several polygons). */

/** @param {number} v */
const round = (v) => Number(v.toFixed(DIGITS));

export class FenceLayer {
  /**
   * @param {any} map a Leaflet map
   * @param {import("./api.js").Api} api
   * @param {() => boolean} canEdit whether the page may offer changes now (role, and not read-only)
   */
  constructor(map, api, canEdit) {
    const L = /** @type {any} */ (window).L;
    this.L = L;
    this.map = map;
    this.api = api;
    this.canEdit = canEdit;
    this.layer = L.featureGroup().addTo(map);
    this.draftLayer = L.layerGroup().addTo(map);
    /** @type {Fence[]} */
    this.fences = [];
    /** @type {Draft | null} */
    this.draft = null;
    /** @type {any} */
    this.draftShape = null;
    this.generation = 0;
    const $ = (/** @type {string} */ id) => /** @type {HTMLElement} */ (document.getElementById(id));
    this.form = /** @type {HTMLFormElement} */ ($("fence-form"));
    this.nameInput = /** @type {HTMLInputElement} */ (this.form.elements.namedItem("name"));
    this.radiusInput = /** @type {HTMLInputElement} */ (this.form.elements.namedItem("radius"));
    this.radiusLabel = $("fence-radius-label");
    this.finishButton = $("fence-finish");
    this.deleteButton = /** @type {HTMLButtonElement} */ ($("fence-delete"));
    this.drawButtons = $("fence-buttons");
    this.hint = $("fence-hint");
    this.error = $("fence-error");
    $("fence-polygon").addEventListener("click", () => this.start("polygon"));
    $("fence-circle").addEventListener("click", () => this.start("circle"));
    this.finishButton.addEventListener("click", () => this.finish());
    $("fence-cancel").addEventListener("click", () => this.cancel());
    this.deleteButton.addEventListener("click", () => this.remove());
    this.form.addEventListener("submit", (event) => { event.preventDefault(); this.save(); });
    this.radiusInput.addEventListener("input", () => {
      const radius = Number(this.radiusInput.value);
      const d = this.draft;
      if (d?.kind !== "circle" || !d.centre || !(radius > 0)) return;
      d.radius = radius;
      d.closed = true; // typed: the pointer no longer sets it
      this.redraw(false);
      this.showPanel();
    });
    map.on("click", (/** @type {any} */ event) => this.clicked(event.latlng));
    map.on("dblclick", () => { if (this.draft?.kind === "polygon" && !this.draft.closed) this.finish(); });
    map.on("mousemove", (/** @type {any} */ event) => this.moved(event.latlng));
    this.showPanel();
  }

  /** Read the fences again and draw them (the one being edited stays hidden under its draft). */
  async load() {
    const generation = ++this.generation;
    let collection;
    try {
      collection = await this.api.get(FENCES);
    } catch (err) {
      console.warn("geofences unavailable:", err);
      return;
    }
    if (generation !== this.generation) return;
    this.fences = collection.features;
    this.draw();
  }

  draw() {
    this.layer.clearLayers();
    for (const fence of this.fences) {
      if (fence.id === this.draft?.id) continue;
      const shape = fence.geometry.type === "Point"
        ? this.L.circle([fence.geometry.coordinates[1], fence.geometry.coordinates[0]], {...STYLE, radius: fence.properties.radius_m})
        : this.L.geoJSON(fence, {style: () => STYLE});
      shape.bindTooltip(fence.properties.name, {sticky: true});
      shape.on("click", () => { if (!this.draft && this.canEdit()) this.edit(fence); });
      this.layer.addLayer(shape);
    }
  }

  /** Forget what is shown and any draft (signing out, or a role that may not edit). */
  clear() {
    this.generation += 1;
    this.fences = [];
    this.layer.clearLayers();
    this.cancel();
  }

  /** For tests and debugging: the fences drawn, by id, name and kind. */
  shown() {
    return this.fences.map((f) => ({id: f.id, name: f.properties.name, kind: f.geometry.type}));
  }

  /** @param {"polygon" | "circle"} kind */
  start(kind) {
    this.cancel();
    this.draft = {kind, id: null, vertices: [], closed: false, centre: null, radius: 0, properties: {}, geometry: null};
    this.map.doubleClickZoom.disable();
    this.nameInput.value = "";
    this.showPanel();
  }

  /** @param {Fence} fence */
  edit(fence) {
    this.cancel();
    const g = fence.geometry;
    const plain = g.type === "Polygon" && g.coordinates.length === 1;
    const ring = plain ? g.coordinates[0].slice(0, -1) : [];
    this.draft = {
      kind: g.type === "Point" ? "circle" : "polygon",
      id: fence.id,
      vertices: ring.map((/** @type {number[]} */ p) => this.L.latLng(p[1], p[0])),
      closed: true,
      centre: g.type === "Point" ? this.L.latLng(g.coordinates[1], g.coordinates[0]) : null,
      radius: g.type === "Point" ? fence.properties.radius_m : 0,
      properties: fence.properties,
      geometry: g.type === "Point" || plain ? null : g,
    };
    this.nameInput.value = fence.properties.name;
    this.draw();
    this.redraw(true);
    this.showPanel();
  }

  cancel() {
    const editing = this.draft?.id != null;
    this.draft = null;
    this.draftShape = null;
    this.draftLayer.clearLayers();
    this.map.doubleClickZoom.enable();
    this.error.textContent = "";
    if (editing) this.draw();
    this.showPanel();
  }

  /** @param {any} at */
  clicked(at) {
    const d = this.draft;
    if (!d || d.closed) return;
    if (d.kind === "circle") {
      if (!d.centre) d.centre = at;
      else { d.radius = Math.max(1, Math.round(d.centre.distanceTo(at))); d.closed = true; }
      this.redraw(true);
      this.showPanel();
      return;
    }
    const last = d.vertices[d.vertices.length - 1];
    if (last && this.map.latLngToContainerPoint(last).distanceTo(this.map.latLngToContainerPoint(at)) < SAME_VERTEX_PX) return;
    d.vertices.push(at);
    this.redraw(true);
    this.showPanel();
  }

  /** While a circle's centre is set, its edge follows the pointer. @param {any} at */
  moved(at) {
    const d = this.draft;
    if (d?.kind !== "circle" || !d.centre || d.closed) return;
    d.radius = Math.max(1, Math.round(d.centre.distanceTo(at)));
    this.redraw(false);
  }

  /** Close the polygon being drawn (three vertices at least). */
  finish() {
    const d = this.draft;
    if (!d || d.kind !== "polygon" || d.closed) return;
    if (d.vertices.length < 3) { this.error.textContent = "a polygon needs three vertices at least"; return; }
    d.closed = true;
    this.error.textContent = "";
    this.redraw(true);
    this.showPanel();
  }

  /** Draw the draft; `handles`: with its drag handles made again (not while one is dragged). @param {boolean} handles */
  redraw(handles) {
    const d = this.draft;
    if (!d) return;
    if (handles) { this.draftLayer.clearLayers(); this.draftShape = null; }
    if (d.kind === "circle") {
      this.radiusInput.value = d.radius ? String(d.radius) : "";
      if (!d.centre) return;
      if (this.draftShape) { this.draftShape.setLatLng(d.centre); this.draftShape.setRadius(d.radius || 1); }
      else this.draftShape = this.L.circle(d.centre, {...DRAFT_STYLE, radius: d.radius || 1}).addTo(this.draftLayer);
      if (handles) this.handle(d.centre, (at) => { d.centre = at; });
      return;
    }
    if (d.geometry) { this.draftShape = this.L.geoJSON(d.geometry, {style: () => DRAFT_STYLE}).addTo(this.draftLayer); return; }
    const make = d.closed ? this.L.polygon : this.L.polyline;
    if (this.draftShape) this.draftShape.setLatLngs(d.vertices);
    else if (d.vertices.length) this.draftShape = make(d.vertices, DRAFT_STYLE).addTo(this.draftLayer);
    if (handles) d.vertices.forEach((v, i) => this.handle(v, (at) => { d.vertices[i] = at; }));
  }

  /** A draggable handle at `at`; `moved` is told where it went. @param {any} at @param {(at: any) => void} moved */
  handle(at, moved) {
    const icon = this.L.divIcon({className: "fence-handle", iconSize: [12, 12]});
    const marker = this.L.marker(at, {icon, draggable: true, keyboard: false}).addTo(this.draftLayer);
    marker.on("drag", () => { moved(marker.getLatLng()); this.redraw(false); });
  }

  /** The draft as a GeoJSON Feature to send, or null when it is not a shape yet. */
  feature() {
    const d = this.draft;
    if (!d) return null;
    const properties = {...d.properties, name: this.nameInput.value.trim()};
    if (d.kind === "circle") {
      if (!d.centre || !(d.radius > 0)) return null;
      return {type: "Feature", geometry: {type: "Point", coordinates: [round(d.centre.lng), round(d.centre.lat)]},
        properties: {...properties, radius_m: d.radius}};
    }
    if (d.geometry) return {type: "Feature", geometry: d.geometry, properties};
    if (d.vertices.length < 3) return null;
    const ring = d.vertices.map((v) => [round(v.lng), round(v.lat)]);
    return {type: "Feature", geometry: {type: "Polygon", coordinates: [[...ring, ring[0]]]}, properties};
  }

  async save() {
    if (this.draft?.kind === "polygon" && !this.draft.closed) this.finish();
    const feature = this.feature();
    if (!this.draft || !feature) { this.error.textContent = "draw the shape first"; return; }
    const id = this.draft.id;
    try {
      if (id == null) await this.api.post(FENCES, feature);
      else await this.api.put(FENCES + "/" + id, feature);
    } catch (err) {
      this.error.textContent = "not saved: " + String(/** @type {Error} */ (err).message);
      return;
    }
    this.cancel();
    await this.load();
  }

  async remove() {
    const id = this.draft?.id;
    if (id == null) return;
    // Two steps rather than a dialog: a second click says it was meant.
    if (this.deleteButton.dataset.armed !== "true") {
      this.deleteButton.dataset.armed = "true";
      this.deleteButton.textContent = "Really delete?";
      return;
    }
    try {
      await this.api.delete(FENCES + "/" + id);
    } catch (err) {
      this.error.textContent = "not deleted: " + String(/** @type {Error} */ (err).message);
      return;
    }
    this.cancel();
    await this.load();
  }

  /** The panel says what to do next and offers what fits the draft. */
  showPanel() {
    const d = this.draft;
    this.drawButtons.hidden = Boolean(d);
    this.form.hidden = !d;
    this.deleteButton.hidden = d?.id == null;
    this.deleteButton.dataset.armed = "false";
    this.deleteButton.textContent = "Delete";
    this.finishButton.hidden = !(d?.kind === "polygon" && !d.closed);
    this.radiusLabel.hidden = d?.kind !== "circle";
    this.hint.textContent = !d ? "Click a geofence to change it, or draw one."
      : d.kind === "polygon" && !d.closed ? "Click the vertices; double-click or Finish to close the polygon."
      : d.kind === "circle" && !d.closed ? (d.centre ? "Click the circle's edge, or type its radius." : "Click the circle's centre.")
      : d.geometry ? "Rename it (this shape is changed over the API)."
      : "Drag the handles to change the shape; name it and save.";
  }
}
