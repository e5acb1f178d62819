// Collections REST through the client, against a real pgcast.
import assert from "node:assert/strict";
import test from "node:test";
import { ApiError } from "../src/index.js";
import { adminToken, startStack } from "./helpers.js";

/** isApiError checks an ApiError's status, code and (optionally) its first detail. */
function isApiError(status, code, detail) {
  return (e) => {
    assert.ok(e instanceof ApiError, `not an ApiError: ${e}`);
    assert.equal(e.status, status);
    assert.equal(e.code, code);
    assert.equal(typeof e.message, "string");
    assert.ok(Array.isArray(e.details));
    if (detail) assert.deepEqual({ field: e.details[0]?.field, rule: e.details[0]?.rule }, detail);
    return true;
  };
}

test("collection list/get/create/update/delete, and the server's errors as ApiErrors", async (t) => {
  const stack = await startStack(t, { name: "rest" });
  const admin = stack.client({ token: () => adminToken(stack) });
  await admin.createCollection({
    name: "notes",
    fields: [
      { name: "title", type: "string", required: true },
      { name: "n", type: "integer" },
    ],
    permissions: { create: "authenticated", read: "owner", update: "owner", delete: "owner" },
  });
  const alice = stack.client({ token: () => stack.token({ sub: "alice" }) }).collection("notes");
  const bob = stack.client({ token: () => stack.token({ sub: "bob" }) }).collection("notes");
  const anonymous = stack.client().collection("notes");

  const a = await alice.create({ title: "one", n: 1 });
  assert.equal(a.title, "one");
  assert.equal(typeof a.id, "number");
  const b = await alice.create({ title: "two" });
  assert.deepEqual((await alice.list()).items.map((r) => r.id), [b.id, a.id]);
  assert.deepEqual((await alice.list({ limit: 1, before: b.id })).items.map((r) => r.id), [a.id]);
  assert.equal((await alice.get(a.id)).title, "one");
  const updated = await alice.update(a.id, { n: 2 });
  assert.deepEqual([updated.title, updated.n], ["one", 2]);
  assert.equal(await alice.delete(b.id), undefined);
  await assert.rejects(alice.get(b.id), isApiError(404, "not_found"));

  await assert.rejects(alice.create({ n: 1 }), isApiError(400, "validation_error", { field: "title", rule: "required" }));
  await assert.rejects(alice.create({ title: "x", extra: 1 }), isApiError(400, "validation_error", { field: "extra", rule: "unknown" }));
  await assert.rejects(alice.list({ limit: 5000 }), isApiError(400, "validation_error", { field: "limit", rule: "range" }));
  await assert.rejects(alice.get("x"), isApiError(400, "bad_request"));
  await assert.rejects(anonymous.create({ title: "x" }), isApiError(401, "unauthorized"));
  await assert.rejects(bob.update(a.id, { n: 3 }), isApiError(403, "forbidden"));
  await assert.rejects(bob.delete(a.id), isApiError(403, "forbidden"));
  await assert.rejects(stack.client({ token: () => adminToken(stack) }).collection("nope").list(), isApiError(404, "not_found"));
  await assert.rejects(
    admin.createCollection({ name: "notes", fields: [] }),
    isApiError(409, "validation_error", { field: "name", rule: "unique" }),
  );
  assert.ok((await admin.listCollections()).some((c) => c.name === "notes"));
  await assert.rejects(stack.client({ token: () => stack.token({ sub: "bob" }) }).listCollections(), isApiError(403, "forbidden"));
  assert.throws(() => admin.collection("Bad-Name"), TypeError);
});

test("a REST call refused with 401 asks the provider again and is sent once more", async (t) => {
  const stack = await startStack(t, { name: "rest401" });
  const admin = stack.client({ token: () => adminToken(stack) });
  await admin.createCollection({ name: "posts", fields: [{ name: "title", type: "string" }], permissions: { create: "authenticated", read: "authenticated" } });
  let calls = 0;
  const expired = stack.token({ sub: "u1", exp: Math.floor(Date.now() / 1000) - 60 });
  const client = stack.client({ token: () => (++calls === 1 ? expired : stack.token({ sub: "u1" })) });
  const rec = await client.collection("posts").create({ title: "hi" });
  assert.equal(rec.title, "hi");
  assert.equal(calls, 2);
  // A provider that keeps giving a refused token: one retry, then the 401.
  const stuck = stack.client({ token: () => expired });
  await assert.rejects(stuck.collection("posts").list(), isApiError(401, "unauthorized"));
  // A fixed string cannot be refreshed: the 401 at once.
  await assert.rejects(stack.client({ token: expired }).collection("posts").list(), isApiError(401, "unauthorized"));
});

test("publish and network errors", async (t) => {
  const stack = await startStack(t, { name: "publish" });
  const admin = stack.client({ token: () => adminToken(stack) });
  const ev = await admin.publish("job.completed", { name: "nightly" });
  assert.match(ev.id, /^evt_\d+$/);
  assert.deepEqual([ev.type, ev.payload], ["job.completed", { name: "nightly" }]);
  await assert.rejects(admin.publish("nope.x", {}), isApiError(400, "validation_error"));
  await stack.stop();
  await assert.rejects(admin.collection("posts").list(), isApiError(0, "network_error"));
  await stack.start();
});
