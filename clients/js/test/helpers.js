// Test helpers: a real pgcast on its own database, tokens, SQL, and waiting
// on conditions that callbacks signal (never on a clock alone).
import { execFile, spawn } from "node:child_process";
import crypto from "node:crypto";
import net from "node:net";
import { promisify } from "node:util";
import WebSocket from "ws";
import { createClient } from "../src/index.js";

const run = promisify(execFile);

/** A port free at the time of asking (pgcast restarts on the same one). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = /** @type {net.AddressInfo} */ (srv.address());
      srv.close(() => resolve(port));
    });
  });
}

/** An HS256 JWT signed with secret, as pgcast verifies it. */
export function signToken(secret, { sub = "u1", role, env, ttl = 3600, exp } = {}) {
  const b64 = (v) => Buffer.from(JSON.stringify(v)).toString("base64url");
  const now = Math.floor(Date.now() / 1000);
  const claims = { sub, iat: now, exp: exp ?? now + ttl };
  if (role) claims.role = role;
  if (env) claims.env = env;
  const head = `${b64({ alg: "HS256", typ: "JWT" })}.${b64(claims)}`;
  return `${head}.${crypto.createHmac("sha256", secret).update(head).digest("base64url")}`;
}

/**
 * Signal: conditions re-checked whenever notify() is called. until() waits
 * for one with a bound, and says what it waited for when the bound passes.
 */
export class Signal {
  constructor() {
    this.waiters = new Set();
  }

  notify() {
    for (const w of [...this.waiters]) w.check();
  }

  /**
   * @param {() => boolean} cond
   * @param {number} ms
   * @param {string | (() => string)} what
   */
  until(cond, ms, what) {
    return new Promise((resolve, reject) => {
      const w = {
        check: () => {
          let ok;
          try {
            ok = cond();
          } catch (err) {
            this.waiters.delete(w);
            clearTimeout(timer);
            reject(err);
            return;
          }
          if (ok) {
            this.waiters.delete(w);
            clearTimeout(timer);
            resolve();
          }
        },
      };
      const timer = setTimeout(() => {
        this.waiters.delete(w);
        reject(new Error(`timed out after ${ms} ms waiting for ${typeof what === "function" ? what() : what}`));
      }, ms);
      this.waiters.add(w);
      w.check();
    });
  }
}

