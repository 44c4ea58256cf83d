// @ts-check
/** The operator app: signs in, loads the registry, opens the live link and shows one screen at a time
 * (`#/map`, `#/table`, `#/alerts`, `#/device/<id>`). Installed by its service worker (/sw.js) for offline use: when
 * the API cannot be reached it shows the last-known fleet, read-only and labelled, until it is live again. */

import {AlertStore} from "./alert_store.js";
import {AlertsScreen} from "./alerts.js";
import {Api, SignedOut} from "./api.js";
import {Session} from "./auth.js";
import {DeviceScreen} from "./device.js";
import {Filters} from "./filters.js";
import {LiveLink} from "./live.js";
import {MapScreen} from "./map.js";
import {LastKnown} from "./offline.js";
import {FleetStore} from "./store.js";
import {TableScreen} from "./table.js";

const ALERTS_WHILE_POLLING_MS = 15000;
const $ = (/** @type {string} */ id) => /** @type {HTMLElement} */ (document.getElementById(id));
const bar = $("bar"), loginForm = /** @type {HTMLFormElement} */ ($("login")), loginError = $("login-error");
const reauthForm = /** @type {HTMLFormElement} */ ($("reauth")), conn = $("conn"), offlineBanner = $("offline");

const session = new Session();
const api = new Api(session);
const store = new FleetStore();
const lastKnown = new LastKnown(store);
/** @type {string | null} when the fleet on show was saved, while the page shows the last-known fleet */
let showingLastKnown = null;
const live = new LiveLink(api, store, (status) => {
  conn.dataset.state = status.state;
  conn.textContent = status.text;
  if (status.state === "live" && showingLastKnown) backOnline();
});
store.onChange(() => { if (!showingLastKnown && session.token) lastKnown.keep(); });
const alerts = new AlertStore(api);
live.onAlert((_event, alert) => alerts.put(alert));
// Alert messages carry no cursor: each whole-fleet subscription (the first, and again after a reconnect)
// reads the alerts afresh, and the messages keep them current from there.
live.onSubscribed((selector) => {
  if ("devices" in selector && selector.devices[0] === "*" && !showingLastKnown) alerts.reload();
});
const filters = new Filters(store);
/** @type {Record<string, {show: (arg?: any) => void, hide: () => void}>} */
let screens = {};
/** @type {string | null} */
let current = null;
// Long polling carries no alert messages: while polling, the screens that show alerts read them again now and then.
window.setInterval(() => {
  if (live.running && live.mode === "polling" && (current === "alerts" || current === "table")) alerts.reload();
}, ALERTS_WHILE_POLLING_MS);

function route() {
  if (!session.token) return;
  const [, name = "map", arg] = location.hash.match(/^#\/(\w+)\/?(.*)$/) || [];
  const next = screens[name] && (name !== "device" || arg) ? name : "map";
  for (const [key, screen] of Object.entries(screens)) {
    $("screen-" + key).hidden = key !== next;
    if (key !== next && key === current) screen.hide();
  }
  for (const link of bar.querySelectorAll("nav a")) link.classList.toggle("on", link.getAttribute("data-screen") === next);
  current = next;
  screens[next].show(arg ? decodeURIComponent(arg) : undefined);
}

async function loadRegistry() {
  await api.pages("/api/v1/devices?limit=1000", (items) => store.register(items));
}

function start() {
  const who = session.claims();
  $("who").textContent = who.sub ? who.sub + " (" + who.role + ")" : "";
  loginForm.hidden = true;
  bar.hidden = false;
  if (!screens.map) {
    screens = {
      map: new MapScreen($("map"), store, live, filters, api, session),
      table: new TableScreen(store, live, filters, alerts),
      alerts: new AlertsScreen(alerts, live, filters, session),
      device: new DeviceScreen(api, store, live),
    };
  }
  // Controls for what this role may not do are not shown at all (not greyed out); the server refuses anyway.
  // The stylesheet hides every `[data-role]` control above the role named here, those made later included,
  // and a later sign-in (another account, another role) in the same tab sets it afresh.
  document.body.dataset.signedInAs = who.role || "";
  session.keepAlive(promptReauth);
  route();
  live.start();
  loadRegistry().catch((err) => { if (!(err instanceof SignedOut)) showLastKnown(); });
}

/** The API cannot be reached: show the fleet as it was last seen, read-only, saying when that was. */
async function showLastKnown() {
  lastKnown.pause();
  const at = await lastKnown.restore();
  showingLastKnown = at || "never";
  offlineBanner.textContent = at
    ? "offline — last known at " + new Date(at).toLocaleString() + " (read-only)"
    : "offline — no fleet saved on this device yet";
  offlineBanner.hidden = false;
  document.body.classList.add("readonly");
}

function backOnline() {
  showingLastKnown = null;
  offlineBanner.hidden = true;
  document.body.classList.remove("readonly");
  loadRegistry().catch((err) => { if (!(err instanceof SignedOut)) showLastKnown(); });
}

function signedOut() {
  live.stop();
  lastKnown.pause();
  store.clear();
  alerts.clear();
  showingLastKnown = null;
  offlineBanner.hidden = true;
  document.body.classList.remove("readonly");
  delete document.body.dataset.signedInAs;
  reauthForm.hidden = true;
  bar.hidden = true;
  for (const key of Object.keys(screens)) $("screen-" + key).hidden = true;
  /** @type {any} */ (screens.map)?.fences.clear(); // what the next account may see is read afresh
  loginForm.hidden = false;
  loginForm.elements.namedItem("username")?.focus?.();
}

function promptReauth() {
  const left = Math.max(0, Math.round(session.remainingS() / 60));
  $("reauth-text").textContent = "Your session ends in " + left + " min: enter your password to stay signed in.";
  reauthForm.hidden = false;
}

session.subscribe((token) => {
  if (!token) { signedOut(); lastKnown.forget(); loginError.textContent = "Your session ended: sign in again."; return; }
  live.refresh(token);
  session.keepAlive(promptReauth);
});

loginForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  loginError.textContent = "";
  const data = new FormData(loginForm);
  const error = await session.logIn(String(data.get("username")), String(data.get("password")));
  if (error) { loginError.textContent = error; return; }
  loginForm.reset();
  start();
});

reauthForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  const password = String(new FormData(reauthForm).get("password"));
  const error = await session.logIn(session.claims().sub || "", password);
  $("reauth-error").textContent = error || "";
  if (!error) { reauthForm.reset(); reauthForm.hidden = true; }
});

$("sign-out").addEventListener("click", () => { session.set(null); loginError.textContent = ""; });
window.addEventListener("hashchange", route);

// A hook for tests and debugging: what the page shows, read without scraping pixels.
/** @type {any} */ (window).__fleet = {
  store,
  alerts,
  live,
  lastKnown,
  marker: (/** @type {string} */ id) => /** @type {any} */ (screens.map)?.markerAt(id) ?? null,
  fences: () => /** @type {any} */ (screens.map)?.fences.shown() ?? [],
};

if (session.token && session.remainingS() > 0) start(); else signedOut();

// The app shell and this build's files, kept for a reload without a network (api/ui/sw.js).
if ("serviceWorker" in navigator) {
  navigator.serviceWorker.register("/sw.js").catch((err) => console.warn("offline use unavailable:", err));
}
