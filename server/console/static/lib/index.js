// @pgcast/client: a client for pgcast's realtime channels, Catalyst streams
// and collections REST API. No dependencies; ES module; browsers and Node.

export { PgcastClient, createClient } from "./client.js";
export { Collection } from "./collection.js";
export { ApiError, ConnectionError, PgcastError, RealtimeError } from "./errors.js";
export { backoffDelay } from "./backoff.js";
export { channelMatches, channelsOverlap, comparePositions } from "./realtime.js";
