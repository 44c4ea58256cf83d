// @ts-check
/** The alerts screen: the open alerts and the newest cleared ones, newest first, live; filtered by state and
 * severity (and by the header's device filters). Each alert's comments open under "Comments" (read when
 * opened, and again whenever the alert changes while open). Operators and admins acknowledge (with an
 * optional comment), clear and comment on them; viewers see no such controls. An action taken in one
 * browser reaches every other through the live `alert` messages. */

import {isOpen} from "./alert_store.js";
import {el, when} from "./format.js";

/** @typedef {import("./alert_store.js").Alert} Alert */

const COLUMNS = ["device", "rule", "severity", "state", "message", "started", "raised", "handled", "comments"];
const SEVERITIES = new Set(["critical", "major", "minor", "warning"]);

/** @param {string} filter the state select's value @param {Alert} alert */
function stateMatches(filter, alert) {
  if (filter === "open") return isOpen(alert);
  if (filter === "closed") return !isOpen(alert);
  return !filter || alert.state === filter;
}

/** @param {Alert} alert @returns {string} who acknowledged or cleared it, and when */
function handled(alert) {
  if (alert.state === "cleared") {
    const by = alert.cleared_by ? " by " + alert.cleared_by : alert.clear_reason ? " (" + alert.clear_reason + ")" : "";
    return "cleared" + by + " " + when(alert.cleared_at);
  }
  if (alert.acknowledged_at) return "acknowledged by " + (alert.acknowledged_by || "?") + " " + when(alert.acknowledged_at);
  return "";
}

export class AlertsScreen {
  /**
   * @param {import("./alert_store.js").AlertStore} alerts
   * @param {import("./live.js").LiveLink} live
   * @param {import("./filters.js").Filters} filters
   * @param {import("./auth.js").Session} session
   */
  constructor(alerts, live, filters, session) {
    this.alerts = alerts;
    this.live = live;
    this.filters = filters;
    this.session = session;
    const $ = (/** @type {string} */ id) => /** @type {HTMLElement} */ (document.getElementById(id));
    this.stateSel = /** @type {HTMLSelectElement} */ ($("a-state"));
    this.severitySel = /** @type {HTMLSelectElement} */ ($("a-severity"));
    this.body = $("a-rows");
    this.count = $("a-count");
    this.error = $("a-error");
    this.actionsHead = $("a-actions-head");
    /** @type {Map<number, HTMLTableRowElement>} */
    this.rows = new Map();
    this.active = false;
    this.canAct = false;
    for (const select of [this.stateSel, this.severitySel]) select.addEventListener("input", () => this.render());
    this.body.addEventListener("click", (event) => this.clicked(event));
    this.body.addEventListener("submit", (event) => this.commented(event));
    alerts.onChange(() => { if (this.active) this.render(); });
    filters.onChange(() => { if (this.active) this.render(); });
  }

  show() {
    this.active = true;
    const canAct = this.session.allows("operator");
    if (canAct !== this.canAct) { this.rows.clear(); this.body.replaceChildren(); }
    this.canAct = canAct;
    this.actionsHead.hidden = !canAct;
    this.error.textContent = "";
    this.live.select({devices: ["*"]}); // alert messages come for the devices selected: all of them
    if (!this.alerts.loaded) this.alerts.reload();
    this.render();
  }

  hide() {
    this.active = false;
  }

  render() {
    const state = this.stateSel.value, severity = this.severitySel.value;
    const shown = [...this.alerts.alerts.values()]
      .filter((a) => stateMatches(state, a) && (!severity || a.severity === severity) && this.filters.matches(a.device_id))
      .sort((a, b) => Date.parse(b.started_at) - Date.parse(a.started_at) || b.id - a.id);
    this.count.textContent = shown.length + (shown.length === 1 ? " alert" : " alerts");
    const keep = new Set(shown.map((a) => a.id));
    for (const [id, row] of this.rows) if (!keep.has(id)) { row.remove(); this.rows.delete(id); }
    shown.forEach((alert, index) => {
      const row = this.rows.get(alert.id) || this.newRow(alert.id);
      this.fill(row, alert);
      // Moved only when out of place: moving a row would take the focus from its comment field.
      if (this.body.children[index] !== row) this.body.insertBefore(row, this.body.children[index] || null);
    });
  }

  /** @param {number} id @returns {HTMLTableRowElement} */
  newRow(id) {
    const row = document.createElement("tr");
    row.dataset.alert = String(id);
    for (const key of COLUMNS) {
      const cell = document.createElement("td");
      cell.className = "a-" + key;
      row.appendChild(cell);
    }
    const link = document.createElement("a");
    row.children[0].appendChild(link);
    row.children[2].appendChild(el("span", "", "sev"));
    row.children[8].appendChild(this.commentsBox(id));
    if (this.canAct) {
      // Hidden in the read-only (offline) view like every operator control.
      const actions = el("td", undefined, "a-actions");
      actions.setAttribute("data-role", "operator");
      const comment = /** @type {HTMLInputElement} */ (el("input"));
      comment.placeholder = "comment (optional)";
      comment.setAttribute("aria-label", "Comment");
      comment.maxLength = 2000;
      const ack = /** @type {HTMLButtonElement} */ (el("button", "Acknowledge", "ack"));
      const clear = /** @type {HTMLButtonElement} */ (el("button", "Clear", "clear"));
      ack.type = clear.type = "button";
      actions.append(comment, ack, clear);
      row.appendChild(actions);
    }
    this.rows.set(id, row);
    return row;
  }

