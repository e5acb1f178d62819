// Type declarations of @pgcast/client (the library is plain JavaScript).

/** A token, or a function giving one; called for the first token and again after the server refused it (401, close 4001). */
export type TokenProvider = string | (() => string | Promise<string>);

/** The minimal WebSocket the client needs: the browser's, Node 22's global one, or `ws`. */
export interface WebSocketLike {
  readonly readyState: number;
  onopen: ((ev: any) => void) | null;
  onmessage: ((ev: { data: any }) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  onerror: ((ev: any) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  /** `ws` only: cut the socket without a closing handshake. */
  terminate?(): void;
}
export type WebSocketConstructor = new (url: string) => WebSocketLike;

export interface BackoffOptions {
  /** Bound of the first delay, ms. Default 500. */
  base?: number;
  /** Cap of the bound, ms. Default 30000. */
  max?: number;
}

export type Endpoint = "realtime" | "object-records" | "tasks";

/** A change of a socket's state, for status displays and logs. */
export interface ConnectionChange {
  endpoint: Endpoint;
  state: "connecting" | "open" | "closed";
  /** open: whether this is a reconnect. */
  reconnect?: boolean;
  /** closed: the close code (1006 when the connection failed or was cut). */
  code?: number;
  reason?: string;
  /** closed: the ticket or token error that kept it from connecting. */
  error?: unknown;
  /** closed: false after a close code that must not be retried (1002, 1003, 1007, 1008, 1009). */
  willRetry?: boolean;
  /** closed: ms until the next attempt (0 after 1001 and 4001). */
  delay?: number;
}

export interface ClientOptions {
  /** The server, e.g. "https://pgcast.example.com". Default in a browser: the page's origin. */
  url?: string;
  /** Without one the client is anonymous (realtime and REST only). */
  token?: TokenProvider;
  /** Default: globalThis.WebSocket. Node before 22 has none: pass `ws`'s. */
  WebSocket?: WebSocketConstructor;
  /** Default: globalThis.fetch. */
  fetch?: typeof fetch;
  /** Reconnect delays: random between 0 and min(max, base × 2^attempt). */
  backoff?: BackoffOptions;
  /**
   * /api/realtime sends a ping this often (ms) and reconnects when nothing
   * came back by the next one, to notice dead network paths. Default 25000;
   * 0 or false: off.
   */
  heartbeat?: number | false;
  /** Errors that belong to no subscription, and what callbacks throw. Default: console.error. */
  onError?: (err: unknown) => void;
  onConnectionChange?: (change: ConnectionChange) => void;
}

/** An event on /api/realtime. */
export interface RealtimeEvent<P = Record<string, any>> {
  /** evt_<position in the log>: unique and increasing per deployment. */
  id: string;
  /** e.g. posts.created, job.completed */
  type: string;
  /** UTC, milliseconds. */
  timestamp: string;
  source: string;
  payload: P;
  /** Only on a channel with a filter: the update made the row enter or leave it (drop the row on "leave"). */
  transition?: "enter" | "leave";
  [key: string]: unknown;
}

export interface SubscribeOptions {
  /** Resume after this event id (evt_123) on the first subscribe; later resumes use the highest id delivered. */
  since?: string;
  /** A row filter in PostgREST syntax, e.g. "status=eq.paid" (sent as the subscribe message's `filter`). */
  filter?: string;
  /** Columns to keep in the payload (sent as a comma-separated `select`). */
  select?: string | string[];
  /** The server could not replay what was missed (retention, or nothing to resume from): reload your state. */
  onReset?: () => void;
  /** Errors of this subscription. Default: the client's onError. */
  onError?: (err: PgcastError) => void;
  /** After every acknowledgement by the server (the first subscribe and each resubscribe). */
  onSubscribed?: () => void;
}

/** Calling it unsubscribes (and closes the socket when it carried nothing else). */
export interface Unsubscribe {
  (): void;
  /** Resolves when the server first acknowledged the subscription; rejects with the error that ended it. */
  readonly ready: Promise<void>;
  /** The highest event id delivered (the next resume position), or null. */
  readonly lastEventId: string | null;
}

/** Calling it stops the stream. */
export interface StopStream {
  (): void;
  /** Resolves when the first connection is open; rejects if the stream ends first. */
  readonly ready: Promise<void>;
}

export interface ObjectRecordsFilter {
  /** Object class (collection) ids: `GET /api/collections` gives them. */
  classIds?: number[];
  /** Field ids: object_record_value_changed only when one of these changed. */
  fieldIds?: number[];
}
export interface TasksFilter {
  classIds?: number[];
}

export interface StreamOptions {
  /** After every reconnect: nothing is replayed on these endpoints, so reload your state. */
  onReconnect?: () => void;
  /** After every open, the first included. */
  onOpen?: (info: { reconnect: boolean }) => void;
  onError?: (err: unknown) => void;
}

export interface ObjectRecordItem {
  object_record_id?: number;
  object_class_id: number;
  event:
    | "object_record_created"
    | "object_record_deleted"
    | "object_record_value_changed"
    | "object_records_count_changed"
    | "object_record_owner_added"
    | "object_record_owner_removed"
    | "object_record_assignee_added"
    | "object_record_assignee_removed"
    | "object_record_document_added"
    | "object_record_document_removed"
    | (string & {});
  timestamp: string;
  field_ids?: number[];
  user_id?: string;
  document_id?: number;
  count?: number;
}

export interface TaskItem {
  task_id: number;
  object_class_id: number;
  event:
    | "task_created"
    | "task_value_changed"
    | "task_status_changed"
    | "task_owner_added"
    | "task_owner_removed"
    | "task_assignee_added"
    | "task_assignee_removed"
    | "task_deleted"
    | (string & {});
  timestamp: string;
  user_id?: string;
}

/** A record: `{id, createdAt, updatedAt, ...fields}`. */
export type RecordOf<T = Record<string, unknown>> = T & { id: number; createdAt: string; updatedAt: string };

export interface ListPage<T> {
  items: RecordOf<T>[];
  /** Present (true) when the page stopped at the server's byte budget. */
  truncated?: true;
}

export interface RequestOptions {
  signal?: AbortSignal;
}

export declare class Collection<T = Record<string, unknown>> {
  readonly name: string;
  /** Newest first; `before` is the last id of the previous page. */
  list(opts?: { limit?: number; before?: number } & RequestOptions): Promise<ListPage<T>>;
  get(id: number | string, opts?: RequestOptions): Promise<RecordOf<T>>;
  create(data: Partial<T>, opts?: RequestOptions): Promise<RecordOf<T>>;
  /** A partial update. */
  update(id: number | string, patch: Partial<T>, opts?: RequestOptions): Promise<RecordOf<T>>;
  delete(id: number | string, opts?: RequestOptions): Promise<void>;
}

export type FieldType = "string" | "text" | "integer" | "float" | "boolean" | "datetime" | "json";
export type Rule = "public" | "authenticated" | "owner" | "admin";
export interface CollectionDefinition {
  name: string;
  fields: { name: string; type: FieldType; required?: boolean }[];
  permissions?: Partial<Record<"create" | "read" | "update" | "delete", Rule>>;
}
export interface CollectionInfo {
  /** The object class id (Catalyst classIds). */
  id: number;
  name: string;
  fields: { id: number; name: string; type: FieldType; required: boolean }[];
  permissions: Record<"create" | "read" | "update" | "delete", Rule>;
  /** Watches only: the table streamed, e.g. "public.orders" (its REST record endpoints answer 409 watched_table). */
  table?: string;
  [key: string]: unknown;
}

export declare class PgcastClient {
  constructor(options?: ClientOptions);
  /** Subscribe to a realtime channel (`posts.*`, `posts.created`, `job.*`). */
  subscribe<P = Record<string, any>>(channel: string, onEvent: (event: RealtimeEvent<P>) => void): Unsubscribe;
  subscribe<P = Record<string, any>>(channel: string, options: SubscribeOptions, onEvent: (event: RealtimeEvent<P>) => void): Unsubscribe;
  /** Catalyst /ws/events/object-records/: each call of onItems is one frame. Needs a token. */
  objectRecords(filter: ObjectRecordsFilter, onItems: (items: ObjectRecordItem[]) => void, options?: StreamOptions): StopStream;
  /** Catalyst /ws/events/tasks/. Needs a token. */
  tasks(filter: TasksFilter, onItems: (items: TaskItem[]) => void, options?: StreamOptions): StopStream;
  collection<T = Record<string, unknown>>(name: string): Collection<T>;
  /** GET /api/collections (admin). */
  listCollections(opts?: RequestOptions): Promise<CollectionInfo[]>;
  /** POST /api/collections (admin). */
  createCollection(definition: CollectionDefinition, opts?: RequestOptions): Promise<CollectionInfo>;
  /** POST /api/events (admin): resolves to the event as subscribers receive it. */
  publish<P = Record<string, any>>(type: string, payload?: P, opts?: RequestOptions): Promise<RealtimeEvent<P>>;
  /** GET /api/users/ws-auth/: a one-time ticket (the Catalyst streams fetch their own). */
  ticket(opts?: RequestOptions): Promise<{ uuid: string; expires_at: string }>;
  /** Close every socket and timer; resolves when the sockets are closed. The client cannot be used afterwards. */
  close(): Promise<void>;
}

export declare function createClient(options?: ClientOptions): PgcastClient;

/** Codes the library uses itself, besides the server's. */
export type ClientErrorCode =
  | "network_error" // no HTTP answer (status 0)
  | "invalid_response"
  | "token_provider" // the provider threw or gave no token
  | "no_websocket"
  | "closed" // the client or stream was closed, or the server closed with a code not to retry (closeCode)
  | "unsubscribed"
  | `http_${number}`; // an error answer without the server's JSON body

/** The server's codes (REST, tickets, realtime replies). */
export type ServerErrorCode =
  | "validation_error"
  | "bad_request"
  | "unauthorized"
  | "forbidden"
  | "not_found"
  | "method_not_allowed"
  | "too_many_requests"
  | "watched_table"
  | "internal"
  | "invalid_json"
  | "invalid_action"
  | "invalid_channel"
  | "invalid_since"
  | "invalid_filter"
  | "unknown_namespace"
  | "subscription_limit"
  | "internal_error"
  | "rate_limited";

export interface ErrorDetail {
  field: string;
  rule: string;
  message: string;
}

export declare class PgcastError extends Error {
  readonly code: ServerErrorCode | ClientErrorCode | (string & {});
  /** HTTP status (ApiError; 0 when there was no answer). */
  readonly status?: number;
  readonly details: ErrorDetail[];
  /** ConnectionError: the server's close code. */
  readonly closeCode?: number;
  /** Seconds, from Retry-After (429). */
  readonly retryAfter?: number;
}
/** An HTTP error answer (REST, tickets), or none (network_error). */
export declare class ApiError extends PgcastError {
  readonly status: number;
}
/** An error reply on /api/realtime to a subscribe. */
export declare class RealtimeError extends PgcastError {}
/** A close the client does not retry (1002, 1003, 1007, 1008, 1009). */
export declare class ConnectionError extends PgcastError {
  readonly closeCode: number;
}

/** Random delay (ms) between 0 and min(max, base × 2^attempt). */
export declare function backoffDelay(attempt: number, opts?: BackoffOptions, random?: () => number): number;
export declare function channelMatches(channel: string, type: string): boolean;
export declare function channelsOverlap(a: string, b: string): boolean;
export declare function comparePositions(a: string, b: string): -1 | 0 | 1;
