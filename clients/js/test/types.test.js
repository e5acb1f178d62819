// index.d.ts describes the library as the README uses it.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import path from "node:path";
import test from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

test("types: a usage example compiles with tsc --strict against index.d.ts", async () => {
  const tsc = path.join(root, "node_modules", "typescript", "bin", "tsc");
  const r = await promisify(execFile)(process.execPath, [tsc, "-p", path.join(root, "test", "types")], { cwd: root }).catch((e) => e);
  assert.equal(r.code ?? 0, 0, `${r.stdout}${r.stderr}`);
});
