// /api/realtime: channel subscriptions with resume.
//
// Subscriptions share WebSockets, up to 50 channels each (the server's
// limit), but never two channels that can match the same event type on one
// socket: the server sends an event once per connection however many of its
// channels match, and resumes each channel from its own position, so with
// overlapping channels on one socket an event could be routed to one
// subscription only, or replayed twice. With disjoint channels each event on
// a socket belongs to exactly one subscription, and each subscription
// resumes from the highest position it was given.

import { FATAL_CLOSE_CODES, backoffDelay } from "./backoff.js";
import { ConnectionError, PgcastError, RealtimeError } from "./errors.js";

/** The server's limit of channels per connection. */
export const MAX_CHANNELS_PER_SOCKET = 50;

/** Error replies worth sending the subscribe again for, after a backoff delay. */
const RETRYABLE_CODES = new Set(["internal_error", "rate_limited"]);

const POSITION = /^evt_(\d{1,18})$/;

/** Whether `channel` (`posts.*`, `posts.created`) matches the event type. */
export function channelMatches(channel, type) {
  return channel.endsWith("*") ? type.startsWith(channel.slice(0, -1)) : channel === type;
}

/** Whether some event type could match both channels. */
export function channelsOverlap(a, b) {
  const pa = a.endsWith("*") ? a.slice(0, -1) : null;
  const pb = b.endsWith("*") ? b.slice(0, -1) : null;
  if (pa === null && pb === null) return a === b;
  if (pa !== null && pb !== null) return pa.startsWith(pb) || pb.startsWith(pa);
  return pa !== null ? b.startsWith(pa) : a.startsWith(/** @type {string} */ (pb));
}

/** Compares two event ids (`evt_<position>`) by position. */
export function comparePositions(a, b) {
  const da = a.slice(4);
  const db = b.slice(4);
  if (da.length !== db.length) return da.length < db.length ? -1 : 1;
  return da < db ? -1 : da > db ? 1 : 0;
}

/** Realtime owns the client's /api/realtime sockets. */
export class Realtime {
  /** @param {import("./client.js").Context} ctx */
  constructor(ctx) {
    this.ctx = ctx;
    /** @type {Set<Connection>} */
    this.conns = new Set();
    /** The highest event id this client has seen on any channel (see Subscription.floor). */
    this.highest = null;
  }

  /** @param {string} id */
  observe(id) {
    if (this.highest === null || comparePositions(id, this.highest) > 0) this.highest = id;
  }

  subscribe(channel, opts, onEvent) {
    if (typeof channel !== "string" || channel === "") throw new TypeError("channel must be a non-empty string");
    if (typeof onEvent !== "function") throw new TypeError("subscribe needs an event callback");
    if (opts.since !== undefined && opts.since !== null && (typeof opts.since !== "string" || !POSITION.test(opts.since))) {
      throw new TypeError(`since must be an event id such as "evt_123", not ${JSON.stringify(opts.since)}`);
    }
    if (opts.filter !== undefined && opts.filter !== null && typeof opts.filter !== "string") {
      throw new TypeError("filter must be a string such as \"status=eq.paid\"");
    }
    this.ctx.webSocketClass(); // throws now, not on a later reconnect, when there is none
    const sub = new Subscription(this, channel, opts, onEvent);
    let conn = null;
    for (const c of this.conns) {
      if (c.canTake(channel)) {
        conn = c;
        break;
      }
    }
    if (conn === null) {
      conn = new Connection(this);
      this.conns.add(conn);
    }
    conn.add(sub);
    return sub.handle();
  }

  close() {
    return Promise.all([...this.conns].map((c) => c.shutdown()));
  }
}

