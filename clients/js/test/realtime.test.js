// /api/realtime through the client, against a real pgcast.
import assert from "node:assert/strict";
import test from "node:test";
import { ConnectionError, RealtimeError } from "../src/index.js";
import { Signal, adminToken, startStack, withTimeout } from "./helpers.js";

/** collector subscribes to job.* and counts job.tick events by n. */
function collector() {
  const sig = new Signal();
  const seen = new Map();
  const types = [];
  const onEvent = (ev) => {
    types.push(ev.type);
    if (ev.type === "job.tick") seen.set(ev.payload.n, (seen.get(ev.payload.n) ?? 0) + 1);
    sig.notify();
  };
  const check = (count) => {
    const missing = [];
    for (let n = 1; n <= count; n++) if (!seen.has(n)) missing.push(n);
    const repeated = [...seen].filter(([, c]) => c > 1).map(([n]) => n);
    assert.deepEqual({ missing: missing.slice(0, 20), missingCount: missing.length, repeated: repeated.slice(0, 20) }, { missing: [], missingCount: 0, repeated: [] });
    assert.equal(seen.size, count);
  };
  return { sig, seen, types, onEvent, check };
}

test("every event exactly once across a crash (SIGKILL) and a graceful restart (SIGTERM) of pgcast serve, at 200 events/s", async (t) => {
  const stack = await startStack(t, { name: "restart" });
  const c = collector();
  const statuses = [];
  const client = stack.client({
    token: () => stack.token({ sub: "u1" }),
    onConnectionChange: (e) => {
      statuses.push(e);
      c.sig.notify();
    },
  });
  const unsubscribe = client.subscribe("job.*", c.onEvent);
  await withTimeout(unsubscribe.ready, 10000, "the subscription");

  const N = 3000; // 15 s at 200/s
  const writer = stack.paced(N, 200);
  await c.sig.until(() => c.seen.size >= 400, 20000, () => `400 events before the crash (have ${c.seen.size})`);
  await stack.stop("SIGKILL");
  await stack.start();
  await c.sig.until(() => c.seen.size >= 1400, 30000, () => `1400 events before the restart (have ${c.seen.size})`);
  await stack.stop("SIGTERM");
  await stack.start();
  await withTimeout(writer, 60000, "the writer");
  await stack.publish("job.done", {});
  // One writer, one transaction at a time: job.done is the last position,
  // so once it is here every earlier event (and any repeat) would be too.
  await c.sig.until(() => c.types.includes("job.done"), 30000, () => `job.done (have ${c.seen.size} of ${N})`);
  c.check(N);

  assert.ok(statuses.some((s) => s.state === "closed" && s.code === 1006 && s.willRetry), "the crash was seen as 1006");
  assert.ok(statuses.some((s) => s.state === "closed" && s.code === 1001 && s.delay === 0), "1001 reconnected at once");
  assert.ok(statuses.filter((s) => s.state === "open" && s.reconnect).length >= 2, "reconnected twice");
  assert.equal(unsubscribe.lastEventId !== null, true);
});

test("a token that expires: close 4001, the provider is called again, nothing lost or repeated", async (t) => {
  const stack = await startStack(t, { name: "expiry" });
  const c = collector();
  const statuses = [];
  let calls = 0;
  const client = stack.client({
    token: async () => {
      calls++;
      return stack.token({ sub: "u1", ttl: 2 });
    },
    onConnectionChange: (e) => statuses.push(e),
  });
  const unsubscribe = client.subscribe("job.*", c.onEvent);
  await withTimeout(unsubscribe.ready, 10000, "the subscription");
  const N = 300; // 6 s at 50/s: tokens of 1–2 s expire 3 times or more
  await withTimeout(stack.paced(N, 50), 30000, "the writer");
  await stack.publish("job.done", {});
  await c.sig.until(() => c.types.includes("job.done"), 20000, () => `job.done (have ${c.seen.size} of ${N})`);
  c.check(N);
  const expiries = statuses.filter((s) => s.state === "closed" && s.code === 4001).length;
  assert.ok(expiries >= 2, `closed with 4001 ${expiries} times`);
  assert.ok(calls >= expiries + 1, `the provider was called ${calls} times for ${expiries} expiries`);
});

test("a token refused at the handshake (401): the provider is called again and the subscription goes on", async (t) => {
  const stack = await startStack(t, { name: "refused" });
  let calls = 0;
  const client = stack.client({
    token: () => (++calls === 1 ? stack.token({ sub: "u1", exp: Math.floor(Date.now() / 1000) - 60 }) : stack.token({ sub: "u1" })),
  });
  const c = collector();
  const unsubscribe = client.subscribe("job.*", c.onEvent);
  await withTimeout(unsubscribe.ready, 10000, "the subscription");
  assert.equal(calls, 2);
  await stack.publish("job.tick", { n: 1 });
  await c.sig.until(() => c.seen.size === 1, 10000, "the event");

  // A token given as a string cannot be replaced: the subscription ends, no retries.
  const fixed = stack.client({ token: stack.token({ sub: "u1", exp: Math.floor(Date.now() / 1000) - 60 }) });
  const sub = fixed.subscribe("job.*", { onError: () => {} }, () => {});
  await assert.rejects(sub.ready, (e) => e.code === "unauthorized" && e.status === 401);
  assert.equal(fixed.realtime.conns.size, 0);
});

