// The Catalyst streams through the client, against a real pgcast.
import assert from "node:assert/strict";
import test from "node:test";
import WebSocket from "ws";
import { PgcastError } from "../src/index.js";
import { Signal, adminToken, startStack, withTimeout } from "./helpers.js";


/** recorder wraps fetch and WebSocket to see every ticket issued and every socket opened. */
function recorder() {
  const tickets = [];
  const sockets = [];
  const sig = new Signal();
  const fetchImpl = async (url, init) => {
    const res = await fetch(url, init);
    if (new URL(url).pathname.startsWith("/api/users/ws-auth") && res.ok) {
      tickets.push((await res.clone().json()).uuid);
      sig.notify();
    }
    return res;
  };
  class RecordingWebSocket extends WebSocket {
    constructor(url, ...rest) {
      super(url, ...rest);
      sockets.push(new URL(url).searchParams.get("uuid"));
      sig.notify();
    }
  }
  return { tickets, sockets, sig, fetch: fetchImpl, WebSocket: RecordingWebSocket };
}

async function itemsCollection(client) {
  return client.createCollection({
    name: "items",
    fields: [
      { name: "title", type: "string", required: true },
      { name: "note", type: "string" },
    ],
    permissions: { read: "public", create: "public", update: "public", delete: "public" },
  });
}

test("a fresh ticket for every connection attempt: refused handshakes (429) are retried with new tickets", async (t) => {
  const stack = await startStack(t, { name: "tickets", args: ["--max-conns-per-user", "1", "--message-time", "100ms"] });
  const token = adminToken(stack);
  // The user's one connection, held by someone else: every handshake is refused with 429.
  const holder = new WebSocket(`${stack.baseURL.replace("http", "ws")}/api/realtime?token=${token}`);
  await withTimeout(new Promise((resolve, reject) => ((holder.onopen = resolve), (holder.onerror = reject))), 5000, "the holder");
  const rec = recorder();
  const client = stack.client({ token: () => token, fetch: rec.fetch, WebSocket: rec.WebSocket });
  const stop = client.objectRecords({}, () => {}, { onError: () => {} });
  await rec.sig.until(() => rec.sockets.length >= 3, 15000, () => `three refused attempts (have ${rec.sockets.length})`);
  holder.close();
  await withTimeout(stop.ready, 15000, "the stream to open once the connection is free");
  assert.equal(new Set(rec.sockets).size, rec.sockets.length, `a ticket was used twice: ${rec.sockets}`);
  assert.deepEqual(rec.sockets, rec.tickets, "each attempt used the ticket fetched for it");
});

test("Catalyst after a server restart: onReconnect once, a new ticket, items flow again", async (t) => {
  const stack = await startStack(t, { name: "catrestart", args: ["--message-time", "100ms"] });
  const rec = recorder();
  const client = stack.client({ token: () => adminToken(stack), fetch: rec.fetch, WebSocket: rec.WebSocket });
  const items = client.collection("items");
  const cls = await itemsCollection(client);
  const sig = new Signal();
  const frames = [];
  let reconnects = 0;
  const stop = client.objectRecords({ classIds: [cls.id] }, (frame) => (frames.push(frame), sig.notify()), {
    onReconnect: () => (reconnects++, sig.notify()),
    onError: () => {},
  });
  await withTimeout(stop.ready, 10000, "the stream");
  const created = (id) => frames.flat().some((it) => it.event === "object_record_created" && it.object_record_id === id);
  const a = await items.create({ title: "a" });
  await sig.until(() => created(a.id), 10000, "a's created item");
  assert.ok(frames.flat().some((it) => it.event === "object_records_count_changed" && it.count === 1));

  await stack.stop("SIGTERM");
  await stack.start();
  await sig.until(() => reconnects === 1, 20000, "onReconnect");
  const b = await items.create({ title: "b" });
  await sig.until(() => created(b.id), 10000, "b's created item");
  assert.equal(reconnects, 1);
  assert.equal(new Set(rec.sockets).size, rec.sockets.length, "every attempt had its own ticket");
  assert.deepEqual(rec.sockets, rec.tickets);
  stop();
});

test("classIds and fieldIds reach the server: only changes of the listed fields", async (t) => {
  const stack = await startStack(t, { name: "catfilter", args: ["--message-time", "100ms"] });
  const client = stack.client({ token: () => adminToken(stack) });
  const cls = await itemsCollection(client);
  const note = cls.fields.find((f) => f.name === "note").id;
  const sig = new Signal();
  const got = [];
  const stop = client.objectRecords({ classIds: [cls.id], fieldIds: [note] }, (frame) => (got.push(...frame), sig.notify()));
  await withTimeout(stop.ready, 10000, "the stream");
  const items = client.collection("items");
  const r = await items.create({ title: "t" });
  await items.update(r.id, { title: "t2" }); // not listed: no item
  await items.update(r.id, { note: "n" });
  await sig.until(() => got.some((it) => it.event === "object_record_value_changed"), 10000, "the note change");
  const changes = got.filter((it) => it.event === "object_record_value_changed");
  assert.deepEqual(changes.map((it) => it.field_ids), [[note]]);
  assert.throws(() => client.objectRecords({ classIds: ["1"] }, () => {}), TypeError);
});

test("tasks streams task items", async (t) => {
  const stack = await startStack(t, { name: "tasks", args: ["--message-time", "100ms"] });
  const client = stack.client({ token: () => adminToken(stack) });
  const cls = await itemsCollection(client);
  const sig = new Signal();
  const got = [];
  const stop = client.tasks({ classIds: [cls.id] }, (frame) => (got.push(...frame), sig.notify()));
  await withTimeout(stop.ready, 10000, "the stream");
  await stack.sql(`INSERT INTO pgcast.tasks (object_class_id, status) VALUES (${cls.id}, 'open')`);
  await sig.until(() => got.some((it) => it.event === "task_created"), 10000, "task_created");
});

test("tickets: a refused token is replaced by the provider's next one; anonymous clients cannot stream", async (t) => {
  const stack = await startStack(t, { name: "catauth" });
  let calls = 0;
  const client = stack.client({
    token: () => (++calls === 1 ? stack.token({ sub: "u1", exp: Math.floor(Date.now() / 1000) - 60 }) : stack.token({ sub: "u1" })),
  });
  const stop = client.objectRecords({}, () => {});
  await withTimeout(stop.ready, 10000, "the stream");
  assert.equal(calls, 2);
  const fixed = stack.client({ token: stack.token({ sub: "u1", exp: Math.floor(Date.now() / 1000) - 60 }) });
  const refused = fixed.objectRecords({}, () => {}, { onError: () => {} });
  await assert.rejects(refused.ready, (e) => e.code === "unauthorized" && e.status === 401);
  assert.equal(fixed.ctx.streams.size, 0, "no retries with a token that cannot change");
  const anonymous = stack.client({});
  assert.throws(() => anonymous.objectRecords({}, () => {}), (e) => e instanceof PgcastError && e.code === "unauthorized");
  await assert.rejects(anonymous.ticket(), (e) => e.code === "unauthorized");
});