class Subscription {
  constructor(rt, channel, opts, onEvent) {
    this.rt = rt;
    this.channel = channel;
    this.filter = opts.filter || undefined;
    this.select = Array.isArray(opts.select) ? opts.select.join(",") : opts.select || undefined;
    /** The highest event id delivered (or the caller's since): the next resume position. */
    this.last = opts.since ?? null;
    /**
     * Before its first event, a subscription resumes from the highest id the
     * client had seen on any channel when the server acknowledged it (ids are
     * positions in one log for the whole deployment); if the client had seen
     * none, it cannot resume and gets a reset instead (see resubscribe).
     */
    this.floor = null;
    this.onEvent = onEvent;
    this.onReset = opts.onReset;
    this.onError = opts.onError;
    this.onSubscribed = opts.onSubscribed;
    /** @type {Connection | null} */
    this.conn = null;
    this.active = true;
    this.acked = false;
    this.resetPending = false;
    this.retries = 0;
    /** @type {ReturnType<typeof setTimeout> | null} */
    this.retryTimer = null;
    this.ready = new Promise((resolve, reject) => {
      this.resolveReady = resolve;
      this.rejectReady = reject;
    });
    // Callers that never look at ready must not get an unhandled rejection.
    this.ready.catch(() => {});
  }

  handle() {
    const unsubscribe = () => this.cancel();
    unsubscribe.ready = this.ready;
    Object.defineProperty(unsubscribe, "lastEventId", { get: () => this.last, enumerable: true });
    return unsubscribe;
  }

  /** The subscribe message, with the resume position. */
  message() {
    /** @type {Record<string, string>} */
    const msg = { action: "subscribe", channel: this.channel };
    if (this.filter !== undefined) msg.filter = this.filter;
    if (this.select !== undefined) msg.select = this.select;
    const since = this.last ?? this.floor;
    if (since !== null) msg.since = since;
    else if (this.acked) this.resetPending = true; // subscribed before, nothing to resume from
    return msg;
  }

  subscribed() {
    this.retries = 0;
    if (!this.acked) {
      this.acked = true;
      if (this.last === null) this.floor = this.rt.highest;
      this.resolveReady();
    }
    this.call(this.onSubscribed);
    if (this.resetPending) {
      this.resetPending = false;
      this.call(this.onReset);
    }
  }

  deliver(event) {
    if (typeof event.id === "string" && POSITION.test(event.id)) {
      if (this.last === null || comparePositions(event.id, this.last) > 0) this.last = event.id;
      this.rt.observe(event.id);
    }
    this.call(this.onEvent, event);
  }

  reset() {
    this.call(this.onReset);
  }

  /** fail ends the subscription with an error that retrying cannot fix. */
  fail(err) {
    if (!this.active) return;
    this.detach();
    this.rejectReady(err);
    if (this.onError) this.call(this.onError, err);
    else this.rt.ctx.report(err);
  }

  /** report passes on an error that does not end the subscription. */
  report(err) {
    if (this.onError) this.call(this.onError, err);
    else this.rt.ctx.report(err);
  }

  cancel() {
    if (!this.active) return;
    this.detach();
    this.rejectReady(new PgcastError("unsubscribed before the server acknowledged", { code: "unsubscribed" }));
  }

  detach() {
    this.active = false;
    if (this.retryTimer !== null) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.conn?.remove(this);
  }

  /** call runs a caller's callback; what it throws goes to the client's onError, never into the socket's loop. */
  call(fn, arg) {
    if (typeof fn !== "function") return;
    try {
      fn(arg);
    } catch (err) {
      this.rt.ctx.report(err);
    }
  }
}

