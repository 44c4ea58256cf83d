// @ts-check
/** The filter bar shared by the map and the table: search, group, kind and status. */

export class Filters {
  /** @param {import("./store.js").FleetStore} store */
  constructor(store) {
    this.store = store;
    this.search = /** @type {HTMLInputElement} */ (document.getElementById("f-search"));
    this.group = /** @type {HTMLSelectElement} */ (document.getElementById("f-group"));
    this.kind = /** @type {HTMLSelectElement} */ (document.getElementById("f-kind"));
    this.statusSel = /** @type {HTMLSelectElement} */ (document.getElementById("f-status"));
    /** @type {Set<() => void>} */
    this.listeners = new Set();
    this.seenVersion = -1;
    store.onChange(() => { if (store.registryVersion !== this.seenVersion) this.refreshOptions(); });
    for (const input of [this.search, this.group, this.kind, this.statusSel]) {
      input.addEventListener("input", () => { for (const listener of this.listeners) listener(); });
    }
  }

  /** @param {() => void} listener */
  onChange(listener) {
    this.listeners.add(listener);
  }

  /** Offer every group and kind the registry names. */
  refreshOptions() {
    this.seenVersion = this.store.registryVersion;
    const groups = new Set(), kinds = new Set();
    for (const device of this.store.registry.values()) {
      if (device.group) groups.add(device.group);
      kinds.add(device.kind);
    }
    fill(this.group, groups);
    fill(this.kind, kinds);
  }

  /** @param {string} id @returns {boolean} */
  matches(id) {
    const device = this.store.registry.get(id);
    if (this.group.value && device?.group !== this.group.value) return false;
    if (this.kind.value && device?.kind !== this.kind.value) return false;
    if (this.statusSel.value && this.store.status(id) !== this.statusSel.value) return false;
    const q = this.search.value.trim().toLowerCase();
    if (q && !id.toLowerCase().includes(q) && !(device?.name || "").toLowerCase().includes(q)) return false;
    return true;
  }
}

/** @param {HTMLSelectElement} select @param {Set<string>} values */
function fill(select, values) {
  const have = new Set(Array.from(select.options).map((o) => o.value));
  for (const value of [...values].sort()) {
    if (have.has(value)) continue;
    const option = document.createElement("option");
    option.value = option.textContent = value;
    select.appendChild(option);
  }
}
