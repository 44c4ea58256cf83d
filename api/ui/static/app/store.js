// @ts-check
/** The fleet as the page knows it: the registry and each device's state, merged field by field.
 *
 * A field is replaced only by a newer one (device time, then boot, then seq): a change can race the snapshot
 * it follows, and a late sample must never roll a value back. Screens hear of changes once per frame.
 */

/** @typedef {{value: number, ts: string, seq: number, boot?: number}} Field */
/** @typedef {{lat: number, lon: number, ts: string, seq: number, speed?: number|null, heading?: number|null}} Position */
/** @typedef {{state: string, source: string, since: string}} Presence */
/** @typedef {{ts: string|null, position: Position|null, metrics: Record<string, Field>, presence: Presence|null}} State */
/** @typedef {{id: string, kind: string, name: string|null, group: string|null, disabled?: boolean}} Device */

/** @param {{ts: string, seq: number, boot?: number}} a @param {{ts: string, seq: number, boot?: number} | null | undefined} b */
function newer(a, b) {
  if (!b) return true;
  const ta = Date.parse(a.ts), tb = Date.parse(b.ts);
  if (ta !== tb) return ta > tb;
  if ((a.boot ?? 0) !== (b.boot ?? 0)) return (a.boot ?? 0) > (b.boot ?? 0);
  return a.seq >= b.seq;
}

export class FleetStore {
  constructor() {
    /** @type {Map<string, State>} */
    this.states = new Map();
    /** @type {Map<string, Device>} */
    this.registry = new Map();
    /** @type {Set<(ids: Set<string>) => void>} */
    this.listeners = new Set();
    /** @type {Set<string>} */
    this.dirty = new Set();
    this.scheduled = false;
    /** Counts registry changes, so that what lists groups and kinds knows when to look again. */
    this.registryVersion = 0;
  }

  /** @param {(ids: Set<string>) => void} listener */
  onChange(listener) {
    this.listeners.add(listener);
  }

  /** @param {string} id */
  touch(id) {
    this.dirty.add(id);
    if (this.scheduled) return;
    this.scheduled = true;
    requestAnimationFrame(() => {
      this.scheduled = false;
      const ids = this.dirty;
      this.dirty = new Set();
      for (const listener of this.listeners) listener(ids);
    });
  }

  /** Forget everything (signing out): what another account may see is not this one's business. */
  clear() {
    const ids = [...this.states.keys(), ...this.registry.keys()];
    this.states.clear();
    this.registry.clear();
    this.registryVersion += 1;
    for (const id of ids) this.touch(id);
  }

  /** @param {Device[]} devices */
  register(devices) {
    for (const device of devices) {
      this.registry.set(device.id, device);
      this.touch(device.id);
    }
    this.registryVersion += 1;
  }

  /** @param {string} id @returns {State} */
  state(id) {
    let state = this.states.get(id);
    if (!state) {
      state = {ts: null, position: null, metrics: {}, presence: null};
      this.states.set(id, state);
    }
    return state;
  }

  /** A snapshot: the device's whole state as the server holds it now (null: none).
   * @param {string} id @param {any} snapshot */
  replace(id, snapshot) {
    this.states.delete(id);
    if (snapshot) this.merge(id, snapshot);
    else this.touch(id);
  }

  /** @param {string} id @param {any} changes a DeviceState holding the changed fields */
  merge(id, changes) {
    const cur = this.state(id);
    if (changes.position && newer(changes.position, cur.position)) cur.position = changes.position;
    for (const [name, field] of Object.entries(changes.metrics || {})) {
      if (newer(/** @type {Field} */ (field), cur.metrics[name])) cur.metrics[name] = /** @type {Field} */ (field);
    }
    if (changes.ts && (!cur.ts || Date.parse(changes.ts) > Date.parse(cur.ts))) cur.ts = changes.ts;
    if (changes.presence) this.presence(id, changes.presence);
    this.touch(id);
  }

  /** @param {string} id @param {Presence} presence */
  presence(id, presence) {
    const cur = this.state(id);
    if (!cur.presence || Date.parse(presence.since) >= Date.parse(cur.presence.since)) cur.presence = presence;
    this.touch(id);
  }

  /** Forget a device's position: the server no longer places it where the page showed it.
   * @param {string} id */
  dropPosition(id) {
    const cur = this.states.get(id);
    if (cur && cur.position) { cur.position = null; this.touch(id); }
  }

  /** @param {string} id @returns {string} online, offline or unknown */
  status(id) {
    return this.states.get(id)?.presence?.state || "unknown";
  }
}
