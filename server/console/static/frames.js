// The Catalyst panel: frames of /ws/events/object-records/ or /ws/events/tasks/ as they arrive.
import { clock, h, ids } from "./dom.js";

const MAX_FRAMES = 100;

export class Frames {
  constructor(app) {
    this.app = app;
    this.form = document.getElementById("catalyst-form");
    this.toggle = document.getElementById("catalyst-toggle");
    this.frames = document.getElementById("frames");
    this.counter = document.getElementById("frame-count");
    this.noteEl = document.getElementById("catalyst-note");
    this.stop = null;
    this.n = 0;
    this.form.addEventListener("submit", (e) => {
      e.preventDefault();
      if (this.stop) this.end();
      else this.start();
    });
  }

  start() {
    let filter;
    const endpoint = document.getElementById("catalyst-endpoint").value;
    try {
      filter = {
        classIds: ids(document.getElementById("catalyst-classes").value, "class ids"),
        fieldIds: endpoint === "object-records" ? ids(document.getElementById("catalyst-fields").value, "field ids") : undefined,
      };
    } catch (err) {
      this.note(err.message, true);
      return;
    }
    const client = this.app.client();
    try {
      const method = endpoint === "tasks" ? "tasks" : "objectRecords";
      this.stop = client[method](filter, (items) => this.frame(items), {
        onOpen: ({ reconnect }) => this.note(reconnect ? "reconnected: nothing is replayed here, reload state over REST" : `streaming /ws/events/${endpoint}/`),
        onError: (err) => this.note(`${err.code ?? "error"}: ${err.message}`, true),
      });
    } catch (err) {
      this.note(err.message, true);
      return;
    }
    this.toggle.textContent = "Stop";
    this.toggle.classList.remove("primary");
  }

  end() {
    this.stop?.();
    this.stop = null;
    this.toggle.textContent = "Start";
    this.toggle.classList.add("primary");
  }

  frame(items) {
    this.n++;
    this.counter.textContent = `${this.n} frame${this.n === 1 ? "" : "s"}`;
    const li = h(
      "li",
      { class: "frame", dataset: { items: items.length } },
      h("div", { class: "meta" }, h("span", { class: "seq" }, `#${this.n}`), h("span", { class: "time" }, clock()), h("span", { class: "size" }, `${items.length} item${items.length === 1 ? "" : "s"}`)),
      h("ul", { class: "items" }, items.slice(0, 50).map(item), items.length > 50 ? h("li", { class: "muted" }, `… ${items.length - 50} more`) : null),
    );
    this.frames.prepend(li);
    while (this.frames.childElementCount > MAX_FRAMES) this.frames.lastElementChild.remove();
  }

  note(text, error = false) {
    this.noteEl.textContent = text;
    this.noteEl.classList.toggle("error", error);
  }
}

function item(it) {
  const ev = String(it.event ?? "");
  const kind = ev.replace(/^object_records?_|^task_/, "");
  const subject = it.object_record_id ?? it.task_id;
  const extra = [];
  if (it.field_ids) extra.push(`fields ${it.field_ids.join(",")}`);
  if (it.count !== undefined) extra.push(`count ${it.count}`);
  if (it.user_id) extra.push(`user ${it.user_id}`);
  if (it.document_id) extra.push(`doc ${it.document_id}`);
  return h(
    "li",
    { class: `item ${kind}`, dataset: { event: ev } },
    h("span", { class: "ev" }, kind),
    h("span", { class: "cls muted" }, `class ${it.object_class_id}`),
    subject !== undefined ? h("span", { class: "rec" }, `#${subject}`) : null,
    extra.length ? h("span", { class: "extra" }, extra.join(" · ")) : null,
  );
}
