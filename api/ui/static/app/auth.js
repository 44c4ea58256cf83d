// @ts-check
/** Sign-in, the token's life, and what the signed-in role may see.
 *
 * The access token lives in this tab only (sessionStorage: it survives a reload, not the tab). A little
 * before it expires the page trades it for a fresh one (`POST /api/v1/auth/refresh`, no password), and
 * hands the new token to whoever needs it (the live connection sends it in-band). Every token of a
 * session carries the session's end (`session_exp`, `api.session_max_s` after the password was given):
 * as that end nears, or when the server refuses to renew (the account was disabled or its role changed),
 * the page asks for the password again (the username is known).
 */

const TOKEN_KEY = "fleetbridge.token";
const REAUTH_BEFORE_S = 120;
// Renew this long before expiry, or after three quarters of the token's life when that comes first.
const RENEW_BEFORE_S = 60;
const RENEW_RETRY_S = 5;
/** @type {Record<string, number>} */
const RANKS = {viewer: 0, operator: 1, admin: 2};

/** @typedef {{sub?: string, role?: string, exp?: number, iat?: number, session_exp?: number}} Claims */

export class Session {
  constructor() {
    /** @type {string | null} */
    this.token = sessionStorage.getItem(TOKEN_KEY);
    /** @type {Set<(token: string | null) => void>} */
    this.listeners = new Set();
    /** @type {number | undefined} */
    this.renewTimer = undefined;
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
    clearTimeout(this.renewTimer);
    for (const listener of this.listeners) listener(token);
  }

  /**
   * Trade the token for a fresh one of the same session.
   * @returns {Promise<"renewed" | "refused" | "unreachable">} refused: only the password helps now.
   */
  async renew() {
    let response;
    try {
      response = await fetch("/api/v1/auth/refresh", {method: "POST", headers: {Authorization: "Bearer " + this.token}});
    } catch {
      return "unreachable";
    }
    if (response.status === 401 || response.status === 403) return "refused";
    if (!response.ok) return "unreachable";
    this.set((await response.json()).access_token);
    return "renewed";
  }

  /** Keep the session's token fresh: renew it before it expires while the session lasts; call `prompt`
   * when only the password can keep the tab signed in (the session's end is near, or renewal was refused).
   * @param {() => void} prompt */
  keepAlive(prompt) {
    clearTimeout(this.renewTimer);
    const {exp = 0, iat = exp, session_exp: sessionEnd = 0} = this.claims();
    const remaining = this.remainingS();
    if (sessionEnd <= exp) {
      this.renewTimer = window.setTimeout(prompt, Math.max(0, remaining - REAUTH_BEFORE_S) * 1000);
      return;
    }
    const before = Math.min(RENEW_BEFORE_S, (exp - iat) / 4);
    this.renewTimer = window.setTimeout(async () => {
      const outcome = await this.renew();  // "renewed": set() called the listeners, which call keepAlive again
      if (outcome === "refused") prompt();
      else if (outcome === "unreachable" && this.remainingS() > 0) {
        this.renewTimer = window.setTimeout(() => this.keepAlive(prompt), RENEW_RETRY_S * 1000);
      }
    }, Math.max(0, remaining - before) * 1000);
  }
}
