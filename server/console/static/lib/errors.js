// Errors of @pgcast/client. Every error the library reports is a
// PgcastError; the subclasses say where it came from, `code` is the
// server's code (or one of the library's own, listed in index.d.ts).

export class PgcastError extends Error {
  /**
   * @param {string} message
   * @param {{code?: string, status?: number, details?: any[], closeCode?: number, retryAfter?: number, cause?: unknown}} [info]
   */
  constructor(message, info = {}) {
    super(message, info.cause === undefined ? undefined : { cause: info.cause });
    this.name = "PgcastError";
    this.code = info.code ?? "error";
    if (info.status !== undefined) this.status = info.status;
    this.details = info.details ?? [];
    if (info.closeCode !== undefined) this.closeCode = info.closeCode;
    if (info.retryAfter !== undefined) this.retryAfter = info.retryAfter;
  }
}

/** An HTTP answer that is not a success (REST, tickets), or no answer at all (`network_error`, status 0). */
export class ApiError extends PgcastError {
  constructor(message, info) {
    super(message, info);
    this.name = "ApiError";
  }
}

/** An `{"type":"error"}` reply on /api/realtime to one of the subscription's messages. */
export class RealtimeError extends PgcastError {
  constructor(message, info) {
    super(message, info);
    this.name = "RealtimeError";
  }
}

/** The server closed a WebSocket with a code that means "do not retry" (1002, 1003, 1007, 1008, 1009). */
export class ConnectionError extends PgcastError {
  constructor(message, info) {
    super(message, info);
    this.name = "ConnectionError";
  }
}

/**
 * apiErrorFrom reads the server's error body
 * `{"error":{"code","message","details"}}`; anything else becomes `http_<status>`.
 * @param {number} status
 * @param {string} text
 * @param {string | null} retryAfter
 */
export function apiErrorFrom(status, text, retryAfter) {
  let code = `http_${status}`;
  let message = `HTTP ${status}`;
  let details = [];
  try {
    const body = JSON.parse(text);
    if (body && typeof body.error === "object" && body.error !== null) {
      if (typeof body.error.code === "string") code = body.error.code;
      if (typeof body.error.message === "string") message = body.error.message;
      if (Array.isArray(body.error.details)) details = body.error.details;
    }
  } catch {
    // Not the server's JSON (a proxy's page): keep http_<status>.
  }
  const ra = retryAfter === null ? NaN : Number(retryAfter);
  return new ApiError(message, { code, status, details, retryAfter: Number.isFinite(ra) ? ra : undefined });
}
