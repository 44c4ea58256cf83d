// @ts-check
/** A device's commands (docs/commands.md): a form that sends one — the commands its kind obeys, from the
 * catalogue, with an input for each argument and a choice of expiry; a dangerous one only after a second,
 * explicit click — and the device's commands, newest first, with every state each went through, kept
 * current by the live connection's `command` messages. Cancelling works while a command is queued. */

import {Refused, SignedOut, devicePath} from "./api.js";
import {el, when} from "./format.js";

const CATALOGUE = "/api/v1/command-catalogue";
const COMMANDS_SHOWN = 20;
// A send the server may not have heard (no answer, or a gateway's 502/504) is sent again with the same
// Idempotency-Key: the server answers a repeat with the command the first one made, never a second one.
const SEND_ATTEMPTS = 3;
const SEND_RETRY_MS = 1000;
const RETRIED_STATUSES = new Set([502, 504]);
/** Where a state stands in the lifecycle: what is shown never moves to a lower one. */
const RANK = /** @type {Record<string, number>} */ ({
  queued: 0, sent: 1, received: 2, succeeded: 3, failed: 3, expired: 3, cancelled: 3,
});

/** @typedef {{name: string, type: string, required: boolean, minimum?: number | null, maximum?: number | null}} ArgSpec */
/** @typedef {{name: string, description: string, dangerous: boolean, kinds: string[] | null, args: ArgSpec[]}} CommandSpec */
/** @typedef {{id: string, device_id: string, name: string, args: Record<string, unknown>, dangerous: boolean,
 *   state: string, created_at: string, created_by: string, expires_at: string, sent_at: string | null,
 *   received_at: string | null, finished_at: string | null, result: unknown, updated_at: string, attempts: number}} Command */
/** @typedef {{command: Command, seen: Map<string, string>}} Entry the command as shown, and when it reached each state */