/** One /api/realtime WebSocket and the subscriptions it carries. */
class Connection {
  /** @param {Realtime} rt */
  constructor(rt) {
    this.rt = rt;
    this.ctx = rt.ctx;
    /** @type {Map<string, Subscription>} by channel */
    this.subs = new Map();
    /** idle: nothing under way; waiting: a timer or an async step will connect; socket: ws is set */
    this.state = "idle";
    /** @type {any} */
    this.ws = null;
    this.token = null;
    /** The server sent `connected` on the current socket. */
    this.open = false;
    this.everOpen = false;
    /** What each reply on the current socket answers, in order: the server replies to messages in turn. */
    this.replies = [];
    this.attempt = 0;
    /** A 401 was answered with a fresh token since the last backoff (see recover). */
    this.authRefreshed = false;
    this.timer = null;
    this.heartbeat = null;
    this.awaitingPong = false;
    this.closed = false;
  }

  canTake(channel) {
    if (this.closed || this.subs.size >= MAX_CHANNELS_PER_SOCKET) return false;
    for (const c of this.subs.keys()) if (channelsOverlap(c, channel)) return false;
    return true;
  }

  add(sub) {
    sub.conn = this;
    this.subs.set(sub.channel, sub);
    if (this.open) this.sendSubscribe(sub);
    else if (this.state === "idle") this.connect();
  }

  remove(sub) {
    if (this.subs.get(sub.channel) !== sub) return;
    this.subs.delete(sub.channel);
    if (this.subs.size === 0) {
      void this.shutdown();
      return;
    }
    if (this.open) this.send({ action: "unsubscribe", channel: sub.channel }, { kind: "unsubscribe" });
  }

  async connect() {
    this.timer = null;
    if (this.closed) return;
    this.state = "waiting";
    let token = null;
    try {
      token = await this.ctx.tokens.get();
    } catch (err) {
      if (this.closed) return;
      this.reportAll(err);
      this.retryLater(backoffDelay(this.attempt++, this.ctx.backoff));
      return;
    }
    if (this.closed) return;
    const url = new URL("/api/realtime", this.ctx.wsBase);
    if (token !== null) url.searchParams.set("token", token);
    this.token = token;
    const WS = this.ctx.webSocketClass();
    let ws;
    try {
      ws = new WS(url.toString());
    } catch (err) {
      this.reportAll(new PgcastError(`could not open ${url.pathname}: ${err instanceof Error ? err.message : String(err)}`, { code: "network_error", cause: err }));
      this.retryLater(backoffDelay(this.attempt++, this.ctx.backoff));
      return;
    }
    this.ws = ws;
    this.state = "socket";
    this.open = false;
    this.ctx.status({ endpoint: "realtime", state: "connecting" });
    ws.onmessage = (e) => {
      if (this.ws === ws) this.onMessage(e.data);
    };
    ws.onclose = (e) => {
      if (this.ws === ws) this.onClose(e.code, e.reason);
    };
    ws.onerror = () => {}; // a close event follows with the code
  }

  onMessage(data) {
    if (typeof data !== "string") return;
    let msg;
    try {
      msg = JSON.parse(data);
    } catch {
      return;
    }
    if (msg === null || typeof msg !== "object") return;
    this.awaitingPong = false;
    switch (msg.type) {
      case "connected":
        this.onConnected();
        break;
      case "subscribed": {
        const r = this.replies.shift();
        const sub = r?.sub;
        if (sub && sub.active && this.subs.get(sub.channel) === sub) sub.subscribed();
        break;
      }
      case "unsubscribed":
      case "pong":
        this.replies.shift();
        break;
      case "error":
        this.onErrorReply(msg);
        break;
      case "event": {
        const ev = msg.event;
        if (ev === null || typeof ev !== "object" || typeof ev.type !== "string") break;
        for (const sub of this.subs.values()) {
          if (channelMatches(sub.channel, ev.type)) {
            sub.deliver(ev);
            break; // channels on a socket never overlap
          }
        }
        break;
      }
      case "reset":
        this.subs.get(msg.channel)?.reset();
        break;
    }
  }

  onConnected() {
    this.open = true;
    this.replies = [];
    const reconnect = this.everOpen;
    this.everOpen = true;
    this.attempt = 0;
    this.authRefreshed = false;
    this.ctx.status({ endpoint: "realtime", state: "open", reconnect });
    this.startHeartbeat();
    for (const sub of this.subs.values()) this.sendSubscribe(sub);
  }

