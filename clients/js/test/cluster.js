// A throwaway Postgres cluster from the local binaries, for test runs
// without TEST_DATABASE_URL. As root the cluster runs as the postgres user
// (Postgres refuses root).
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { freePort } from "./helpers.js";

function pgBin() {
  for (const tool of ["pg_config"]) {
    try {
      const dir = execFileSync(tool, ["--bindir"], { encoding: "utf8" }).trim();
      if (fs.existsSync(path.join(dir, "initdb"))) return dir;
    } catch {
      // not on PATH
    }
  }
  const root = "/usr/lib/postgresql";
  const versions = fs.existsSync(root) ? fs.readdirSync(root).sort((a, b) => Number(b) - Number(a)) : [];
  for (const v of versions) {
    const dir = path.join(root, v, "bin");
    if (fs.existsSync(path.join(dir, "initdb"))) return dir;
  }
  throw new Error("no Postgres binaries (initdb): install postgresql or set TEST_DATABASE_URL");
}

export async function startCluster() {
  const bin = pgBin();
  const root = process.getuid?.() === 0;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "pgcast-js-pg-"));
  const asPg = (cmd, args) =>
    root ? execFileSync("runuser", ["-u", "postgres", "--", cmd, ...args], { stdio: "pipe" }) : execFileSync(cmd, args, { stdio: "pipe" });
  if (root) execFileSync("chown", ["postgres", dir]);
  const data = path.join(dir, "data");
  const port = await freePort();
  asPg(path.join(bin, "initdb"), ["-D", data, "-U", "postgres", "-A", "trust", "--no-sync"]);
  asPg(path.join(bin, "pg_ctl"), [
    "-D", data, "-l", path.join(dir, "pg.log"), "-w",
    "-o", `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200`,
    "start",
  ]);
  return {
    url: `postgres://postgres@127.0.0.1:${port}/postgres?sslmode=disable`,
    stop() {
      try {
        asPg(path.join(bin, "pg_ctl"), ["-D", data, "-m", "immediate", "stop"]);
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
    },
  };
}
