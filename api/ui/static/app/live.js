// @ts-check
/** The one live connection of the page: a WebSocket to /api/v1/live, or long polling when none opens.
 *
 * It holds one selection at a time (the screen on view decides: a map box, every device, one device),
 * re-subscribes after every reconnect, resumes from the last cursor it was given (so nothing is missed
 * and nothing is sent twice), sends a fresh token in-band before the old one expires, and reports what
 * it is doing: live, reconnecting, polling, offline, or stale (no word from the server for too long).
 */

import {SignedOut} from "./api.js";

const RETRY_MIN_MS = 500;
const RETRY_MAX_MS = 15000;
const STALE_AFTER_MS = 40000; // the server says something (a heartbeat at least) every 15 s
const FAILED_OPENS_BEFORE_POLLING = 2;
const POLL_WAIT_S = 25;
const POLL_LIMIT = 1000;
const WEBSOCKET_RETRY_WHILE_POLLING_MS = 120000;

/** @typedef {{devices: string[]} | {bbox: number[]} | {group: string}} Selector */
/** @typedef {{state: string, text: string}} Status */

export class LiveLink {
  /**
   * @param {import("./api.js").Api} api
   * @param {import("./store.js").FleetStore} store
   * @param {(status: Status) => void} onStatus
   */
  constructor(api, store, onStatus) {
    this.api = api;
    this.store = store;
    this.onStatus = onStatus;
    /** @type {Selector | null} */
    this.selector = null;
    /** @type {string | null} */
    this.cursor = null;
    /** @type {WebSocket | null} */
    this.socket = null;
    this.mode = "websocket";
    this.retryMs = RETRY_MIN_MS;
    this.failedOpens = 0;
    this.resumed = false; // the open connection replays after a cursor instead of sending snapshots
    this.lastHeard = 0;
    this.running = false;
    /** @type {{selector: Selector, ids: Set<string>}[]} subscribe requests awaiting `subscribed` */
    this.pending = [];
    /** @type {Set<(selector: Selector, ids: Set<string>) => void>} */
    this.subscribedListeners = new Set();
    /** @type {Set<(event: string, alert: any) => void>} */
    this.alertListeners = new Set();
    /** @type {Set<(deviceId: string, event: any) => void>} */
    this.eventListeners = new Set();
    /** @type {Set<(state: string, at: string, command: any) => void>} */
    this.commandListeners = new Set();
    /** @type {AbortController | null} */
    this.pollAbort = null;
    /** @type {number | undefined} */
    this.retryTimer = undefined;
    this.staleTimer = window.setInterval(() => this.checkStale(), 2000);
    window.addEventListener("online", () => {
      if (!this.running) return;
      if (this.socket?.readyState === WebSocket.OPEN) this.status("live", "live");
      else if (!this.socket && this.mode === "websocket") this.reconnectNow();
    });
    window.addEventListener("offline", () => this.status("offline", "offline: no network"));
  }

  /** @param {(selector: Selector, ids: Set<string>) => void} listener told which devices a subscription's snapshots named */
  onSubscribed(listener) {
    this.subscribedListeners.add(listener);
  }

  /** @param {(event: string, alert: any) => void} listener told of every change of an alert of a selected device */
  onAlert(listener) {
    this.alertListeners.add(listener);
  }

  /** @param {(deviceId: string, event: any) => void} listener told of every event a selected device sent, once stored */
  onEvent(listener) {
    this.eventListeners.add(listener);
  }

  /** @param {(state: string, at: string, command: any) => void} listener told of every transition of a command to a selected device */
  onCommand(listener) {
    this.commandListeners.add(listener);
  }

  start() {
    this.running = true;
    this.connect();
  }

  stop() {
    this.running = false;
    clearTimeout(this.retryTimer);
    this.pollAbort?.abort();
    if (this.socket) { this.socket.onclose = null; this.socket.close(); this.socket = null; }
    this.cursor = null;
    this.pending = [];
    this.mode = "websocket";
    this.failedOpens = 0;
    this.lastHeard = 0;
  }

