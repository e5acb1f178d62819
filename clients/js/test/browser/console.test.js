// The console (/console/) in headless Chromium against a real pgcast: sign
// in, subscribe, and see changes made through SQL and REST in the grid
// within a second. Chromium is Debian's (CHROMIUM, default /usr/bin/chromium),
// driven by playwright-core; the screenshot goes to docs/console.png
// (PGCAST_CONSOLE_SCREENSHOT to put it elsewhere).
import assert from "node:assert/strict";
import path from "node:path";
import test from "node:test";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { adminToken, startStack } from "../helpers.js";

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../../..");
const screenshot = process.env.PGCAST_CONSOLE_SCREENSHOT ?? path.join(repo, "docs", "console.png");
const FLAGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

async function launch(t) {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    headless: true,
    args: FLAGS,
    timeout: 30000,
  });
  t.after(() => browser.close());
  const context = await browser.newContext({ viewport: { width: 1480, height: 860 } });
  const page = await context.newPage();
  const problems = [];
  page.on("pageerror", (err) => problems.push(`page error: ${err.message}`));
  page.on("console", (msg) => {
    // The browser logs every 404; the console's probe of /console/dev-token
    // gets one from pgcast serve by design (see the response check below).
    if (msg.type() === "error" && !msg.text().includes("404 (Not Found)")) problems.push(`console: ${msg.text()}`);
  });
  page.on("response", (res) => {
    if (res.status() >= 400 && !new URL(res.url()).pathname.endsWith("/console/dev-token")) problems.push(`${res.status()} ${res.url()}`);
  });
  page.setDefaultTimeout(10000);
  // Closed before the server stops (the test's end), so that a stopping
  // server is not reported as the page's problem.
  return { page, problems, close: () => browser.close() };
}

async function ordersCollection(stack) {
  const admin = stack.client({ token: () => adminToken(stack) });
  const cls = await admin.createCollection({
    name: "orders",
    fields: [
      { name: "item", type: "string", required: true },
      { name: "status", type: "string" },
      { name: "qty", type: "integer" },
      { name: "total", type: "float" },
    ],
    permissions: { read: "public", create: "public", update: "public", delete: "public" },
  });
  const field = Object.fromEntries(cls.fields.map((f) => [f.name, f.id]));
  return { admin, cls, field, orders: admin.collection("orders") };
}

