// PgcastClient: one object per server and identity.

import { DEFAULT_BACKOFF } from "./backoff.js";
import { CatalystStream } from "./catalyst.js";
import { Collection } from "./collection.js";
import { PgcastError } from "./errors.js";
import { Http, Tokens } from "./http.js";
import { Realtime } from "./realtime.js";

/**
 * @typedef {object} Context what the streams share
 * @property {URL} base
 * @property {URL} wsBase
 * @property {Tokens} tokens
 * @property {typeof fetch} fetch
 * @property {() => any} webSocketClass
 * @property {{base: number, max: number}} backoff
 * @property {number} heartbeat
 * @property {() => Promise<{uuid: string, expires_at: string}>} ticket
 * @property {(err: unknown) => void} report
 * @property {(ev: object) => void} status
 * @property {Set<CatalystStream>} streams
 */

export class PgcastClient {
  /** @param {import("./index.js").ClientOptions} [options] */
  constructor(options = {}) {
    const url = options.url ?? globalThis.location?.origin;
    if (!url) throw new TypeError("url is required outside a browser page, e.g. createClient({ url: \"http://localhost:8080\" })");
    const base = new URL(url);
    if (base.protocol !== "http:" && base.protocol !== "https:") {
      throw new TypeError(`url must be http(s)://…, not ${JSON.stringify(url)}`);
    }
    const wsBase = new URL(base.toString());
    wsBase.protocol = base.protocol === "https:" ? "wss:" : "ws:";
    const fetchImpl = options.fetch ?? globalThis.fetch;
    if (typeof fetchImpl !== "function") throw new TypeError("no fetch: pass one as options.fetch");
    const boundFetch = (input, init) => fetchImpl(input, init); // window.fetch refuses another `this`
    const tokens = new Tokens(options.token);
    this.http = new Http(base, tokens, boundFetch);
    this.closed = false;
    /** @type {Context} */
    this.ctx = {
      base,
      wsBase,
      tokens,
      fetch: boundFetch,
      webSocketClass: () => {
        const WS = options.WebSocket ?? globalThis.WebSocket;
        if (typeof WS !== "function") {
          throw new PgcastError(
            "no WebSocket implementation: pass one, e.g. `import WebSocket from \"ws\"; createClient({ url, WebSocket })` (Node before 22 has no global WebSocket)",
            { code: "no_websocket" },
          );
        }
        return WS;
      },
      backoff: { ...DEFAULT_BACKOFF, ...(options.backoff ?? {}) },
      heartbeat: options.heartbeat === undefined ? 25000 : options.heartbeat || 0,
      ticket: () => this.ticket(),
      report: (err) => {
        if (typeof options.onError === "function") {
          try {
            options.onError(err);
            return;
          } catch {
            // fall through to the console
          }
        }
        globalThis.console?.error("pgcast:", err);
      },
      status: (ev) => {
        if (typeof options.onConnectionChange !== "function") return;
        try {
          options.onConnectionChange(ev);
        } catch (err) {
          globalThis.console?.error("pgcast: onConnectionChange threw", err);
        }
      },
      streams: new Set(),
    };
    this.realtime = new Realtime(this.ctx);
  }

  /** Subscribe to a realtime channel; returns the function that unsubscribes. */
  subscribe(channel, options, onEvent) {
    this.ensureOpen();
    if (typeof options === "function") {
      onEvent = options;
      options = {};
    }
    return this.realtime.subscribe(channel, options ?? {}, onEvent);
  }

  /** Stream Catalyst object-record items; returns the function that stops. */
  objectRecords(filter, onItems, options) {
    this.ensureOpen();
    return new CatalystStream(this.ctx, "object-records", filter ?? {}, onItems, options ?? {}).handle();
  }

  /** Stream Catalyst task items; returns the function that stops. */
  tasks(filter, onItems, options) {
    this.ensureOpen();
    return new CatalystStream(this.ctx, "tasks", filter ?? {}, onItems, options ?? {}).handle();
  }

  /** The REST records of one collection. */
  collection(name) {
    return new Collection(this.http, name);
  }

  /** GET /api/collections (admin): collections with their object class and field ids. */
  async listCollections(opts = {}) {
    const body = await this.http.request("GET", "/api/collections", { signal: opts.signal });
    return body.items;
  }

  /** POST /api/collections (admin). */
  createCollection(definition, opts = {}) {
    return this.http.request("POST", "/api/collections", { body: definition, signal: opts.signal });
  }

  /** POST /api/events (admin): publish an event; resolves to the event as subscribers get it. */
  publish(type, payload, opts = {}) {
    return this.http.request("POST", "/api/events", { body: payload === undefined ? { type } : { type, payload }, signal: opts.signal });
  }

  /** GET /api/users/ws-auth/: a one-time Catalyst ticket. */
  ticket(opts = {}) {
    if (this.ctx.tokens.anonymous) {
      return Promise.reject(new PgcastError("tickets are issued to signed-in users: give the client a token", { code: "unauthorized" }));
    }
    return this.http.request("GET", "/api/users/ws-auth/", { signal: opts.signal });
  }

  /** Close every socket and timer; resolves when the sockets are closed. */
  async close() {
    this.closed = true;
    await Promise.all([this.realtime.close(), ...[...this.ctx.streams].map((s) => s.stop())]);
  }

  ensureOpen() {
    if (this.closed) throw new PgcastError("the client is closed", { code: "closed" });
  }
}

/** createClient is `new PgcastClient(options)`. */
export function createClient(options) {
  return new PgcastClient(options);
}