  /** Make `selector` the selection: the old one ends, the new one starts with snapshots.
   * @param {Selector} selector */
  select(selector) {
    if (this.selector && JSON.stringify(this.selector) === JSON.stringify(selector)) return;
    const old = this.selector;
    this.selector = selector;
    if (this.mode === "polling") { this.restartPolling(true); return; }
    const ws = this.socket;
    if (!ws || ws.readyState !== WebSocket.OPEN) return; // sent once the socket opens
    if (this.resumed) {
      // On a connection opened with ?since=, the server answers every later subscribe with a replay
      // after that cursor, not with snapshots: a device of the new selection that has not changed since
      // would be missing (or shown as it was). A fresh connection gives the new selection's snapshots.
      ws.onclose = null;
      ws.close();
      this.socket = null;
      this.cursor = null;
      this.connect();
      return;
    }
    if (old) ws.send(JSON.stringify({action: "unsubscribe", ...old}));
    this.subscribe(ws, selector);
  }

  /** A fresh token, sent on the open connection so that it outlives the old one. @param {string} token */
  refresh(token) {
    if (this.socket && this.socket.readyState === WebSocket.OPEN) {
      this.socket.send(JSON.stringify({action: "auth", token}));
    }
  }

  /** @param {string} state @param {string} text */
  status(state, text) {
    this.onStatus({state, text});
  }

  checkStale() {
    if (!this.running || !this.lastHeard) return;
    // While reconnecting, the header says so already; stale is for a link that looks up but is silent.
    if (this.mode === "websocket" && this.socket?.readyState !== WebSocket.OPEN) return;
    const silentMs = Date.now() - this.lastHeard;
    if (silentMs > STALE_AFTER_MS) {
      this.status("stale", "stale: nothing heard for " + Math.round(silentMs / 1000) + " s");
      // A connection that went silent is likely dead without a close: start again from the cursor.
      if (this.socket && silentMs > STALE_AFTER_MS * 1.5) this.socket.close();
    }
  }

  heard() {
    const wasStale = this.lastHeard !== 0 && Date.now() - this.lastHeard > STALE_AFTER_MS;
    this.lastHeard = Date.now();
    if (!wasStale || this.pending.length > 0) return;
    if (this.mode === "polling") this.status("polling", "live (polling: WebSockets are blocked)");
    else this.status("live", "live");
  }

  /** @param {WebSocket} ws @param {Selector} selector */
  subscribe(ws, selector) {
    this.pending.push({selector, ids: new Set()});
    ws.send(JSON.stringify({action: "subscribe", ...selector}));
  }

  connect() {
    if (!this.running) return;
    this.status("connecting", "connecting…");
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    const since = this.cursor ? "&since=" + encodeURIComponent(this.cursor) : "";
    this.resumed = since !== "";
    const ws = new WebSocket(scheme + location.host + "/api/v1/live?token=" + encodeURIComponent(this.api.session.token || "") + since);
    this.socket = ws;
    let opened = false;
    ws.onopen = () => {
      opened = true;
      this.failedOpens = 0;
      this.pending = [];
      this.heard();
      if (this.selector) this.subscribe(ws, this.selector);
    };
    ws.onmessage = (event) => this.receive(JSON.parse(event.data));
    ws.onclose = (event) => {
      this.socket = null;
      if (!this.running) return;
      if (event.code === 4401 || event.code === 4403) { this.api.session.set(null); return; }
      if (!opened) this.failedOpens += 1;
      this.afterClose();
    };
  }

  async afterClose() {
    // A refused handshake looks like any other failure to a browser: ask over HTTP what holds.
    try {
      await this.api.get("/api/v1/devices?limit=1");
    } catch (err) {
      if (err instanceof SignedOut) return;
      this.failedOpens = 0; // the server is away: that says nothing about WebSockets being blocked
      this.status("offline", "offline: the server cannot be reached; retrying in " + Math.round(this.retryMs / 1000) + " s");
      this.retryLater();
      return;
    }
    if (this.failedOpens >= FAILED_OPENS_BEFORE_POLLING) { this.startPolling(); return; }
    this.status("reconnecting", "disconnected; reconnecting in " + Math.round(this.retryMs / 1000) + " s");
    this.retryLater();
  }

  retryLater() {
    clearTimeout(this.retryTimer);
    const jitter = 0.8 + Math.random() * 0.4;
    this.retryTimer = window.setTimeout(() => this.connect(), this.retryMs * jitter);
    this.retryMs = Math.min(this.retryMs * 2, RETRY_MAX_MS);
  }

  reconnectNow() {
    clearTimeout(this.retryTimer);
    this.retryMs = RETRY_MIN_MS;
    if (this.mode === "websocket") this.connect();
  }

