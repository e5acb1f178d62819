// The HTTP side: base URL, the token provider, requests with the server's
// error bodies turned into ApiError.

import { ApiError, PgcastError, apiErrorFrom } from "./errors.js";

/**
 * Tokens holds the caller's token provider and the token in use. The
 * provider is called for the first token, and again only after the server
 * refused the current one (a 401, or close 4001 on /api/realtime); callers
 * that refuse the same token at once share one call.
 */
export class Tokens {
  /** @param {undefined | null | string | (() => string | Promise<string>)} provider */
  constructor(provider) {
    if (provider !== undefined && provider !== null && typeof provider !== "string" && typeof provider !== "function") {
      throw new TypeError("token must be a string or a function returning a string or a promise of one");
    }
    this.provider = provider ?? null;
    /** @type {string | null} */
    this.current = typeof provider === "string" ? provider : null;
    /** @type {Promise<string> | null} */
    this.pending = null;
  }

  /** No provider: the client is anonymous. */
  get anonymous() {
    return this.provider === null;
  }

  /** A function provider can give a new token; a fixed string cannot. */
  get refreshable() {
    return typeof this.provider === "function";
  }

  /** @returns {Promise<string | null>} the token in use, null when anonymous */
  async get() {
    if (this.provider === null) return null;
    if (this.current !== null) return this.current;
    return this.fetch();
  }

  /**
   * refresh asks the provider again because `refused` was refused. If the
   * token has changed since (another stream refreshed it), that one is used.
   * @param {string | null} refused
   */
  async refresh(refused) {
    if (!this.refreshable) return this.current;
    if (this.current !== null && this.current !== refused) return this.current;
    this.current = null;
    return this.fetch();
  }

  fetch() {
    if (this.pending === null) {
      const provider = /** @type {() => string | Promise<string>} */ (this.provider);
      this.pending = (async () => {
        try {
          const token = await provider();
          if (typeof token !== "string" || token === "") {
            throw new PgcastError("the token provider returned no token", { code: "token_provider" });
          }
          this.current = token;
          return token;
        } catch (err) {
          if (err instanceof PgcastError) throw err;
          throw new PgcastError(`the token provider failed: ${err instanceof Error ? err.message : String(err)}`, {
            code: "token_provider",
            cause: err,
          });
        } finally {
          this.pending = null;
        }
      })();
    }
    return this.pending;
  }
}

/**
 * Http sends requests to the server with the token, and retries once with a
 * new token after a 401 when the provider can give one (a 401 refuses the
 * request before anything is done, so even a POST is safe to send again).
 */
export class Http {
  /**
   * @param {URL} base
   * @param {Tokens} tokens
   * @param {typeof fetch} fetchImpl
   */
  constructor(base, tokens, fetchImpl) {
    this.base = base;
    this.tokens = tokens;
    this.fetchImpl = fetchImpl;
  }

  /**
   * @param {string} method
   * @param {string} path starting with /
   * @param {{body?: unknown, query?: Record<string, string | number | undefined>, token?: string | null, signal?: AbortSignal}} [opts]
   */
  async request(method, path, opts = {}) {
    let token = opts.token !== undefined ? opts.token : await this.tokens.get();
    for (let tries = 0; ; tries++) {
      const res = await this.send(method, path, opts, token);
      if (res.status === 401 && token !== null && this.tokens.refreshable && tries === 0) {
        token = await this.tokens.refresh(token);
        continue;
      }
      const text = await res.text();
      if (!res.ok) throw apiErrorFrom(res.status, text, res.headers.get("Retry-After"));
      if (res.status === 204 || text === "") return undefined;
      try {
        return JSON.parse(text);
      } catch (err) {
        throw new ApiError(`the server answered ${res.status} with a body that is not JSON`, {
          code: "invalid_response",
          status: res.status,
          cause: err,
        });
      }
    }
  }

  /** @returns {Promise<Response>} */
  async send(method, path, opts, token) {
    const url = new URL(path, this.base);
    for (const [k, v] of Object.entries(opts.query ?? {})) {
      if (v !== undefined && v !== null) url.searchParams.set(k, String(v));
    }
    /** @type {Record<string, string>} */
    const headers = { Accept: "application/json" };
    if (token) headers.Authorization = `Bearer ${token}`;
    /** @type {RequestInit} */
    const init = { method, headers, signal: opts.signal };
    if (opts.body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(opts.body);
    }
    try {
      return await this.fetchImpl(url.toString(), init);
    } catch (err) {
      if (opts.signal?.aborted) throw err;
      throw new ApiError(`${method} ${url.pathname}: ${err instanceof Error ? err.message : String(err)}`, {
        code: "network_error",
        status: 0,
        cause: err,
      });
    }
  }
}