  sendSubscribe(sub) {
    this.send(sub.message(), { kind: "subscribe", sub });
  }

  onErrorReply(msg) {
    const r = this.replies.shift();
    const code = typeof msg.code === "string" ? msg.code : "error";
    const err = new RealtimeError(typeof msg.message === "string" ? msg.message : code, { code });
    if (r === undefined) {
      this.ctx.report(err);
      return;
    }
    if (r.kind !== "subscribe") return; // a ping or an unsubscribe over the rate: nothing to do
    const sub = r.sub;
    if (!sub.active || this.subs.get(sub.channel) !== sub) return;
    if (RETRYABLE_CODES.has(code)) {
      sub.retryTimer = setTimeout(() => {
        sub.retryTimer = null;
        if (sub.active && this.open && this.subs.get(sub.channel) === sub) this.sendSubscribe(sub);
      }, backoffDelay(sub.retries++, this.ctx.backoff));
      return;
    }
    sub.fail(err);
  }

  onClose(code, reason) {
    const wasOpen = this.open;
    this.ws = null;
    this.open = false;
    this.replies = [];
    this.stopHeartbeat();
    for (const sub of this.subs.values()) {
      if (sub.retryTimer !== null) clearTimeout(sub.retryTimer);
      sub.retryTimer = null;
    }
    if (this.closed) return;
    this.state = "waiting";
    if (FATAL_CLOSE_CODES.has(code)) {
      this.failAll(
        new ConnectionError(`the server closed /api/realtime with ${code}${reason ? ` (${reason})` : ""}: not retrying`, {
          code: "closed",
          closeCode: code,
        }),
        code,
        reason,
      );
      return;
    }
    void this.recover(code, reason, wasOpen);
  }

  /** failAll ends every subscription with err and closes the connection for good. */
  failAll(err, code, reason) {
    this.ctx.status({ endpoint: "realtime", state: "closed", code, reason, willRetry: false });
    for (const sub of [...this.subs.values()]) sub.fail(err);
    void this.shutdown();
  }

  async recover(code, reason, wasOpen) {
    const token = this.token;
    const refusedFixed = (why) =>
      // A token given as a string cannot be replaced: reconnecting with it
      // would be refused for ever.
      this.failAll(new PgcastError(`${why}, and the client has no token provider to ask for another`, { code: "unauthorized", status: 401 }), code, reason);
    let delay;
    if (code === 4001 && token !== null && !this.ctx.tokens.refreshable) {
      refusedFixed("the token expired (close 4001)");
      return;
    }
    if (code === 4001 && token !== null) {
      // The token expired: a new one, and back at once with since.
      delay = 0;
      try {
        await this.ctx.tokens.refresh(token);
      } catch (err) {
        this.reportAll(err);
        delay = backoffDelay(this.attempt++, this.ctx.backoff);
      }
    } else if (!wasOpen && token !== null && (await this.tokenRefused(token))) {
      // A browser WebSocket does not show the handshake's status, so a
      // failed handshake is followed by a plain GET that does: 401 means
      // the token. One new token at once; after that, wait between tries.
      if (!this.ctx.tokens.refreshable) {
        if (!this.closed) refusedFixed("/api/realtime refused the token (401)");
        return;
      }
      if (this.authRefreshed) {
        this.authRefreshed = false;
        this.reportAll(new PgcastError("/api/realtime refused the token (401)", { code: "unauthorized", status: 401 }));
        delay = backoffDelay(this.attempt++, this.ctx.backoff);
      } else {
        this.authRefreshed = true;
        delay = 0;
        try {
          await this.ctx.tokens.refresh(token);
        } catch (err) {
          this.reportAll(err);
          delay = backoffDelay(this.attempt++, this.ctx.backoff);
        }
      }
    } else if (code === 1001 && wasOpen) {
      delay = 0; // the node is going away: another may take us at once
    } else {
      delay = backoffDelay(this.attempt++, this.ctx.backoff);
    }
    if (this.closed) return;
    this.ctx.status({ endpoint: "realtime", state: "closed", code, reason, willRetry: true, delay });
    this.retryLater(delay);
  }

