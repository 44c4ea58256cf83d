// @ts-check
/** The map's background: Natural Earth country outlines and the simulator's roads, both served by the API
 * (so the map works with no internet), under an operator's tile server when one is configured. */

const BASE = new URL("..", import.meta.url).pathname;

/** @param {any} map a Leaflet map */
export async function addBackground(map) {
  const L = /** @type {any} */ (window).L;
  const tiles = document.querySelector('meta[name="fleet-tiles"]')?.getAttribute("content");
  if (tiles) L.tileLayer(tiles, {maxZoom: 19}).addTo(map);
  const [atlas, roads] = await Promise.all([
    fetch(BASE + "vendor/world-atlas/countries-50m.json").then((r) => r.json()),
    fetch(BASE + "map/roads.geojson").then((r) => r.json()),
  ]);
  const topojson = /** @type {any} */ (window).topojson;
  const countries = topojson.feature(atlas, atlas.objects.countries);
  L.geoJSON(countries, {interactive: false, style: {color: "#8a8f98", weight: 1, fillColor: "#eef0e8", fillOpacity: tiles ? 0 : 1}})
    .addTo(map).bringToBack();
  L.geoJSON(roads, {interactive: false, style: {color: "#c9b48a", weight: 2, opacity: 0.8}}).addTo(map);
}