test("reset reaches the caller when since is older than the log's retention, then live events follow", async (t) => {
  const stack = await startStack(t, { name: "reset" });
  for (let i = 0; i < 3; i++) await stack.publish("job.old", { i });
  // What the pruner does after --retention: delete entries and move the horizon.
  await stack.sql(`BEGIN;
UPDATE pgcast.event_log SET pruned_through = (SELECT max(id) FROM pgcast.events);
DELETE FROM pgcast.events WHERE id <= (SELECT pruned_through FROM pgcast.event_log);
COMMIT;`);
  const client = stack.client({ token: () => stack.token({ sub: "u1" }) });
  const sig = new Signal();
  let resets = 0;
  const got = [];
  const unsubscribe = client.subscribe(
    "job.*",
    {
      since: "evt_1",
      onReset: () => {
        resets++;
        sig.notify();
      },
    },
    (ev) => {
      got.push(ev.type);
      sig.notify();
    },
  );
  await withTimeout(unsubscribe.ready, 10000, "the subscription");
  await sig.until(() => resets === 1, 10000, "the reset");
  await stack.publish("job.new", {});
  await sig.until(() => got.includes("job.new"), 10000, "the live event");
  assert.deepEqual(got, ["job.new"]);
  assert.equal(resets, 1);
});

test("a quiet subscription resumes from the client's highest position; one with nothing to resume from gets a reset", async (t) => {
  const stack = await startStack(t, { name: "quiet" });
  const sig = new Signal();
  const mk = () => stack.client({ token: () => stack.token({ sub: "u1" }) });
  const busy = mk();
  const fresh = mk();
  const jobs = [];
  const busyJobs = busy.subscribe("job.*", (ev) => {
    jobs.push(ev);
    sig.notify();
  });
  await withTimeout(busyJobs.ready, 10000, "job.*");
  await stack.publish("job.tick", { n: 1 });
  await sig.until(() => jobs.length === 1, 10000, "job.tick");
  const quiet = { events: [], resets: 0 };
  const quietSub = busy.subscribe("system.*", { onReset: () => quiet.resets++ }, (ev) => {
    quiet.events.push(ev);
    sig.notify();
  });
  const lonely = { events: [], resets: 0 };
  const lonelySub = fresh.subscribe("system.*", { onReset: () => (lonely.resets++, sig.notify()) }, (ev) => {
    lonely.events.push(ev);
    sig.notify();
  });
  await withTimeout(Promise.all([quietSub.ready, lonelySub.ready]), 10000, "system.*");

  await stack.stop("SIGKILL");
  await stack.publish("system.note", { while: "down" });
  await stack.start();
  await sig.until(() => quiet.events.length === 1, 20000, "system.note on the quiet subscription");
  await sig.until(() => lonely.resets === 1, 20000, "the reset of the subscription that had nothing to resume from");
  assert.equal(quiet.events[0].payload.while, "down");
  assert.equal(quiet.resets, 0);
  assert.equal(lonely.events.length, 0);
});

test("overlapping channels get each event once per subscription (they use separate sockets)", async (t) => {
  const stack = await startStack(t, { name: "overlap" });
  const client = stack.client({ token: () => stack.token({ sub: "u1" }) });
  const sig = new Signal();
  const all = [];
  const ticks = [];
  const a = client.subscribe("job.*", (ev) => (all.push(ev.type), sig.notify()));
  const b = client.subscribe("job.tick", (ev) => (ticks.push(ev.type), sig.notify()));
  const other = client.subscribe("system.*", () => {});
  await withTimeout(Promise.all([a.ready, b.ready, other.ready]), 10000, "the subscriptions");
  assert.equal(client.realtime.conns.size, 2, "job.* and job.tick on two sockets, system.* with one of them");
  await stack.publish("job.tick", { n: 1 });
  await stack.publish("job.other", {});
  await sig.until(() => all.length === 2 && ticks.length === 1, 10000, "the events");
  assert.deepEqual(all, ["job.tick", "job.other"]);
  assert.deepEqual(ticks, ["job.tick"]);
});

