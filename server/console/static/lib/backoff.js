// Reconnect delays: exponential backoff with full jitter, capped. Full
// jitter (a uniform delay between 0 and the exponential bound) spreads the
// clients of a restarted server over the whole window instead of sending
// them back in waves.

/** Defaults: the first retry within 0.5 s, the bound doubling up to 30 s. */
export const DEFAULT_BACKOFF = Object.freeze({ base: 500, max: 30000 });

/**
 * @param {number} attempt 0 for the first retry after a failure
 * @param {{base?: number, max?: number}} [opts]
 * @param {() => number} [random]
 * @returns {number} milliseconds
 */
export function backoffDelay(attempt, opts = {}, random = Math.random) {
  const base = opts.base ?? DEFAULT_BACKOFF.base;
  const max = opts.max ?? DEFAULT_BACKOFF.max;
  // 2 ** 30 × base is past any sensible cap; the min keeps the power finite.
  return random() * Math.min(max, base * 2 ** Math.min(attempt, 30));
}

/**
 * Close codes after which reconnecting cannot help: the client sent
 * something the server refuses (1002 protocol error, 1003 binary message,
 * 1007 invalid UTF-8, 1009 message too big) or broke its policy (1008: a
 * message flood, or a read error the server gave up on).
 */
export const FATAL_CLOSE_CODES = Object.freeze(new Set([1002, 1003, 1007, 1008, 1009]));