  /** @param {any} msg */
  receive(msg) {
    this.heard();
    if (msg.cursor) this.cursor = msg.cursor;
    switch (msg.type) {
      case "snapshot":
        this.pending[0]?.ids.add(msg.device_id);
        this.store.replace(msg.device_id, msg.state);
        break;
      case "state":
        this.pending[0]?.ids.add(msg.device_id); // a replay after a resume stands for a snapshot
        this.store.merge(msg.device_id, msg.changes);
        break;
      case "presence":
        this.store.presence(msg.device_id, msg.presence);
        break;
      case "alert":
        for (const listener of this.alertListeners) listener(msg.event, msg.alert);
        break;
      case "event":
        for (const listener of this.eventListeners) listener(msg.device_id, msg.event);
        break;
      case "command":
        for (const listener of this.commandListeners) listener(msg.state, msg.at, msg.command);
        break;
      case "reset":
        this.cursor = null; // too long away: the snapshots that follow replace what is shown
        break;
      case "subscribed": {
        const done = this.pending.shift();
        this.retryMs = RETRY_MIN_MS;
        if (this.pending.length === 0) this.status("live", "live");
        if (done) for (const listener of this.subscribedListeners) listener(done.selector, done.ids);
        break;
      }
      case "error":
        if (this.pending.length && /snapshot unavailable/.test(msg.message)) this.pending.shift();
        this.status("degraded", "server: " + msg.message);
        break;
      // `correction` is older than the state held (charts read history instead); `auth`, `heartbeat`,
      // `unsubscribed` change nothing shown.
    }
  }

  // Long polling: GET /api/v1/live?since=…&wait=25, for networks that block WebSockets.

  startPolling() {
    this.mode = "polling";
    this.status("polling", "live (polling: WebSockets are blocked)");
    this.restartPolling(this.cursor === null);
    // Try the WebSocket again now and then: the block may have been the network's, not forever.
    this.retryTimer = window.setTimeout(() => {
      if (!this.running) return;
      this.pollAbort?.abort();
      this.mode = "websocket";
      this.failedOpens = 0;
      this.connect();
    }, WEBSOCKET_RETRY_WHILE_POLLING_MS);
  }

  /** @param {boolean} snapshots whether to read the selection's current states first */
  restartPolling(snapshots) {
    this.pollAbort?.abort();
    const abort = new AbortController();
    this.pollAbort = abort;
    this.poll(abort.signal, snapshots).catch((err) => {
      if (abort.signal.aborted || err instanceof SignedOut) return;
      this.status("offline", "offline: " + String(err.message || err) + "; retrying");
      window.setTimeout(() => { if (this.pollAbort === abort && this.running) this.restartPolling(true); }, this.retryMs);
      this.retryMs = Math.min(this.retryMs * 2, RETRY_MAX_MS);
    });
  }

  /** @returns {string} the selection as query parameters of /api/v1/live and /api/v1/state */
  selectionQuery(/** @type {boolean} */ forState) {
    const s = /** @type {any} */ (this.selector);
    if (!s) return "";
    if (s.bbox) return "&bbox=" + s.bbox.join(",");
    if (s.group) return "&group=" + encodeURIComponent(s.group);
    if (s.devices && s.devices[0] !== "*") return (forState ? "&ids=" : "&devices=") + s.devices.map(encodeURIComponent).join(",");
    return "";
  }

  /** @param {AbortSignal} signal @param {boolean} snapshots */
  async poll(signal, snapshots) {
    if (snapshots || this.cursor === null) {
      if (this.cursor === null) {
        const first = await this.api.get("/api/v1/live?limit=1" + this.selectionQuery(false), signal);
        this.cursor = first.next_cursor;
      }
      const selector = this.selector;
      /** @type {Set<string>} */
      const ids = new Set();
      await this.api.pages("/api/v1/state?limit=5000" + this.selectionQuery(true), (items) => {
        if (signal.aborted) return;
        for (const state of items) { ids.add(state.device_id); this.store.replace(state.device_id, state); }
      });
      if (signal.aborted) return;
      this.heard();
      if (selector) for (const listener of this.subscribedListeners) listener(selector, ids);
      this.status("polling", "live (polling: WebSockets are blocked)");
    }
    while (!signal.aborted && this.running) {
      const since = this.cursor ? "&since=" + encodeURIComponent(this.cursor) : "";
      const page = await this.api.get(
        "/api/v1/live?wait=" + POLL_WAIT_S + "&limit=" + POLL_LIMIT + since + this.selectionQuery(false), signal);
      if (signal.aborted) return;
      this.heard();
      this.retryMs = RETRY_MIN_MS;
      for (const update of page.updates) this.receive(update);
      this.cursor = page.next_cursor;
      if (page.reset) { this.restartPolling(true); return; }
    }
  }
}
