// The live grid: one collection (or watched table), its rows kept current by
// realtime events. Rows appear and disappear, changed cells flash, and the
// count follows: the rows held when the REST list gave them all, otherwise
// (more than MAX_ROWS rows, or a watched table, which has no REST list) the
// Catalyst count items, which admins receive.
import { cellText, clock, flash, h } from "./dom.js";

const PAGE = 100;
const MAX_ROWS = 1000;
const TAIL = ["createdAt", "updatedAt"];

export class LiveGrid {
  constructor(app) {
    this.app = app;
    this.table = document.getElementById("grid");
    this.thead = this.table.tHead;
    this.tbody = this.table.tBodies[0];
    this.countEl = document.getElementById("grid-count");
    this.noteEl = document.getElementById("grid-note");
    this.name = null;
    this.session = 0;
    document.getElementById("grid-form").addEventListener("submit", (e) => {
      e.preventDefault();
      const name = document.getElementById("grid-collection").value.trim();
      if (name) this.open(name);
    });
  }

  /** open shows a collection: subscribe first, then list, so no change falls between the two. */
  async open(name) {
    this.close();
    const session = ++this.session;
    this.name = name;
    this.rows = new Map(); // id → record
    this.trs = new Map(); // id → <tr>
    // The collection's field order when it is known (admins list
    // collections); otherwise the columns come with the records.
    const info = this.app.collectionInfo(name);
    this.columns = info ? ["id", ...info.fields.map((f) => f.name), ...TAIL] : ["id"];
    this.complete = false; // the REST list gave every row
    this.catalystCount = null;
    this.deletedWhileLoading = new Set();
    this.table.dataset.collection = name;
    this.renderHead();
    this.tbody.replaceChildren();
    this.note("");
    const client = this.app.client();
    this.unsubscribe = client.subscribe(`${name}.*`, { onReset: () => this.reload(session), onError: (err) => this.note(`${err.code}: ${err.message}`, true) }, (ev) => {
      if (session === this.session) this.apply(ev);
    });
    if (info && this.app.signedIn()) {
      this.stopCounts = client.objectRecords({ classIds: [info.id], fieldIds: [] }, (items) => {
        for (const it of items) if (it.event === "object_records_count_changed") this.catalystCount = it.count;
        if (session === this.session) this.renderCount();
      }, { onReconnect: () => this.reload(session), onError: () => {} });
    }
    try {
      await this.unsubscribe.ready;
    } catch {
      return; // the error is shown
    }
    await this.reload(session);
  }

  close() {
    this.session++;
    this.unsubscribe?.();
    this.stopCounts?.();
    this.unsubscribe = this.stopCounts = undefined;
  }

  async reload(session) {
    if (session !== this.session) return;
    const collection = this.app.client().collection(this.name);
    const loaded = [];
    let before;
    let more = true;
    this.deletedWhileLoading.clear();
    this.loading = true;
    try {
      while (more && loaded.length < MAX_ROWS) {
        const page = await collection.list({ limit: PAGE, before });
        loaded.push(...page.items);
        more = page.items.length === PAGE || page.truncated === true;
        before = page.items.at(-1)?.id;
        if (page.items.length === 0) more = false;
      }
    } catch (err) {
      if (session !== this.session) return;
      this.loading = false;
      if (err.code === "watched_table") {
        this.note("A watched table: pgcast does not read it, so rows appear here as they change.");
        this.complete = false;
        this.renderCount();
        return;
      }
      this.note(`${err.code}: ${err.message}`, true);
      return;
    }
    if (session !== this.session) return;
    this.loading = false;
    // Events that arrived while the pages loaded are newer than the pages
    // for the rows they touch; keep them.
    const next = new Map();
    for (const rec of loaded) {
      if (this.deletedWhileLoading.has(rec.id)) continue;
      const live = this.rows.get(rec.id);
      next.set(rec.id, live && live.updatedAt >= rec.updatedAt ? live : rec);
    }
    for (const [id, rec] of this.rows) if (!next.has(id)) next.set(id, rec);
    this.rows = next;
    this.complete = !more;
    this.note(more ? `Showing the newest ${loaded.length} rows.` : "");
    this.renderAll();
  }

  apply(ev) {
    const action = ev.type.slice(this.name.length + 1);
    const rec = ev.payload ?? {};
    const id = rec.id;
    if (id === undefined) return;
    if (action === "deleted") {
      if (this.loading) this.deletedWhileLoading.add(id);
      this.rows.delete(id);
      const tr = this.trs.get(id);
      this.trs.delete(id);
      if (tr) {
        tr.classList.add("gone");
        tr.addEventListener("animationend", () => tr.remove(), { once: true });
        setTimeout(() => tr.remove(), 1000); // without animations (reduced motion)
      }
      this.renderCount();
      return;
    }
    const old = this.rows.get(id);
    // A watched table's update carries what changed; a collection's, the whole record.
    const next = old && action === "updated" ? { ...old, ...rec } : rec;
    this.rows.set(id, next);
    if (this.addColumns(next)) {
      this.renderAll();
    } else if (old && this.trs.has(id)) {
      const tr = this.trs.get(id);
      for (const td of tr.children) {
        const col = td.dataset.col;
        const text = display(col, next[col]);
        if (td.textContent !== text) {
          td.textContent = text;
          td.title = cellText(next[col]);
          flash(td, "flash");
        }
      }
    } else {
      const tr = this.row(next);
      this.trs.get(id)?.remove();
      this.trs.set(id, tr);
      this.tbody.prepend(tr);
      flash(tr, "new");
    }
    this.renderCount();
  }

  addColumns(rec) {
    let added = false;
    for (const k of Object.keys(rec)) {
      if (!this.columns.includes(k)) {
        this.columns.push(k);
        added = true;
      }
    }
    if (added) {
      const mid = this.columns.filter((c) => c !== "id" && !TAIL.includes(c));
      this.columns = ["id", ...mid, ...TAIL.filter((c) => this.columns.includes(c))];
    }
    return added;
  }

  renderAll() {
    for (const rec of this.rows.values()) this.addColumns(rec);
    this.renderHead();
    const sorted = [...this.rows.values()].sort((a, b) => (a.id < b.id ? 1 : a.id > b.id ? -1 : 0));
    this.trs = new Map(sorted.map((rec) => [rec.id, this.row(rec)]));
    this.tbody.replaceChildren(...this.trs.values());
    this.renderCount();
  }

  renderHead() {
    this.thead.replaceChildren(h("tr", {}, this.columns.map((c) => h("th", { dataset: { col: c } }, c))));
  }

  row(rec) {
    return h("tr", { dataset: { id: rec.id } }, this.columns.map((c) => h("td", { dataset: { col: c }, title: cellText(rec[c]) }, display(c, rec[c]))));
  }

  renderCount() {
    let text;
    if (this.complete) text = String(this.rows.size);
    else if (this.catalystCount !== null) text = String(this.catalystCount);
    else text = `≥ ${this.rows.size}`;
    const changed = this.countEl.textContent !== `${text} records`;
    this.countEl.textContent = `${text} records`;
    this.countEl.dataset.count = text;
    if (changed) flash(this.countEl, "flash");
  }

  note(text, error = false) {
    this.noteEl.textContent = text;
    this.noteEl.classList.toggle("error", error);
  }
}

/** display shortens the record timestamps to local times (the full value is the cell's title). */
function display(col, v) {
  if (TAIL.includes(col) && typeof v === "string") {
    const d = new Date(v);
    if (!Number.isNaN(d.getTime())) return clock(d);
  }
  return cellText(v);
}
