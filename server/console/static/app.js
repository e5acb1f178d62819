// The console: sign in, then three panels on one client of the public APIs.
import { Channels } from "./channels.js";
import { claims, devToken, expired, saved } from "./auth.js";
import { h } from "./dom.js";
import { Frames } from "./frames.js";
import { LiveGrid } from "./grid.js";
import { createClient } from "./lib/index.js";

const $ = (id) => document.getElementById(id);

class App {
  constructor() {
    this.token = null; // null: anonymous
    this.dev = false; // the server mints development tokens
    this.current = null;
    this.collections = new Map(); // name → {id, fields, table?} (admins only)
    this.conn = new Map(); // endpoint → state
    this.channels = new Channels(this);
    this.grid = new LiveGrid(this);
    this.frames = new Frames(this);

    $("token-form").addEventListener("submit", (e) => {
      e.preventDefault();
      const t = $("token").value.trim();
      if (t) this.signIn(t);
    });
    $("anonymous").addEventListener("click", () => this.signIn(null));
    $("dev-token").addEventListener("click", async () => {
      const t = await devToken();
      if (t) this.signIn(t);
      else this.signInError("the server did not mint a token");
    });
    $("signout").addEventListener("click", () => this.signOut());
  }

  async start() {
    const t = saved.get();
    // Only a development server answers /console/dev-token.
    devToken().then((tok) => {
      this.dev = tok !== null;
      $("dev-token").hidden = !this.dev;
    });
    if (t !== null && !expired(t)) await this.signIn(t);
  }

  client() {
    return this.current;
  }

  signedIn() {
    return this.token !== null;
  }

  collectionInfo(name) {
    return this.collections.get(name);
  }

  async signIn(token) {
    $("signin-error").textContent = "";
    if (token !== null) {
      const c = claims(token);
      if (c === null) return this.signInError("that is not a JWT (three base64url parts)");
      if (expired(token)) return this.signInError("that token has expired");
    }
    this.current?.close();
    this.token = token;
    saved.set(token);
    this.current = createClient({
      url: location.origin,
      token: token === null ? undefined : () => this.tokenFor(),
      onConnectionChange: (c) => this.connection(c),
      onError: (err) => this.banner(`${err.code ?? "error"}: ${err.message}`),
    });
    this.showIdentity();
    $("signin").hidden = true;
    $("main").hidden = false;
    $("signout").hidden = false;
    await this.loadCollections();
    this.channels.restart();
    if (this.grid.name) this.grid.open(this.grid.name);
    if (this.frames.stop) {
      this.frames.end();
      this.frames.start();
    }
  }

  /** The token provider: a development server mints a new token when this one expires; a pasted one is what it is. */
  async tokenFor() {
    if (this.token !== null && expired(this.token) && this.dev) {
      const t = await devToken();
      if (t !== null) {
        this.token = t;
        saved.set(t);
        this.showIdentity();
      }
    } else if (this.token !== null && expired(this.token)) {
      this.banner("The token has expired: sign out and sign in with a new one.");
    }
    return this.token;
  }

  signOut() {
    this.grid.close();
    this.frames.end();
    for (const key of [...this.channels.subs.keys()]) this.channels.remove(key);
    this.current?.close();
    this.current = null;
    this.token = null;
    saved.set(null);
    $("identity").textContent = "not signed in";
    $("signout").hidden = true;
    $("main").hidden = true;
    $("signin").hidden = false;
  }

  signInError(text) {
    $("signin-error").textContent = text;
  }

  showIdentity() {
    const el = $("identity");
    if (this.token === null) {
      el.replaceChildren(h("span", { class: "role" }, "anonymous"));
      return;
    }
    const c = claims(this.token) ?? {};
    const exp = typeof c.exp === "number" ? new Date(c.exp * 1000) : null;
    el.replaceChildren(
      h("span", { class: "sub" }, String(c.sub ?? "?")),
      h("span", { class: "role" }, String(c.role ?? "authenticated")),
      h("span", { class: "env muted" }, `env ${c.env ?? 1}`),
      exp ? h("span", { class: "exp muted", title: exp.toISOString() }, `until ${exp.toLocaleTimeString()}`) : null,
    );
  }

  async loadCollections() {
    this.collections.clear();
    const names = [];
    if (this.token !== null) {
      try {
        for (const c of await this.current.listCollections()) {
          this.collections.set(c.name, c);
          names.push(c.name);
        }
      } catch {
        // Listing collections is for admins; others type the name.
      }
    }
    $("collection-suggestions").replaceChildren(...names.map((n) => h("option", { value: n })));
    const channels = [...names.map((n) => `${n}.*`), "system.*", "job.*", "auth.*", "storage.*", "function.*"];
    $("channel-suggestions").replaceChildren(...channels.map((c) => h("option", { value: c })));
  }

  connection(c) {
    this.conn.set(c.endpoint, c);
    const dots = [...this.conn.values()].map((s) =>
      h(
        "span",
        { class: `dot ${s.state}`, dataset: { endpoint: s.endpoint, state: s.state }, title: s.code ? `last close: ${s.code}${s.reason ? ` ${s.reason}` : ""}` : s.state },
        s.endpoint,
      ),
    );
    $("conn").replaceChildren(...dots);
  }

  banner(text) {
    const b = $("banner");
    b.textContent = text;
    b.hidden = false;
    clearTimeout(this.bannerTimer);
    this.bannerTimer = setTimeout(() => (b.hidden = true), 8000);
  }
}

const app = new App();
window.pgcastConsole = app; // for the curious, in the developer tools
app.start();
