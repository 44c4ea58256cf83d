// @ts-check
/** The REST API, with the session's token; a 401 signs the tab out. */

export class SignedOut extends Error {}

/** A refusal: the HTTP status and the problem document the server sent (`detail` is the message). */
export class Refused extends Error {
  /** @param {number} status @param {string} detail @param {Record<string, any>} body */
  constructor(status, detail, body) {
    super(detail);
    this.status = status;
    this.body = body;
  }
}

/** @param {string} id a device id @returns {string} the path of its resource */
export const devicePath = (id) => "/api/v1/devices/" + encodeURIComponent(id);

export class Api {
  /** @param {import("./auth.js").Session} session */
  constructor(session) {
    this.session = session;
  }

  /**
   * GET a JSON document.
   * @param {string} path @param {AbortSignal} [signal]
   * @returns {Promise<any>}
   */
  async get(path, signal) {
    const response = await fetch(path, {headers: {Authorization: "Bearer " + this.session.token}, signal});
    if (response.status === 401) {
      this.session.set(null);
      throw new SignedOut("signed out");
    }
    if (!response.ok) throw await refusal(response);
    return response.json();
  }

  /**
   * PATCH a JSON body.
   * @param {string} path @param {object} body
   * @returns {Promise<any>}
   */
  async patch(path, body) {
    const response = await fetch(path, {
      method: "PATCH",
      headers: {Authorization: "Bearer " + this.session.token, "Content-Type": "application/json"},
      body: JSON.stringify(body),
    });
    if (!response.ok) throw new Error("HTTP " + response.status);
    return response.json();
  }

  /**
   * POST a JSON body; a refusal throws with the server's reason (a problem's `detail`).
   * @param {string} path @param {object} body
   * @returns {Promise<any>}
   */
  post(path, body) {
    return this.send("POST", path, body);
  }

  /**
   * PUT a JSON body (a replacement); a refusal throws with the server's reason.
   * @param {string} path @param {object} body
   * @returns {Promise<any>}
   */
  put(path, body) {
    return this.send("PUT", path, body);
  }

  /**
   * DELETE a resource; a refusal throws with the server's reason.
   * @param {string} path
   * @returns {Promise<any>}
   */
  delete(path) {
    return this.send("DELETE", path);
  }

  /**
   * A request with a JSON body, or none; a refusal throws `Refused`, an unreachable server fetch's TypeError.
   * @param {string} method @param {string} path @param {object} [body] @param {Record<string, string>} [extra] headers
   * @returns {Promise<any>}
   */
  async send(method, path, body, extra) {
    /** @type {Record<string, string>} */
    const headers = {...extra, Authorization: "Bearer " + this.session.token};
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(path, {method, headers, body: body === undefined ? undefined : JSON.stringify(body)});
    if (response.status === 401) {
      this.session.set(null);
      throw new SignedOut("signed out");
    }
    if (!response.ok) throw await refusal(response);
    return response.status === 204 ? null : response.json();
  }

  /** Every page of a keyset-paginated listing.
   * @param {string} path with its query, without cursor @param {(items: any[]) => void} onPage */
  async pages(path, onPage) {
    let cursor = null;
    const sep = path.includes("?") ? "&" : "?";
    do {
      const body = await this.get(path + (cursor ? sep + "cursor=" + encodeURIComponent(cursor) : ""));
      onPage(body.items);
      cursor = body.next_cursor;
    } while (cursor);
  }
}

/** @param {Response} response a refusal @returns {Promise<Refused>} it, with the server's reason and problem */
async function refusal(response) {
  /** @type {Record<string, any>} */
  let body = {};
  try {
    body = await response.json();
  } catch {
    // not a problem document: the status says it all
  }
  return new Refused(response.status, body?.detail || "HTTP " + response.status, body || {});
}
