// @ts-check
/** The fleet table: one row per device (with its open alerts counted), sortable, searchable, live; only the rows in view exist in the
 * page (a pool of row elements re-filled on scroll), so 10,000 devices scroll as smoothly as 10. */

import {age, num} from "./format.js";

const ROW_PX = 28;
const OVERSCAN_ROWS = 10;
const RESORT_MS = 1000; // live values move rows at most this often: a row does not jump under the pointer

/** @typedef {{key: string, title: string, num?: boolean, value: (id: string) => any, text: (id: string) => string}} Column */

export class TableScreen {
  /**
   * @param {import("./store.js").FleetStore} store
   * @param {import("./live.js").LiveLink} live
   * @param {import("./filters.js").Filters} filters
   * @param {import("./alert_store.js").AlertStore} alerts the open alerts, counted per device
   */
  constructor(store, live, filters, alerts) {
    this.store = store;
    this.alerts = alerts;
    this.live = live;
    this.filters = filters;
    this.view = /** @type {HTMLElement} */ (document.getElementById("table-view"));
    this.spacer = /** @type {HTMLElement} */ (document.getElementById("table-spacer"));
    this.head = /** @type {HTMLElement} */ (document.getElementById("table-head"));
    this.count = /** @type {HTMLElement} */ (document.getElementById("table-count"));
    const st = (/** @type {string} */ id) => store.states.get(id);
    /** @type {Column[]} */
    this.columns = [
      {key: "id", title: "Device", value: (id) => id, text: (id) => id},
      {key: "name", title: "Name", value: (id) => store.registry.get(id)?.name || "", text: (id) => store.registry.get(id)?.name || ""},
      {key: "group", title: "Group", value: (id) => store.registry.get(id)?.group || "", text: (id) => store.registry.get(id)?.group || ""},
      {key: "status", title: "Status", value: (id) => store.status(id), text: (id) => store.status(id)},
      {key: "seen", title: "Last seen", value: (id) => Date.parse(st(id)?.ts || "") || 0, text: (id) => age(st(id)?.ts)},
      {key: "speed", title: "Speed km/h", num: true, value: (id) => st(id)?.position?.speed ?? -1, text: (id) => num(st(id)?.position?.speed, 0)},
      {key: "fuel", title: "Fuel %", num: true, value: (id) => st(id)?.metrics.fuel?.value ?? -1, text: (id) => num(st(id)?.metrics.fuel?.value, 1)},
      {key: "engine", title: "Engine °C", num: true, value: (id) => st(id)?.metrics.engine_temp?.value ?? -1, text: (id) => num(st(id)?.metrics.engine_temp?.value, 1)},
      {key: "alerts", title: "Alerts", num: true, value: (id) => alerts.openCount(id), text: (id) => String(alerts.openCount(id) || "")},
    ];
    this.sortKey = "id";
    this.sortDir = 1;
    /** @type {string[]} */
    this.order = [];
    /** @type {HTMLElement[]} */
    this.pool = [];
    this.active = false;
    this.orderStale = true;
    this.lastSort = 0;
    this.renderHead();
    this.view.addEventListener("scroll", () => this.render());
    this.view.addEventListener("click", (event) => {
      const row = /** @type {HTMLElement} */ (event.target).closest("[data-device]");
      if (row) location.hash = "#/device/" + encodeURIComponent(row.getAttribute("data-device") || "");
    });
    store.onChange(() => { this.orderStale = true; if (this.active) this.render(); });
    alerts.onChange(() => { this.orderStale = true; if (this.active) this.render(); });
    filters.onChange(() => { this.orderStale = true; this.lastSort = 0; if (this.active) this.render(); });
    window.setInterval(() => { if (this.active) this.render(); }, 1000); // ages tick
  }

  show() {
    this.active = true;
    this.live.select({devices: ["*"]});
    this.orderStale = true;
    this.lastSort = 0;
    this.render();
  }

  hide() {
    this.active = false;
  }

  renderHead() {
    this.head.replaceChildren();
    for (const column of this.columns) {
      const cell = document.createElement("button");
      cell.type = "button";
      cell.className = "cell" + (column.num ? " num" : "");
      cell.dataset.sort = column.key;
      cell.textContent = column.title + (this.sortKey === column.key ? (this.sortDir > 0 ? " ▲" : " ▼") : "");
      cell.addEventListener("click", () => {
        this.sortDir = this.sortKey === column.key ? -this.sortDir : 1;
        this.sortKey = column.key;
        this.renderHead();
        this.orderStale = true;
        this.lastSort = 0;
        this.render();
      });
      this.head.appendChild(cell);
    }
  }

  resort() {
    const ids = new Set([...this.store.registry.keys(), ...this.store.states.keys()]);
    const column = this.columns.find((c) => c.key === this.sortKey) || this.columns[0];
    const rows = [...ids].filter((id) => this.filters.matches(id)).map((id) => ({id, v: column.value(id)}));
    const dir = this.sortDir;
    rows.sort((a, b) => (a.v < b.v ? -dir : a.v > b.v ? dir : a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    this.order = rows.map((r) => r.id);
    this.orderStale = false;
    this.lastSort = Date.now();
  }

  render() {
    if (this.orderStale && Date.now() - this.lastSort >= RESORT_MS) this.resort();
    this.spacer.style.height = this.order.length * ROW_PX + "px";
    this.count.textContent = this.order.length + " devices";
    const first = Math.max(0, Math.floor(this.view.scrollTop / ROW_PX) - OVERSCAN_ROWS);
    const visible = Math.ceil(this.view.clientHeight / ROW_PX) + 2 * OVERSCAN_ROWS;
    const last = Math.min(this.order.length, first + visible);
    while (this.pool.length < last - first) this.pool.push(this.newRow());
    for (let i = 0; i < this.pool.length; i++) {
      const row = this.pool[i];
      const index = first + i;
      if (index >= last) { row.hidden = true; row.removeAttribute("data-device"); continue; }
      const id = this.order[index];
      row.hidden = false;
      row.style.transform = "translateY(" + index * ROW_PX + "px)";
      row.setAttribute("data-device", id);
      row.className = "row s-row-" + this.store.status(id) + (this.alerts.openCount(id) ? " s-row-alerting" : "");
      this.columns.forEach((column, c) => {
        const text = column.text(id);
        const cell = /** @type {HTMLElement} */ (row.children[c]);
        if (cell.textContent !== text) cell.textContent = text;
      });
    }
  }

  /** @returns {HTMLElement} */
  newRow() {
    const row = document.createElement("div");
    row.setAttribute("role", "row");
    for (const column of this.columns) {
      const cell = document.createElement("div");
      cell.className = "cell" + (column.num ? " num" : "");
      cell.setAttribute("role", "gridcell");
      row.appendChild(cell);
    }
    this.view.appendChild(row);
    return row;
  }
}
