// Pieces of the client that need no server.
import assert from "node:assert/strict";
import test from "node:test";
import { ApiError, backoffDelay, channelMatches, channelsOverlap, comparePositions, createClient } from "../src/index.js";
import { apiErrorFrom } from "../src/errors.js";

test("backoff: full jitter below min(max, base·2^attempt)", () => {
  const opts = { base: 500, max: 30000 };
  assert.equal(backoffDelay(0, opts, () => 0), 0);
  assert.equal(backoffDelay(0, opts, () => 0.999999), 499.9995);
  assert.equal(backoffDelay(3, opts, () => 0.5), 2000);
  assert.equal(backoffDelay(10, opts, () => 0.5), 15000);
  assert.equal(backoffDelay(1000, opts, () => 1), 30000);
  for (let i = 0; i < 1000; i++) {
    const d = backoffDelay(i % 12, opts);
    assert.ok(d >= 0 && d < Math.min(30000, 500 * 2 ** (i % 12)));
  }
});

test("channels: matching and overlap", () => {
  assert.ok(channelMatches("posts.*", "posts.created"));
  assert.ok(!channelMatches("posts.*", "postsx.created"));
  assert.ok(channelMatches("posts.created", "posts.created"));
  assert.ok(!channelMatches("posts.created", "posts.updated"));
  assert.ok(channelMatches("system.collection.*", "system.collection.created"));
  const overlap = [
    ["posts.*", "posts.created", true],
    ["posts.created", "posts.*", true],
    ["posts.*", "posts.*", true],
    ["system.*", "system.collection.*", true],
    ["posts.created", "posts.updated", false],
    ["posts.*", "orders.*", false],
    ["posts.*", "postsx.created", false],
    ["job.*", "job", false],
  ];
  for (const [a, b, want] of overlap) assert.equal(channelsOverlap(a, b), want, `${a} / ${b}`);
});

test("positions compare as numbers", () => {
  assert.equal(comparePositions("evt_9", "evt_10"), -1);
  assert.equal(comparePositions("evt_10", "evt_9"), 1);
  assert.equal(comparePositions("evt_123456789012345678", "evt_123456789012345678"), 0);
  assert.equal(comparePositions("evt_900719925474099300", "evt_900719925474099299"), 1);
});

test("error bodies: the server's shape, and anything else", () => {
  const e = apiErrorFrom(400, '{"error":{"code":"validation_error","message":"bad","details":[{"field":"a","rule":"required","message":"a is required"}]}}', null);
  assert.ok(e instanceof ApiError);
  assert.deepEqual([e.status, e.code, e.message, e.details[0].field], [400, "validation_error", "bad", "a"]);
  const p = apiErrorFrom(502, "<html>bad gateway</html>", null);
  assert.deepEqual([p.status, p.code, p.message], [502, "http_502", "HTTP 502"]);
  assert.equal(apiErrorFrom(429, '{"error":{"code":"too_many_requests","message":"slow"}}', "1").retryAfter, 1);
});

test("options are checked when the client is made", () => {
  assert.throws(() => createClient({}), /url is required/);
  assert.throws(() => createClient({ url: "ftp://x" }), /http/);
  assert.throws(() => createClient({ url: "http://x", token: 42 }), TypeError);
  const c = createClient({ url: "http://127.0.0.1:1", WebSocket: undefined });
  if (typeof globalThis.WebSocket !== "function") {
    assert.throws(() => c.subscribe("job.*", () => {}), (e) => e.code === "no_websocket");
  }
});
