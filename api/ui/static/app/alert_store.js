// @ts-check
/** The alerts as the page knows them: every open one (active or acknowledged), the newest closed ones,
 * and whatever changed live since.
 *
 * Read over REST whenever a whole-fleet subscription starts (at first, and after every reconnect: alert
 * messages carry no cursor, so a reconnect catches up by reading again), then kept current from the live
 * `alert` messages. An alert is replaced only by a copy at least as new (`updated_at`): a message may race
 * the listing it follows. Listeners hear of changes once per frame.
 */

import {SignedOut} from "./api.js";

const PAGE = 500;
const CLOSED_SHOWN = 50; // the newest cleared alerts, read with the open ones: recent history, not an archive
const OPEN_STATES = new Set(["active", "acknowledged"]);

/** @typedef {{id: number, author: string, body: string, created_at: string}} Comment */
/** @typedef {{id: number, rule_id: number, rule_name: string, device_id: string, severity: string, state: string,
 *   message: string, value: number|null, started_at: string, raised_at: string, acknowledged_at: string|null,
 *   acknowledged_by: string|null, cleared_at: string|null, clear_reason: string|null, cleared_by: string|null,
 *   updated_at: string}} Alert */

/** @param {Alert} a @param {Alert | undefined} b @returns {boolean} whether `a` may replace `b` */
function newer(a, b) {
  return !b || Date.parse(a.updated_at) >= Date.parse(b.updated_at);
}

/** @param {Alert} alert */
export const isOpen = (alert) => OPEN_STATES.has(alert.state);

export class AlertStore {
  /** @param {import("./api.js").Api} api */
  constructor(api) {
    this.api = api;
    /** @type {Map<number, Alert>} */
    this.alerts = new Map();
    /** @type {Set<() => void>} */
    this.listeners = new Set();
    this.scheduled = false;
    /** @type {Map<string, number> | null} open alerts per device, worked out again after each change */
    this.openCounts = null;
    /** @type {Alert[] | null} live changes heard while a reload is under way, applied over its result */
    this.heardWhileLoading = null;
    this.loaded = false;
    this.generation = 0;
  }

  /** @param {() => void} listener */
  onChange(listener) {
    this.listeners.add(listener);
  }

  changed() {
    this.openCounts = null;
    if (this.scheduled) return;
    this.scheduled = true;
    requestAnimationFrame(() => {
      this.scheduled = false;
      for (const listener of this.listeners) listener();
    });
  }

  /** Read the open alerts and the newest closed ones again, replacing what is held. */
  async reload() {
    const generation = ++this.generation;
    this.heardWhileLoading = [];
    /** @type {Map<number, Alert>} */
    const fresh = new Map();
    const keep = (/** @type {Alert[]} */ items) => { for (const alert of items) fresh.set(alert.id, alert); };
    try {
      await Promise.all([
        this.api.pages("/api/v1/alerts?state=active&limit=" + PAGE, keep),
        this.api.pages("/api/v1/alerts?state=acknowledged&limit=" + PAGE, keep),
        this.api.get("/api/v1/alerts?state=cleared&limit=" + CLOSED_SHOWN).then((page) => keep(page.items)),
      ]);
    } catch (err) {
      if (generation === this.generation) this.heardWhileLoading = null;
      if (!(err instanceof SignedOut)) console.warn("alerts unavailable:", err);
      return;
    }
    if (generation !== this.generation) return; // a later reload (or a sign-out) took over
    const heard = this.heardWhileLoading || [];
    this.heardWhileLoading = null;
    this.alerts = fresh;
    for (const alert of heard) this.put(alert);
    this.loaded = true;
    this.changed();
  }

  /** An alert as the server now has it (a live message, or the answer to an action). @param {Alert} alert */
  put(alert) {
    this.heardWhileLoading?.push(alert);
    if (!newer(alert, this.alerts.get(alert.id))) return;
    this.alerts.set(alert.id, alert);
    this.changed();
  }

  /** Forget everything (signing out): what another account may see is not this one's business. */
  clear() {
    this.generation += 1;
    this.heardWhileLoading = null;
    this.alerts.clear();
    this.loaded = false;
    this.changed();
  }

  /** @param {string} deviceId @returns {number} the device's open (active or acknowledged) alerts */
  openCount(deviceId) {
    if (!this.openCounts) {
      this.openCounts = new Map();
      for (const alert of this.alerts.values()) {
        if (isOpen(alert)) this.openCounts.set(alert.device_id, (this.openCounts.get(alert.device_id) || 0) + 1);
      }
    }
    return this.openCounts.get(deviceId) || 0;
  }

  /**
   * An alert's comments, oldest first (the listing and the live messages carry none).
   * @param {number} id @returns {Promise<Comment[]>}
   */
  async comments(id) {
    return (await this.api.get("/api/v1/alerts/" + id)).comments;
  }

  /**
   * Comment on an alert; resolves to null when done, else a message to show. Every page showing the alert
   * hears of it (a live `commented` message).
   * @param {number} id @param {string} body
   * @returns {Promise<string | null>}
   */
  async comment(id, body) {
    try {
      await this.api.post("/api/v1/alerts/" + id + "/comments", {body});
      return null;
    } catch (err) {
      if (err instanceof SignedOut) return null;
      return String(/** @type {Error} */ (err).message || err);
    }
  }

  /**
   * Acknowledge or clear an alert; resolves to null when done, else a message to show.
   * @param {number} id @param {"acknowledge" | "clear"} action @param {string} comment empty: none
   * @returns {Promise<string | null>}
   */
  async act(id, action, comment) {
    try {
      const alert = await this.api.post("/api/v1/alerts/" + id + "/" + action, comment ? {comment} : {});
      this.put(alert);
      return null;
    } catch (err) {
      if (err instanceof SignedOut) return null;
      return String(/** @type {Error} */ (err).message || err);
    }
  }
}