test("subscribe errors are RealtimeErrors with the server's code; a bad since is refused at once", async (t) => {
  const stack = await startStack(t, { name: "suberr" });
  const client = stack.client({}); // anonymous
  const errors = [];
  const unknown = client.subscribe("nope.*", { onError: (e) => errors.push(e) }, () => {});
  await assert.rejects(unknown.ready, (e) => e instanceof RealtimeError && e.code === "unknown_namespace");
  assert.equal(errors.length, 1);
  assert.equal(errors[0].code, "unknown_namespace");
  const badFilter = client.subscribe("system.*", { filter: "name=eqq.x", onError: () => {} }, () => {});
  await assert.rejects(badFilter.ready, (e) => e instanceof RealtimeError && e.code === "invalid_filter" && /unknown operator/.test(e.message));
  const bad = client.subscribe("no spaces", { onError: () => {} }, () => {});
  await assert.rejects(bad.ready, (e) => e instanceof RealtimeError && e.code === "invalid_channel");
  assert.throws(() => client.subscribe("job.*", { since: "123" }, () => {}), TypeError);
  // Anonymous clients get public channels.
  const ok = client.subscribe("system.*", () => {});
  await withTimeout(ok.ready, 10000, "system.*");
});

test("close 1009 (a message over 4 KiB) ends the subscription with a ConnectionError and no reconnect", async (t) => {
  const stack = await startStack(t, { name: "toobig" });
  const statuses = [];
  const client = stack.client({ onConnectionChange: (e) => statuses.push(e) });
  const sub = client.subscribe("system.*", { filter: `name=eq.${"x".repeat(5000)}`, onError: () => {} }, () => {});
  await assert.rejects(sub.ready, (e) => e instanceof ConnectionError && e.closeCode === 1009);
  assert.deepEqual(statuses.at(-1), { endpoint: "realtime", state: "closed", code: 1009, reason: "", willRetry: false });
  assert.equal(client.realtime.conns.size, 0, "no socket and no reconnect timer are left");
});

test("close 1008 (a message flood) ends the subscription with a ConnectionError and no reconnect", async (t) => {
  const stack = await startStack(t, { name: "flood", args: ["--client-message-rate", "1", "--client-message-burst", "1"] });
  const statuses = [];
  // A heartbeat every 5 ms is a flood at one message per second.
  const client = stack.client({ heartbeat: 5, onConnectionChange: (e) => statuses.push(e) });
  const sig = new Signal();
  const errors = [];
  client.subscribe("system.*", { onError: (e) => (errors.push(e), sig.notify()) }, () => {});
  await sig.until(() => errors.length > 0, 10000, "the subscription's end");
  assert.ok(errors[0] instanceof ConnectionError && errors[0].closeCode === 1008, String(errors[0]));
  assert.equal(statuses.at(-1).willRetry, false);
  assert.equal(client.realtime.conns.size, 0, "no socket and no reconnect timer are left");
});

test("close() leaves no timer or socket behind, even while waiting to reconnect", async (t) => {
  const stack = await startStack(t, { name: "close" });
  const ours = () => process.getActiveResourcesInfo().filter((r) => r === "Timeout" || r === "TCPSocketWrap").length;
  const before = ours();
  const sig = new Signal();
  const statuses = [];
  const client = stack.client({
    token: () => adminToken(stack),
    backoff: { base: 60000, max: 60000 },
    onConnectionChange: (e) => (statuses.push(e), sig.notify()),
  });
  const sub = client.subscribe("job.*", () => {});
  const items = client.objectRecords({}, () => {});
  await withTimeout(Promise.all([sub.ready, items.ready]), 10000, "both streams");
  assert.ok(ours() > before);
  await stack.stop("SIGKILL");
  await sig.until(() => statuses.filter((s) => s.state === "closed" && s.willRetry && s.delay > 0).length === 2, 10000, "both streams waiting to reconnect");
  await client.close();
  assert.equal(ours(), before, `resources left: ${process.getActiveResourcesInfo().join(", ")}`);
  assert.throws(() => client.subscribe("job.*", () => {}), (e) => e.code === "closed");
  await stack.start(); // for the stack's own teardown
});

test(
  "filter: subscribe with filter status=eq.paid gets only the paid orders",
  async (t) => {
    const stack = await startStack(t, { name: "filter" });
    const admin = stack.client({ token: () => adminToken(stack) });
    await admin.createCollection({
      name: "orders",
      fields: [
        { name: "item", type: "string", required: true },
        { name: "status", type: "string" },
      ],
      permissions: { read: "public", create: "public" },
    });
    const sig = new Signal();
    const got = [];
    const sub = admin.subscribe("orders.*", { filter: "status=eq.paid" }, (ev) => (got.push(ev.payload), sig.notify()));
    await withTimeout(sub.ready, 10000, "the subscription");
    const orders = admin.collection("orders");
    await orders.create({ item: "a", status: "new" });
    await orders.create({ item: "b", status: "paid" });
    await orders.create({ item: "c", status: "new" });
    await orders.create({ item: "d", status: "paid" });
    await sig.until(() => got.some((p) => p.item === "d"), 10000, "the last paid order");
    assert.deepEqual(got.map((p) => p.item), ["b", "d"]);
  },
);
