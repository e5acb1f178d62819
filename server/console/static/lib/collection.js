// Collections REST: /api/{collection} and /api/{collection}/{id}.

/** A collection's records over REST. Every failure is an ApiError with the server's code. */
export class Collection {
  /**
   * @param {import("./http.js").Http} http
   * @param {string} name
   */
  constructor(http, name) {
    if (typeof name !== "string" || !/^[a-z][a-z0-9_]*$/.test(name)) {
      throw new TypeError(`invalid collection name ${JSON.stringify(name)}: want ^[a-z][a-z0-9_]*$`);
    }
    this.http = http;
    this.name = name;
  }

  /**
   * One page, newest first: `{items, truncated?}`. `before` is the last id of
   * the previous page.
   * @param {{limit?: number, before?: number, signal?: AbortSignal}} [opts]
   */
  list(opts = {}) {
    return this.http.request("GET", `/api/${this.name}`, {
      query: { limit: opts.limit, before: opts.before },
      signal: opts.signal,
    });
  }

  /** @param {number | string} id */
  get(id, opts = {}) {
    return this.http.request("GET", `/api/${this.name}/${recordId(id)}`, { signal: opts.signal });
  }

  /** @param {Record<string, unknown>} data */
  create(data, opts = {}) {
    return this.http.request("POST", `/api/${this.name}`, { body: data, signal: opts.signal });
  }

  /** A partial update: only the fields given change. */
  update(id, patch, opts = {}) {
    return this.http.request("PUT", `/api/${this.name}/${recordId(id)}`, { body: patch, signal: opts.signal });
  }

  /** @returns {Promise<void>} */
  async delete(id, opts = {}) {
    await this.http.request("DELETE", `/api/${this.name}/${recordId(id)}`, { signal: opts.signal });
  }
}

function recordId(id) {
  // The server answers 400 for a bad id; encoding keeps a stray "/" or "?"
  // from turning it into another path.
  return encodeURIComponent(String(id));
}