/** withTimeout bounds a promise. */
export function withTimeout(promise, ms, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

function dbURL(base, name) {
  const u = new URL(base);
  u.pathname = `/${name}`;
  if (!u.searchParams.has("sslmode")) u.searchParams.set("sslmode", "disable");
  return u.toString();
}

/** psql runs SQL (-c) and returns its unaligned output. */
export async function psql(url, sql) {
  const { stdout } = await run("psql", ["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", sql], {
    maxBuffer: 64 << 20,
  });
  return stdout.trim();
}

/**
 * startStack creates a database js_<name>_<random>, migrates it, and starts
 * `pgcast serve` on it; t.after stops the server and drops the database.
 * @param {import("node:test").TestContext | null} t
 * @param {{name: string, args?: string[]}} opts
 */
export async function startStack(t, { name, args = [] }) {
  const bin = process.env.PGCAST_BIN;
  const base = process.env.TEST_DATABASE_URL;
  if (!bin || !base) throw new Error("PGCAST_BIN and TEST_DATABASE_URL must be set: run the tests with `make test-js` or `node test/run.js`");
  const db = `js_${name}_${crypto.randomBytes(4).toString("hex")}`;
  await psql(dbURL(base, "postgres"), `CREATE DATABASE ${db}`);
  const url = dbURL(base, db);
  const secret = `js-test-${crypto.randomBytes(24).toString("hex")}`;
  const port = await freePort();
  const env = { ...process.env, DATABASE_URL: url, PGCAST_JWT_SECRET: secret };
  await run(bin, ["migrate", "up"], { env });
  const stack = new Stack({ bin, url, base, db, secret, port, env, args });
  await stack.start();
  t?.after(() => stack.destroy());
  return stack;
}

export class Stack {
  constructor(o) {
    Object.assign(this, o);
    this.baseURL = `http://127.0.0.1:${o.port}`;
    this.proc = null;
    this.log = [];
    this.clients = [];
  }

  /**
   * client creates a client of this server (ws for WebSocket, quick
   * backoff), closed before the server stops.
   */
  client(options = {}) {
    const c = createClient({ url: this.baseURL, WebSocket, backoff: { base: 100, max: 2000 }, ...options });
    this.clients.push(c);
    return c;
  }

  /** start runs `pgcast serve` and resolves when it logs "pgcast ready". */
  async start() {
    const proc = spawn(
      this.bin,
      ["serve", "--addr", `127.0.0.1:${this.port}`, "--internal-addr", "off", "--shutdown-grace", "0", ...this.args],
      { env: this.env, stdio: ["ignore", "pipe", "pipe"] },
    );
    this.proc = proc;
    const exited = new Promise((resolve) => proc.on("exit", (code, sig) => resolve({ code, sig })));
    proc.exited = exited;
    await withTimeout(
      new Promise((resolve, reject) => {
        let buf = "";
        const onData = (chunk) => {
          buf += chunk;
          let i;
          while ((i = buf.indexOf("\n")) >= 0) {
            const line = buf.slice(0, i);
            buf = buf.slice(i + 1);
            this.log.push(line);
            if (this.log.length > 400) this.log.shift();
            if (line.includes("pgcast ready")) resolve();
          }
        };
        proc.stdout.setEncoding("utf8").on("data", onData);
        proc.stderr.setEncoding("utf8").on("data", onData);
        exited.then(({ code, sig }) => reject(new Error(`pgcast serve exited (${code ?? sig}) before it was ready:\n${this.log.slice(-20).join("\n")}`)));
      }),
      20000,
      "pgcast serve to be ready",
    );
  }

  /** stop sends signal (SIGTERM: a graceful shutdown, 1001; SIGKILL: a crash) and waits for the exit. */
  async stop(signal = "SIGTERM") {
    const proc = this.proc;
    if (proc === null) return;
    this.proc = null;
    proc.kill(signal);
    try {
      await withTimeout(proc.exited, 15000, `pgcast serve to exit after ${signal}`);
    } catch (err) {
      proc.kill("SIGKILL");
      await proc.exited;
      throw err;
    }
  }

  token(opts) {
    return signToken(this.secret, opts);
  }

  sql(statement) {
    return psql(this.url, statement);
  }

  /** publish writes an event from SQL, in its own transaction. */
  publish(type, payload) {
    return this.sql(`SELECT pgcast.publish('${type}', '${JSON.stringify(payload).replaceAll("'", "''")}'::jsonb)`);
  }

  /**
   * paced starts one psql that publishes `count` events `job.tick` {"n": i}
   * at `rate` per second, each in its own transaction; it resolves when the
   * last is committed.
   */
  paced(count, rate, type = "job.tick") {
    const sql = `DO $$
DECLARE t0 timestamptz := clock_timestamp();
BEGIN
  FOR i IN 1..${count} LOOP
    PERFORM pgcast.publish('${type}', jsonb_build_object('n', i));
    COMMIT;
    PERFORM pg_sleep(greatest(0, extract(epoch FROM t0 + i * interval '${1000 / rate} ms' - clock_timestamp())));
  END LOOP;
END $$`;
    return this.sql(sql);
  }

  async destroy() {
    await Promise.all(this.clients.map((c) => c.close()));
    await this.stop("SIGTERM");
    await psql(dbURL(this.base, "postgres"), `DROP DATABASE IF EXISTS ${this.db} WITH (FORCE)`);
  }
}

/** adminClient options for a stack: an admin token that does not expire during a test. */
export function adminToken(stack) {
  return stack.token({ sub: "admin1", role: "admin", ttl: 3600 });
}
