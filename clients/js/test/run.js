#!/usr/bin/env node
// Runs the tests against a real pgcast: `node test/run.js` (the Node
// tests) or `node test/run.js --browser` (the console in headless
// Chromium). PGCAST_BIN names the binary (`make test-js` builds it; without
// it this builds one from the repository). TEST_DATABASE_URL names a
// Postgres whose superuser may create databases (each test file creates its
// own js_… database); without it a throwaway cluster is started from the
// local Postgres binaries and removed afterwards.
import { execFileSync, spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { startCluster } from "./cluster.js";

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, "../../..");
const browser = process.argv.includes("--browser");
const env = { ...process.env };
const cleanups = [];

if (!env.PGCAST_BIN) {
  const out = fs.mkdtempSync(path.join(os.tmpdir(), "pgcast-js-bin-"));
  cleanups.push(() => fs.rmSync(out, { recursive: true, force: true }));
  env.PGCAST_BIN = path.join(out, "pgcast");
  console.log(`building ${env.PGCAST_BIN}`);
  execFileSync("go", ["build", "-o", env.PGCAST_BIN, "./cmd/pgcast"], { cwd: repo, stdio: "inherit" });
}
if (!env.TEST_DATABASE_URL) {
  const cluster = await startCluster();
  cleanups.push(() => cluster.stop());
  env.TEST_DATABASE_URL = cluster.url;
  console.log(`throwaway cluster ${cluster.url}`);
}

const dir = browser ? path.join(here, "browser") : here;
const files = fs
  .readdirSync(dir)
  .filter((f) => f.endsWith(".test.js"))
  .sort()
  .map((f) => path.join(dir, f));
const child = spawn(process.execPath, ["--test", "--test-concurrency=2", ...files], { env, stdio: "inherit" });
const code = await new Promise((resolve) => child.on("exit", (c, sig) => resolve(c ?? (sig ? 1 : 0))));
for (const c of cleanups.reverse()) {
  try {
    await c();
  } catch (err) {
    console.error("cleanup:", err);
  }
}
process.exit(code);