test("console: sign in, subscribe; rows inserted by SQL and changed by REST show in the grid within 1 s, the count follows, Catalyst frames arrive", async (t) => {
  const stack = await startStack(t, { name: "console", args: ["--message-time", "200ms"] });
  const { cls, field, orders } = await ordersCollection(stack);
  const seed = [
    { item: "espresso beans", status: "paid", qty: 2, total: 31.9 },
    { item: "grinder", status: "new", qty: 1, total: 129 },
    { item: "filter papers", status: "shipped", qty: 6, total: 17.4 },
    { item: "kettle", status: "paid", qty: 1, total: 64.5 },
    { item: "scale", status: "new", qty: 1, total: 42 },
    { item: "tamper", status: "paid", qty: 1, total: 24.9 },
    { item: "cups (set of 4)", status: "shipped", qty: 2, total: 38 },
    { item: "descaler", status: "new", qty: 3, total: 14.7 },
  ];
  const seeded = [];
  for (const s of seed) seeded.push(await orders.create(s));

  const { page, problems, close } = await launch(t);
  await page.goto(`${stack.baseURL}/console/`);
  await page.fill("#token", adminToken(stack));
  await page.click("#token-form button[type=submit]");
  await page.waitForSelector("#main:not([hidden])");
  await page.waitForSelector('#identity .sub:text("admin1")');

  // Channels.
  for (const ch of ["orders.*", "system.*"]) {
    await page.fill("#channel", ch);
    await page.click("#channel-form button[type=submit]");
    await page.waitForSelector(`#subscriptions li.live[data-channel="${ch}"]`);
  }
  // The grid.
  await page.fill("#grid-collection", "orders");
  await page.click("#grid-form button[type=submit]");
  await page.waitForFunction(() => document.querySelectorAll("#grid tbody tr").length === 8);
  assert.equal(await page.getAttribute("#grid-count", "data-count"), "8");
  // The Catalyst panel.
  await page.fill("#catalyst-classes", String(cls.id));
  await page.click("#catalyst-toggle");
  await page.waitForSelector('#catalyst-note:text("streaming")');

  // A row inserted with SQL appears, and the count changes, within 1 s.
  const cells = JSON.stringify({ [field.item]: "milk jug", [field.status]: "new", [field.qty]: 1, [field.total]: 12.5 });
  const id = Number(await stack.sql(`INSERT INTO pgcast.object_records (object_class_id, cells) VALUES (${cls.id}, '${cells}') RETURNING id`));
  let t0 = Date.now();
  await page.waitForSelector(`#grid tr[data-id="${id}"] td[data-col="item"]:text("milk jug")`, { timeout: 1000 });
  await page.waitForFunction(() => document.querySelector("#grid-count").dataset.count === "9", null, { timeout: Math.max(1, 1000 - (Date.now() - t0)) });
  const insertMs = Date.now() - t0;

  // A row deleted with SQL disappears, and the count changes, within 1 s.
  await stack.sql(`DELETE FROM pgcast.object_records WHERE id = ${seeded[1].id}`);
  t0 = Date.now();
  await page.waitForSelector(`#grid tr[data-id="${seeded[1].id}"]`, { state: "detached", timeout: 1000 });
  await page.waitForFunction(() => document.querySelector("#grid-count").dataset.count === "8", null, { timeout: Math.max(1, 1000 - (Date.now() - t0)) });

  // Cells changed through REST flash with their new values within 1 s.
  await orders.update(seeded[0].id, { status: "shipped", qty: 3 });
  t0 = Date.now();
  await page.waitForSelector(`#grid tr[data-id="${seeded[0].id}"] td[data-col="qty"].flash:text("3")`, { timeout: 1000 });
  assert.equal(await page.textContent(`#grid tr[data-id="${seeded[0].id}"] td[data-col="status"]`), "shipped");
  assert.ok(await page.$(`#grid tr[data-id="${seeded[0].id}"] td[data-col="status"].flash`), "the status cell flashes");
  assert.equal(await page.$(`#grid tr[data-id="${seeded[0].id}"] td[data-col="item"].flash`), null, "an unchanged cell does not");
  const updateMs = Date.now() - t0;

  // The channel shows the events with their payloads; Catalyst its frames.
  await page.waitForSelector('#events li[data-type="orders.updated"] pre.json:has-text("shipped")');
  await page.waitForSelector('#events li[data-type="orders.created"] pre.json:has-text("milk jug")');
  await page.waitForSelector('#frames li.frame .item[data-event="object_record_value_changed"]');
  await page.waitForSelector('#frames li.frame .item[data-event="object_records_count_changed"]');
  await orders.update(seeded[3].id, { total: 59.9 }); // a flash for the picture
  await page.waitForSelector(`#grid tr[data-id="${seeded[3].id}"] td[data-col="total"].flash:text("59.9")`, { timeout: 1000 });
  await page.screenshot({ path: screenshot });
  t.diagnostic(`insert → row and count: ${insertMs} ms; update → flashing cells: ${updateMs} ms; screenshot: ${screenshot}`);
  await close();
  assert.deepEqual(problems, []);
});

test("console: the dev-token button shows only when GET /console/dev-token answers a token, and signs in with it", async (t) => {
  const stack = await startStack(t, { name: "devtoken" });
  const { page, problems, close } = await launch(t);
  await page.goto(`${stack.baseURL}/console/`);
  // pgcast serve answers 404 there: no button.
  await page.waitForFunction(() => document.readyState === "complete");
  await page.evaluate(() => fetch("/console/dev-token").then((r) => r.status)).then((s) => assert.equal(s, 404));
  assert.equal(await page.isHidden("#dev-token"), true);

  // The contract `pgcast dev` implements: 200 {"token": "<jwt>"}.
  const token = stack.token({ sub: "dev-user", role: "admin" });
  let minted = 0;
  await page.route("**/console/dev-token", (route) => {
    minted++;
    return route.fulfill({ status: 200, contentType: "application/json", body: JSON.stringify({ token }) });
  });
  await page.reload();
  await page.waitForSelector("#dev-token:not([hidden])");
  await page.click("#dev-token");
  await page.waitForSelector('#identity .sub:text("dev-user")');
  assert.ok(minted >= 2, "asked once to show the button, once to sign in");
  // Signed in for real: an admin may list collections.
  await page.fill("#channel", "system.*");
  await page.click("#channel-form button[type=submit]");
  await page.waitForSelector('#subscriptions li.live[data-channel="system.*"]');
  // Sign out forgets the token.
  await page.click("#signout");
  await page.waitForSelector("#signin:not([hidden])");
  assert.equal(await page.evaluate(() => sessionStorage.length), 0);
  await close();
  assert.deepEqual(problems, []);
});