  /** Whether the server refuses `token` on /api/realtime (a GET without upgrade answers 401 for a bad token, 400 otherwise). */
  async tokenRefused(token) {
    try {
      const res = await this.ctx.fetch(new URL("/api/realtime", this.ctx.base).toString(), {
        headers: { Authorization: `Bearer ${token}` },
      });
      await res.body?.cancel();
      return res.status === 401;
    } catch {
      return false; // unreachable: the backoff will try again
    }
  }

  retryLater(delay) {
    if (this.closed) return;
    this.state = "waiting";
    this.timer = setTimeout(() => void this.connect(), delay);
  }

  send(msg, reply) {
    if (this.ws === null) return;
    try {
      this.ws.send(JSON.stringify(msg));
      this.replies.push(reply);
    } catch {
      // The socket is closing; its close event reconnects and sends again.
    }
  }

  startHeartbeat() {
    const every = this.ctx.heartbeat;
    if (!every) return;
    this.awaitingPong = false;
    this.heartbeat = setInterval(() => {
      if (this.awaitingPong) {
        // Nothing came back for a whole interval: the path is dead (a
        // closed laptop, a dropped NAT mapping) and no close event may come
        // for minutes. Give the socket up and reconnect.
        const ws = this.ws;
        this.detachSocket(ws);
        this.onClose(1006, "no answer to ping");
        return;
      }
      this.awaitingPong = true;
      this.send({ action: "ping" }, { kind: "ping" });
    }, every);
  }

  stopHeartbeat() {
    if (this.heartbeat !== null) clearInterval(this.heartbeat);
    this.heartbeat = null;
  }

  detachSocket(ws) {
    if (ws === null) return;
    ws.onmessage = null;
    ws.onclose = null;
    if (typeof ws.terminate === "function") ws.terminate();
    else ws.close();
  }

  reportAll(err) {
    if (this.subs.size === 0) this.ctx.report(err);
    for (const sub of this.subs.values()) sub.report(err);
  }

  /** shutdown closes the socket and stops every timer; it resolves when the socket is closed. */
  shutdown() {
    if (this.closed) return this.closing ?? Promise.resolve();
    this.closed = true;
    this.rt.conns.delete(this);
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    this.stopHeartbeat();
    for (const sub of this.subs.values()) {
      if (sub.retryTimer !== null) clearTimeout(sub.retryTimer);
      sub.retryTimer = null;
      sub.active = false;
      sub.rejectReady(new PgcastError("the client was closed", { code: "closed" }));
    }
    this.subs.clear();
    const ws = this.ws;
    this.ws = null;
    this.open = false;
    this.closing = closeSocket(ws);
    return this.closing;
  }
}

/**
 * closeSocket closes ws with 1000 and resolves once it is closed, waiting at
 * most 1 s for the server's close frame (then it is cut, where the
 * implementation can: `ws`'s terminate).
 */
export function closeSocket(ws) {
  if (ws === null || ws === undefined || ws.readyState === 3) return Promise.resolve();
  return new Promise((resolve) => {
    let timer = null;
    const done = () => {
      if (timer !== null) clearTimeout(timer);
      timer = null;
      resolve();
    };
    ws.onmessage = null;
    ws.onerror = () => {};
    ws.onclose = done;
    timer = setTimeout(() => {
      timer = null;
      if (typeof ws.terminate === "function") ws.terminate();
      resolve();
    }, 1000);
    try {
      ws.close(1000);
    } catch {
      done();
    }
  });
}
