// @ts-check
/** Sign-in, the token's life, and what the signed-in role may see.
 *
 * The access token lives in this tab only (sessionStorage: it survives a reload, not the tab). The API has
 * no refresh token, so before the token expires the page asks for the password again (the username is
 * known) and hands the new token to whoever needs it (the live connection sends it in-band).
 */

const TOKEN_KEY = "fleetbridge.token";
const REAUTH_BEFORE_S = 120;
/** @type {Record<string, number>} */
const RANKS = {viewer: 0, operator: 1, admin: 2};

/** @typedef {{sub?: string, role?: string, exp?: number}} Claims */

export class Session {
  constructor() {
    /** @type {string | null} */
    this.token = sessionStorage.getItem(TOKEN_KEY);
    /** @type {Set<(token: string | null) => void>} */
    this.listeners = new Set();
    /** @type {number | undefined} */
    this.reauthTimer = undefined;
  }

  /** @returns {Claims} what the token says of its holder (for display: the server checks it). */
  claims() {
    if (!this.token) return {};
    try {
      return JSON.parse(atob(this.token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/")));
    } catch {
      return {};
    }
  }

  /** Seconds until the token expires (negative: expired). */
  remainingS() {
    const exp = this.claims().exp;
    return exp ? exp - Date.now() / 1000 : -1;
  }

  /** @param {string} role @returns {boolean} whether the signed-in role includes `role`. */
  allows(role) {
    return (RANKS[this.claims().role || ""] ?? -1) >= (RANKS[role] ?? 99);
  }

  /** @param {(token: string | null) => void} listener called with every new token, and null on sign-out. */
  subscribe(listener) {
    this.listeners.add(listener);
  }

  /**
   * Log in: resolves to null on success, else a message to show.
   * @param {string} username @param {string} password
   * @returns {Promise<string | null>}
   */
  async logIn(username, password) {
    const response = await fetch("/api/v1/auth/token", {
      method: "POST",
      body: new URLSearchParams({username, password}),
    });
    if (response.status === 429) {
      return "Too many failed attempts: try again in " + response.headers.get("Retry-After") + " s.";
    }
    if (!response.ok) return "Wrong username or password.";
    const body = await response.json();
    this.set(body.access_token);
    return null;
  }

  /** @param {string | null} token */
  set(token) {
    this.token = token;
    if (token) sessionStorage.setItem(TOKEN_KEY, token);
    else sessionStorage.removeItem(TOKEN_KEY);
    clearTimeout(this.reauthTimer);
    for (const listener of this.listeners) listener(token);
  }

  /** Call `prompt` when the token is about to expire (at once if it is that close already).
   * @param {() => void} prompt */
  scheduleReauth(prompt) {
    clearTimeout(this.reauthTimer);
    const inS = Math.max(0, this.remainingS() - REAUTH_BEFORE_S);
    this.reauthTimer = window.setTimeout(prompt, inS * 1000);
  }
}