/** @returns {string} a fresh random key (a UUID v4) */
function newKey() {
  if (typeof crypto.randomUUID === "function") return crypto.randomUUID();
  // randomUUID needs a secure context; the app served over plain http on a LAN still gets random keys.
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[6] = (bytes[6] & 0x0f) | 0x40;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  const hex = [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
  return [hex.slice(0, 8), hex.slice(8, 12), hex.slice(12, 16), hex.slice(16, 20), hex.slice(20)].join("-");
}

/** The states a command's own fields date (a listing carries no transitions). @param {Command} c @returns {[string, string][]} */
function datedStates(c) {
  const dated = /** @type {[string, string | null][]} */ ([["queued", c.created_at], ["sent", c.sent_at], ["received", c.received_at]]);
  if (RANK[c.state] === 3) dated.push([c.state, c.finished_at]);
  return /** @type {[string, string][]} */ (dated.filter(([, at]) => at));
}

/** @param {Command} a @param {Command} b @returns {boolean} whether `a` is at least as far on as `b` */
function notOlder(a, b) {
  const ra = RANK[a.state] ?? 0, rb = RANK[b.state] ?? 0;
  return ra > rb || (ra === rb && Date.parse(a.updated_at) >= Date.parse(b.updated_at));
}

/** @param {Refused} err @returns {string} the server's reason, with the device's presence when it sent one */
function reason(err) {
  const presence = err.body?.presence;
  if (!presence) return err.message;
  const since = presence.since ? " since " + when(presence.since) : "";
  return err.message + " (presence: " + presence.state + since + (presence.source ? ", from " + presence.source : "") + ")";
}

export class DeviceCommands {
  /** @param {import("./api.js").Api} api */
  constructor(api) {
    this.api = api;
    const $ = (/** @type {string} */ id) => /** @type {HTMLElement} */ (document.getElementById(id));
    this.form = /** @type {HTMLFormElement} */ ($("c-form"));
    this.nameSelect = /** @type {HTMLSelectElement} */ ($("c-name"));
    this.argsBox = $("c-args");
    this.expiry = /** @type {HTMLInputElement} */ ($("c-expiry"));
    this.sendButton = /** @type {HTMLButtonElement} */ ($("c-send"));
    this.confirmButton = /** @type {HTMLButtonElement} */ ($("c-confirm"));
    this.description = $("c-description");
    this.error = $("c-error");
    this.list = $("c-list");
    this.count = $("c-count");
    /** @type {string | null} */
    this.id = null;
    this.generation = 0;
    /** @type {Promise<CommandSpec[]> | null} read once per page */
    this.catalogue = null;
    /** @type {CommandSpec[]} what this device's kind obeys */
    this.specs = [];
    /** @type {Map<string, Entry>} */
    this.entries = new Map();
    /** @type {{device: string, body: string, key: string} | null} a send not known to have been heard */
    this.unanswered = null;
    /** @type {object | null} the dangerous request the confirmation button would send */
    this.armed = null;
    this.form.addEventListener("submit", (event) => { event.preventDefault(); this.submit(); });
    this.form.addEventListener("input", () => this.disarm());
    this.nameSelect.addEventListener("change", () => this.renderArgs());
    this.confirmButton.addEventListener("click", () => { const request = this.armed; this.disarm(); if (request) this.send(request); });
    this.list.addEventListener("click", (event) => {
      const button = /** @type {HTMLElement} */ (event.target).closest("button.c-cancel");
      if (button) this.cancel(/** @type {HTMLButtonElement} */ (button));
    });
  }

  /** Show the device's commands, and a form with the commands its kind obeys (none when the kind is unknown).
   * @param {string} id @param {string | null} kind */
  async load(id, kind) {
    const generation = ++this.generation;
    this.id = id;
    this.entries = new Map();
    this.error.textContent = "";
    this.disarm();
    this.render();
    const [catalogue, page] = await Promise.allSettled([
      this.readCatalogue(),
      this.api.get(devicePath(id) + "/commands?limit=" + COMMANDS_SHOWN),
    ]);
    if (generation !== this.generation) return; // another device was chosen meanwhile
    const specs = catalogue.status === "fulfilled" ? catalogue.value : [];
    this.specs = kind ? specs.filter((spec) => spec.kinds === null || spec.kinds.includes(kind)) : [];
    this.renderForm();
    if (page.status === "rejected") {
      this.list.replaceChildren(el("p", "unavailable: " + String(page.reason?.message || page.reason), "muted"));
      return;
    }
    // Transitions heard live meanwhile stay: the listing may be older than they are.
    for (const command of page.value.items) this.put(command, null, null);
    this.render();
  }

  /** @returns {Promise<CommandSpec[]>} */
  readCatalogue() {
    if (!this.catalogue) {
      this.catalogue = this.api.get(CATALOGUE);
      this.catalogue.catch(() => { this.catalogue = null; }); // read again next time
    }
    return this.catalogue;
  }

  /** A transition the live connection brought. @param {string} state @param {string} at @param {Command} command */
  heard(state, at, command) {
    if (command.device_id !== this.id) return;
    this.put(command, state, at);
    this.render();
  }

  /** Take in what was learnt of a command, never moving it back to an earlier state.
   * @param {Command} command @param {string | null} state @param {string | null} at */
  put(command, state, at) {
    let entry = this.entries.get(command.id);
    if (!entry) {
      entry = {command, seen: new Map()};
      this.entries.set(command.id, entry);
    } else if (notOlder(command, entry.command)) {
      entry.command = command;
    }
    if (state && at && !entry.seen.has(state)) entry.seen.set(state, at);
    for (const [dated, time] of datedStates(command)) if (!entry.seen.has(dated)) entry.seen.set(dated, time);
  }

  renderForm() {
    this.form.hidden = this.specs.length === 0;
    const chosen = this.nameSelect.value;
    this.nameSelect.replaceChildren(...this.specs.map((spec) => {
      const option = /** @type {HTMLOptionElement} */ (el("option", spec.dangerous ? spec.name + " (dangerous)" : spec.name));
      option.value = spec.name;
      return option;
    }));
    if (this.specs.some((spec) => spec.name === chosen)) this.nameSelect.value = chosen;
    this.renderArgs();
  }

  /** @returns {CommandSpec | undefined} */
  chosen() {
    return this.specs.find((spec) => spec.name === this.nameSelect.value);
  }

  /** An input for each argument of the chosen command, bounded as the catalogue says. */
  renderArgs() {
    this.disarm();
    const spec = this.chosen();
    this.description.textContent = spec ? spec.description : "";
    this.argsBox.replaceChildren(...(spec?.args || []).map((arg) => {
      const input = /** @type {HTMLInputElement} */ (el("input"));
      input.name = "arg-" + arg.name;
      input.dataset.arg = arg.name;
      input.dataset.type = arg.type;
      if (arg.type === "bool") {
        input.type = "checkbox";
      } else if (arg.type === "int" || arg.type === "float") {
        input.type = "number";
        input.step = arg.type === "int" ? "1" : "any";
        if (arg.minimum != null) input.min = String(arg.minimum);
        if (arg.maximum != null) input.max = String(arg.maximum);
        input.required = arg.required;
      } else {
        input.required = arg.required;
      }
      const range = arg.minimum != null && arg.maximum != null ? " (" + arg.minimum + "–" + arg.maximum + ")" : "";
      const label = el("label", arg.name + range + " ");
      label.appendChild(input);
      return label;
    }));
  }

  /** @returns {{name: string, args: Record<string, unknown>, expires_in_s?: number}} what the form asks for */
  request() {
    /** @type {Record<string, unknown>} */
    const args = {};
    for (const input of /** @type {NodeListOf<HTMLInputElement>} */ (this.argsBox.querySelectorAll("input[data-arg]"))) {
      const name = /** @type {string} */ (input.dataset.arg);
      if (input.dataset.type === "bool") args[name] = input.checked;
      else if (input.value === "") continue; // an optional argument left out
      else if (input.dataset.type === "int" || input.dataset.type === "float") args[name] = Number(input.value);
      else args[name] = input.value;
    }
    const minutes = this.expiry.value;
    return minutes === "" ? {name: this.nameSelect.value, args} : {name: this.nameSelect.value, args, expires_in_s: Math.round(Number(minutes) * 60)};
  }

  /** Send: at once, or for a dangerous command after the second button says what it does to which device. */
  submit() {
    const spec = this.chosen();
    if (!spec || !this.id) return;
    const request = this.request();
    if (!spec.dangerous) { this.send(request); return; }
    this.armed = request;
    this.confirmButton.textContent = "Really " + spec.name + " " + this.id + "?";
    this.confirmButton.hidden = false;
    this.confirmButton.focus();
  }

  disarm() {
    this.armed = null;
    this.confirmButton.hidden = true;
  }

  /** @param {object} request */
  async send(request) {
    const id = this.id;
    if (!id) return;
    const body = JSON.stringify(request);
    // The same request again after a send that got no answer uses that send's key: the server may have
    // made the command already, and answers the repeat with it instead of making a second.
    if (!this.unanswered || this.unanswered.device !== id || this.unanswered.body !== body) {
      this.unanswered = {device: id, body, key: newKey()};
    }
    const key = this.unanswered.key;
    this.error.textContent = "";
    this.sendButton.disabled = true;
    try {
      const command = await this.post(devicePath(id) + "/commands", request, key);
      this.unanswered = null;
      if (id === this.id) { this.put(command, null, null); this.render(); }
    } catch (err) {
      if (err instanceof SignedOut) return;
      if (err instanceof Refused && !RETRIED_STATUSES.has(err.status)) {
        this.unanswered = null;
        this.error.textContent = "refused: " + reason(err);
      } else {
        this.error.textContent = "not sent: no answer from the server (" + String(/** @type {Error} */ (err).message) +
          "); sending the same again cannot send it twice";
      }
    } finally {
      this.sendButton.disabled = false;
    }
  }

  /** POST, again with the same key while no answer comes. @param {string} path @param {object} request @param {string} key */
  async post(path, request, key) {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.api.send("POST", path, request, {"Idempotency-Key": key});
      } catch (err) {
        const unheard = !(err instanceof Refused || err instanceof SignedOut) || RETRIED_STATUSES.has(err.status);
        if (!unheard || attempt >= SEND_ATTEMPTS) throw err;
        await new Promise((resolve) => window.setTimeout(resolve, SEND_RETRY_MS * attempt));
      }
    }
  }

  /** @param {HTMLButtonElement} button a queued command's Cancel */
  async cancel(button) {
    const commandId = /** @type {string} */ (button.dataset.id);
    button.disabled = true;
    this.error.textContent = "";
    try {
      const command = await this.api.post("/api/v1/commands/" + encodeURIComponent(commandId) + "/cancel", {});
      this.put(command, null, null);
      this.render();
    } catch (err) {
      if (err instanceof SignedOut) return;
      button.disabled = false;
      this.error.textContent = "not cancelled: " + String(/** @type {Error} */ (err).message);
    }
  }

  render() {
    const entries = [...this.entries.values()]
      .sort((a, b) => Date.parse(b.command.created_at) - Date.parse(a.command.created_at));
    const shown = entries.slice(0, COMMANDS_SHOWN);
    this.count.textContent = entries.length ? "(newest first, live" + (entries.length > COMMANDS_SHOWN ? "; the newest " + COMMANDS_SHOWN : "") + ")" : "";
    if (shown.length === 0) { this.list.replaceChildren(el("p", "No commands sent to this device.", "muted")); return; }
    const table = el("table", undefined, "list commands");
    const head = el("tr");
    for (const name of ["Command", "State", "Sent by", "Expires", "Transitions", "Result", ""]) head.appendChild(el("th", name));
    table.appendChild(head);
    for (const {command, seen} of shown) {
      const tr = el("tr", undefined, "command" + (command.dangerous ? " dangerous" : ""));
      tr.dataset.id = command.id;
      tr.dataset.state = command.state;
      const args = Object.keys(command.args).length ? " " + JSON.stringify(command.args) : "";
      tr.appendChild(el("td", command.name + args));
      tr.appendChild(el("td", command.state, "c-state s-" + command.state));
      tr.appendChild(el("td", command.created_by));
      tr.appendChild(el("td", when(command.expires_at)));
      const trail = el("td", undefined, "c-trail");
      const steps = [...seen.entries()].sort(([a, at], [b, bt]) => (RANK[a] ?? 0) - (RANK[b] ?? 0) || Date.parse(at) - Date.parse(bt));
      for (const [i, [state, at]] of steps.entries()) {
        // The first step dated in full, the others by their time of day (they follow within minutes).
        const step = el("span", state + " " + (i === 0 ? when(at) : new Date(at).toLocaleTimeString()), "c-step");
        step.title = at;
        step.dataset.state = state;
        trail.appendChild(step);
      }
      tr.appendChild(trail);
      tr.appendChild(el("td", command.result == null ? "" : JSON.stringify(command.result), "c-result"));
      const actions = el("td");
      if (command.state === "queued") {
        const cancel = /** @type {HTMLButtonElement} */ (el("button", "Cancel", "c-cancel"));
        cancel.type = "button";
        cancel.dataset.id = command.id;
        cancel.dataset.role = "operator";
        actions.appendChild(cancel);
      }
      tr.appendChild(actions);
      table.appendChild(tr);
    }
    this.list.replaceChildren(table);
  }
}
