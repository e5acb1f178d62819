// The Catalyst streams: /ws/events/object-records/ and /ws/events/tasks/.
//
// Each connection attempt fetches a fresh ticket (single use, short-lived)
// with the caller's token. Nothing is replayed on these endpoints, so after
// every reconnect the caller is told (onReconnect) and reloads its state.

import { FATAL_CLOSE_CODES, backoffDelay } from "./backoff.js";
import { ApiError, ConnectionError, PgcastError } from "./errors.js";
import { closeSocket } from "./realtime.js";

const PATHS = {
  "object-records": "/ws/events/object-records/",
  tasks: "/ws/events/tasks/",
};

function idList(name, ids) {
  if (ids === undefined || ids === null) return null;
  if (!Array.isArray(ids)) throw new TypeError(`${name} must be an array of positive integers`);
  for (const id of ids) {
    if (!Number.isSafeInteger(id) || id < 1) throw new TypeError(`${name}: ${JSON.stringify(id)} is not a positive integer`);
  }
  return ids.length === 0 ? null : ids.join(",");
}

/** One Catalyst stream: it reconnects until stopped. */
export class CatalystStream {
  /**
   * @param {import("./client.js").Context} ctx
   * @param {"object-records" | "tasks"} endpoint
   * @param {{classIds?: number[], fieldIds?: number[]}} filter
   * @param {(items: any[]) => void} onItems
   * @param {{onReconnect?: () => void, onOpen?: (info: {reconnect: boolean}) => void, onError?: (err: Error) => void}} opts
   */
  constructor(ctx, endpoint, filter, onItems, opts) {
    if (typeof onItems !== "function") throw new TypeError("a Catalyst stream needs an items callback");
    this.ctx = ctx;
    this.endpoint = endpoint;
    this.classIds = idList("classIds", filter.classIds);
    this.fieldIds = endpoint === "object-records" ? idList("fieldIds", filter.fieldIds) : null;
    this.onItems = onItems;
    this.opts = opts;
    if (ctx.tokens.anonymous) {
      throw new PgcastError("Catalyst streams need a token: tickets are issued to signed-in users", { code: "unauthorized" });
    }
    ctx.webSocketClass();
    this.ws = null;
    this.timer = null;
    this.attempt = 0;
    this.everOpen = false;
    this.closed = false;
    /** @type {Promise<void> | null} */
    this.closing = null;
    this.ready = new Promise((resolve, reject) => {
      this.resolveReady = resolve;
      this.rejectReady = reject;
    });
    this.ready.catch(() => {});
    ctx.streams.add(this);
    void this.connect();
  }

  handle() {
    const stop = () => void this.stop();
    stop.ready = this.ready;
    return stop;
  }

  async connect() {
    this.timer = null;
    if (this.closed) return;
    let ticket;
    try {
      ticket = await this.ctx.ticket();
    } catch (err) {
      if (this.closed) return;
      // A server that is down or busy is only a state (onConnectionChange);
      // a refused token (already refreshed once by Http.request) or a
      // failing provider is an error. Either way: try again after a delay.
      const transient = err instanceof ApiError && (err.status === 0 || err.status === 429 || err.status >= 500);
      if (err instanceof ApiError && err.status === 401 && !this.ctx.tokens.refreshable) {
        // A token given as a string cannot be replaced: every ticket would be refused.
        this.ctx.status({ endpoint: this.endpoint, state: "closed", error: err, willRetry: false });
        this.rejectReady(err);
        this.report(err);
        void this.stop();
        return;
      }
      if (!transient) this.report(err);
      const delay = backoffDelay(this.attempt++, this.ctx.backoff);
      this.ctx.status({ endpoint: this.endpoint, state: "closed", error: err, willRetry: true, delay });
      this.retryLater(delay);
      return;
    }
    if (this.closed) return;
    const url = new URL(PATHS[this.endpoint], this.ctx.wsBase);
    url.searchParams.set("uuid", ticket.uuid);
    if (this.classIds !== null) url.searchParams.set("object_class_ids", this.classIds);
    if (this.fieldIds !== null) url.searchParams.set("field_ids", this.fieldIds);
    let ws;
    try {
      ws = new (this.ctx.webSocketClass())(url.toString());
    } catch (err) {
      this.report(new PgcastError(`could not open ${url.pathname}: ${err instanceof Error ? err.message : String(err)}`, { code: "network_error", cause: err }));
      this.retryLater(backoffDelay(this.attempt++, this.ctx.backoff));
      return;
    }
    this.ws = ws;
    let opened = false;
    this.ctx.status({ endpoint: this.endpoint, state: "connecting" });
    ws.onopen = () => {
      if (this.ws !== ws) return;
      opened = true;
      this.attempt = 0;
      const reconnect = this.everOpen;
      this.everOpen = true;
      this.ctx.status({ endpoint: this.endpoint, state: "open", reconnect });
      if (reconnect) this.call(this.opts.onReconnect);
      else this.resolveReady();
      this.call(this.opts.onOpen, { reconnect });
    };
    ws.onmessage = (e) => {
      if (this.ws !== ws || typeof e.data !== "string") return;
      let items;
      try {
        items = JSON.parse(e.data);
      } catch {
        return;
      }
      if (Array.isArray(items)) this.call(this.onItems, items);
    };
    ws.onerror = () => {};
    ws.onclose = (e) => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.onClose(e.code, e.reason, opened);
    };
  }

  onClose(code, reason, opened) {
    if (this.closed) return;
    if (FATAL_CLOSE_CODES.has(code)) {
      this.ctx.status({ endpoint: this.endpoint, state: "closed", code, reason, willRetry: false });
      const err = new ConnectionError(`the server closed ${PATHS[this.endpoint]} with ${code}${reason ? ` (${reason})` : ""}: not retrying`, {
        code: "closed",
        closeCode: code,
      });
      this.rejectReady(err);
      this.report(err);
      void this.stop();
      return;
    }
    // 1001: this node is going away, another may take the connection at
    // once. A handshake that failed (the ticket was refused, the server is
    // down) waits like any other failure; the next attempt has a new ticket.
    const delay = code === 1001 && opened ? 0 : backoffDelay(this.attempt++, this.ctx.backoff);
    this.ctx.status({ endpoint: this.endpoint, state: "closed", code, reason, willRetry: true, delay });
    this.retryLater(delay);
  }

  retryLater(delay) {
    if (this.closed) return;
    this.timer = setTimeout(() => void this.connect(), delay);
  }

  report(err) {
    if (typeof this.opts.onError === "function") this.call(this.opts.onError, err);
    else this.ctx.report(err);
  }

  call(fn, arg) {
    if (typeof fn !== "function") return;
    try {
      fn(arg);
    } catch (err) {
      this.ctx.report(err);
    }
  }

  stop() {
    if (this.closed) return this.closing ?? Promise.resolve();
    this.closed = true;
    this.ctx.streams.delete(this);
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    this.rejectReady(new PgcastError("the stream was stopped", { code: "closed" }));
    const ws = this.ws;
    this.ws = null;
    this.closing = closeSocket(ws);
    return this.closing;
  }
}