test("console: anonymous, an unknown channel shows the server's error and a public one goes live", async (t) => {
  const stack = await startStack(t, { name: "anon" });
  const { page, close } = await launch(t);
  await page.goto(`${stack.baseURL}/console/`);
  await page.click("#anonymous");
  await page.waitForSelector('#identity .role:text("anonymous")');
  await page.fill("#channel", "nope.*");
  await page.click("#channel-form button[type=submit]");
  await page.waitForSelector('#subscriptions li.failed[data-channel="nope.*"]');
  await page.waitForSelector('#events li.error:has-text("unknown_namespace")');
  await page.fill("#channel", "system.*");
  await page.click("#channel-form button[type=submit]");
  await page.waitForSelector('#subscriptions li.live[data-channel="system.*"]');
  await stack.publish("system.note", { hello: "world" });
  await page.waitForSelector('#events li[data-type="system.note"] pre.json:has-text("world")');
  await close();
});

test("console: a watched table's grid fills as its rows change, and its count comes from Catalyst count items", async (t) => {
  const stack = await startStack(t, { name: "watchgrid", args: ["--message-time", "200ms"] });
  await stack.sql("CREATE TABLE public.shipments (id bigint PRIMARY KEY, carrier text NOT NULL, status text NOT NULL DEFAULT 'packed')");
  await stack.sql("INSERT INTO public.shipments VALUES (1, 'ups', 'packed'), (2, 'dhl', 'sent')");
  const admin = stack.client({ token: () => adminToken(stack) });
  const res = await fetch(`${stack.baseURL}/api/watches/shipments`, {
    method: "PUT",
    headers: { Authorization: `Bearer ${adminToken(stack)}`, "Content-Type": "application/json" },
    body: JSON.stringify({ table: "public.shipments", read: "public", counts: true }),
  });
  assert.equal(res.status, 201, await res.text());
  assert.ok((await admin.listCollections()).some((c) => c.name === "shipments"));

  const { page, problems, close } = await launch(t);
  await page.goto(`${stack.baseURL}/console/`);
  await page.fill("#token", adminToken(stack));
  await page.click("#token-form button[type=submit]");
  await page.waitForSelector("#main:not([hidden])");
  await page.fill("#grid-collection", "shipments");
  await page.click("#grid-form button[type=submit]");
  await page.waitForSelector('#grid-note:has-text("watched table")');
  await page.waitForSelector('#grid th[data-col="carrier"]');

  await stack.sql("INSERT INTO public.shipments VALUES (3, 'fedex', 'packed')");
  let t0 = Date.now();
  await page.waitForSelector('#grid tr[data-id="3"] td[data-col="carrier"]:text("fedex")', { timeout: 1000 });
  await page.waitForFunction(() => document.querySelector("#grid-count").dataset.count === "3", null, { timeout: Math.max(1, 1000 - (Date.now() - t0)) });
  await stack.sql("UPDATE public.shipments SET status = 'sent' WHERE id = 3");
  t0 = Date.now();
  await page.waitForSelector('#grid tr[data-id="3"] td[data-col="status"].flash:text("sent")', { timeout: 1000 });
  await stack.sql("DELETE FROM public.shipments WHERE id = 3");
  t0 = Date.now();
  await page.waitForSelector('#grid tr[data-id="3"]', { state: "detached", timeout: 1000 });
  await page.waitForFunction(() => document.querySelector("#grid-count").dataset.count === "2", null, { timeout: Math.max(1, 1000 - (Date.now() - t0)) });
  await close();
  // The REST list of a watch answers 409 watched_table, which the grid expects.
  assert.deepEqual(problems.filter((p) => !p.startsWith("409 ") && !p.includes("409 (Conflict)")), []);
});
