// @ts-check
/** The last-known fleet, kept in IndexedDB so that a field tablet without a network still shows it.
 *
 * While the page is live, the registry and the states it holds are written (at most every few seconds)
 * as one record; when the API cannot be reached at start, that record is shown read-only, labelled with
 * the time it was saved. Signing out deletes it: it is the signed-in operator's view.
 */

const DB_NAME = "fleetbridge";
const STORE = "fleet";
const KEY = "last-known";
const SAVE_EVERY_MS = 3000;

/** @typedef {{savedAt: string, registry: import("./store.js").Device[], states: [string, import("./store.js").State][]}} Snapshot */

/** @returns {Promise<IDBDatabase>} */
function open() {
  return new Promise((resolve, reject) => {
    const request = indexedDB.open(DB_NAME, 1);
    request.onupgradeneeded = () => request.result.createObjectStore(STORE);
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

/** @param {"readonly" | "readwrite"} mode @param {(store: IDBObjectStore) => IDBRequest} action @returns {Promise<any>} */
async function run(mode, action) {
  const db = await open();
  try {
    return await new Promise((resolve, reject) => {
      const request = action(db.transaction(STORE, mode).objectStore(STORE));
      request.onsuccess = () => resolve(request.result);
      request.onerror = () => reject(request.error);
    });
  } finally {
    db.close();
  }
}

export class LastKnown {
  /** @param {import("./store.js").FleetStore} store */
  constructor(store) {
    this.store = store;
    this.saving = false;
    /** @type {number | undefined} */
    this.timer = undefined;
    /** @type {string | null} when the last record was written (for tests and the label) */
    this.savedAt = null;
  }

  /** Start writing the store's fleet after its changes (at most every few seconds). */
  keep() {
    this.saving = true;
    if (this.timer === undefined) this.timer = window.setTimeout(() => this.save(), SAVE_EVERY_MS);
  }

  /** Stop writing (showing the last-known fleet, or signed out). */
  pause() {
    this.saving = false;
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  async save() {
    this.timer = undefined;
    if (!this.saving || this.store.registry.size === 0) return;
    /** @type {Snapshot} */
    const snapshot = {
      savedAt: new Date().toISOString(),
      registry: [...this.store.registry.values()],
      states: [...this.store.states.entries()],
    };
    try {
      await run("readwrite", (s) => s.put(snapshot, KEY));
      this.savedAt = snapshot.savedAt;
    } catch (err) {
      console.warn("last-known fleet not saved:", err);
    }
  }

  /** Put the saved fleet into the store. @returns {Promise<string | null>} when it was saved, or null: none. */
  async restore() {
    /** @type {Snapshot | undefined} */
    let snapshot;
    try {
      snapshot = await run("readonly", (s) => s.get(KEY));
    } catch {
      return null;
    }
    if (!snapshot) return null;
    this.store.register(snapshot.registry);
    for (const [id, state] of snapshot.states) this.store.replace(id, state);
    return snapshot.savedAt;
  }

  async forget() {
    this.pause();
    this.savedAt = null;
    try { await run("readwrite", (s) => s.delete(KEY)); } catch { /* nothing stored */ }
  }
}