  /** @param {HTMLTableRowElement} row @param {Alert} alert */
  fill(row, alert) {
    row.dataset.state = alert.state;
    const set = (/** @type {Element} */ node, /** @type {string} */ text) => { if (node.textContent !== text) node.textContent = text; };
    const link = /** @type {HTMLAnchorElement} */ (row.children[0].firstChild);
    link.href = "#/device/" + encodeURIComponent(alert.device_id);
    set(link, alert.device_id);
    set(row.children[1], alert.rule_name);
    const sev = /** @type {HTMLElement} */ (row.children[2].firstChild);
    sev.className = "sev sev-" + (SEVERITIES.has(alert.severity) ? alert.severity : "warning");
    set(sev, alert.severity);
    set(row.children[3], alert.state);
    set(row.children[4], alert.message);
    set(row.children[5], when(alert.started_at));
    set(row.children[6], when(alert.raised_at));
    set(row.children[7], handled(alert));
    // A comment added anywhere changes the alert (`commented`): an open list is read again.
    const box = /** @type {HTMLDetailsElement} */ (row.children[8].firstChild);
    box.dataset.alertVersion = alert.updated_at;
    if (box.open && box.dataset.shownVersion !== alert.updated_at) this.loadComments(alert.id, box);
    const actions = row.querySelector(".a-actions");
    if (!actions) return;
    /** @type {HTMLElement} */ (actions.querySelector(".ack")).hidden = alert.state !== "active";
    /** @type {HTMLElement} */ (actions.querySelector(".clear")).hidden = !isOpen(alert);
    /** @type {HTMLElement} */ (actions.querySelector("input")).hidden = !isOpen(alert);
  }

  /** "Comments": the list, read when opened; for operators and admins, a field to add one.
   * @param {number} id @returns {HTMLDetailsElement} */
  commentsBox(id) {
    const box = /** @type {HTMLDetailsElement} */ (el("details", undefined, "comments"));
    box.append(el("summary", "Comments"), el("ol", undefined, "comment-list"));
    if (this.canAct) {
      const form = el("form", undefined, "comment-form");
      form.setAttribute("data-role", "operator");
      const input = /** @type {HTMLInputElement} */ (el("input"));
      input.name = "body";
      input.required = true;
      input.maxLength = 2000;
      input.placeholder = "add a comment";
      input.setAttribute("aria-label", "New comment");
      const add = /** @type {HTMLButtonElement} */ (el("button", "Add", "add-comment"));
      add.type = "submit";
      form.append(input, add);
      box.appendChild(form);
    }
    box.addEventListener("toggle", () => { if (box.open) this.loadComments(id, box); });
    return box;
  }

  /** Show the alert's comments in its open box. @param {number} id @param {HTMLDetailsElement} box */
  async loadComments(id, box) {
    const version = box.dataset.alertVersion || "";
    box.dataset.shownVersion = version;
    const list = /** @type {HTMLElement} */ (box.querySelector(".comment-list"));
    let comments;
    try {
      comments = await this.alerts.comments(id);
    } catch (err) {
      list.replaceChildren(el("li", "unavailable: " + String(/** @type {Error} */ (err).message), "muted"));
      return;
    }
    if (box.dataset.alertVersion !== version) return; // changed again meanwhile: the newer read shows
    /** @type {HTMLElement} */ (box.firstChild).textContent = "Comments (" + comments.length + ")";
    list.replaceChildren(...comments.map((comment) => {
      const item = el("li", undefined, "comment");
      item.append(el("span", comment.author + ", " + when(comment.created_at) + ": ", "muted"), el("span", comment.body, "comment-body"));
      return item;
    }));
    if (comments.length === 0) list.appendChild(el("li", "None yet.", "muted"));
  }

  /** An operator's comment submitted. @param {Event} event */
  async commented(event) {
    const form = /** @type {HTMLFormElement} */ (event.target);
    const row = form.closest("tr");
    if (!form.classList.contains("comment-form") || !row) return;
    event.preventDefault();
    const input = /** @type {HTMLInputElement} */ (form.elements.namedItem("body"));
    const button = /** @type {HTMLButtonElement} */ (form.querySelector("button"));
    button.disabled = true;
    const refused = await this.alerts.comment(Number(row.dataset.alert), input.value.trim());
    button.disabled = false;
    this.error.textContent = refused || "";
    if (refused) return;
    input.value = "";
    this.loadComments(Number(row.dataset.alert), /** @type {HTMLDetailsElement} */ (form.closest("details")));
  }

  /** @param {Event} event */
  async clicked(event) {
    const button = /** @type {HTMLElement} */ (event.target).closest("button");
    const row = button?.closest("tr");
    if (!button || !row) return;
    const action = button.classList.contains("ack") ? "acknowledge" : button.classList.contains("clear") ? "clear" : null;
    if (!action) return;
    const input = /** @type {HTMLInputElement} */ (row.querySelector(".a-actions input"));
    button.setAttribute("disabled", "");
    const refused = await this.alerts.act(Number(row.dataset.alert), action, input.value.trim());
    button.removeAttribute("disabled");
    this.error.textContent = refused || "";
    if (!refused) input.value = "";
  }
}
