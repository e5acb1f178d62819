// npm pack gives an installable package holding the library and nothing else.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import test from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

const run = promisify(execFile);
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

test("npm pack: the tarball holds src/, README and package.json, and installs and imports in a fresh project", async (t) => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "pgcast-js-pack-"));
  t.after(() => fs.rmSync(tmp, { recursive: true, force: true }));
  const { stdout } = await run("npm", ["pack", "--json", "--pack-destination", tmp], { cwd: root });
  const [info] = JSON.parse(stdout);
  const files = info.files.map((f) => f.path).sort();
  const src = fs.readdirSync(path.join(root, "src")).map((f) => `src/${f}`);
  assert.deepEqual(files, ["README.md", "package.json", ...src].sort());
  assert.equal(info.name, "@pgcast/client");

  const proj = path.join(tmp, "app");
  fs.mkdirSync(proj);
  fs.writeFileSync(path.join(proj, "package.json"), JSON.stringify({ name: "app", private: true, type: "module" }));
  await run("npm", ["install", "--offline", "--no-audit", "--no-fund", path.join(tmp, info.filename)], { cwd: proj });
  fs.writeFileSync(
    path.join(proj, "main.js"),
    `import { createClient, ApiError } from "@pgcast/client";
const c = createClient({ url: "http://127.0.0.1:1" });
const err = await c.collection("posts").list().catch((e) => e);
console.log(JSON.stringify({ api: err instanceof ApiError, code: err.code }));
await c.close();`,
  );
  const out = await run(process.execPath, ["main.js"], { cwd: proj });
  assert.deepEqual(JSON.parse(out.stdout), { api: true, code: "network_error" });
  const pkg = JSON.parse(fs.readFileSync(path.join(proj, "node_modules", "@pgcast", "client", "package.json"), "utf8"));
  assert.deepEqual(pkg.dependencies ?? {}, {}, "no runtime dependencies");
});
