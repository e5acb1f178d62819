// The channels panel: subscribe to realtime channels and watch events arrive.
import { clock, h, json } from "./dom.js";

const MAX_EVENTS = 300;

export class Channels {
  /** @param {{client: () => import("./lib/index.js").PgcastClient}} app */
  constructor(app) {
    this.app = app;
    this.form = document.getElementById("channel-form");
    this.list = document.getElementById("subscriptions");
    this.events = document.getElementById("events");
    this.counter = document.getElementById("event-count");
    this.pause = document.getElementById("pause");
    this.total = 0;
    /** @type {Map<string, {channel: string, filter?: string, unsubscribe?: () => void, chip: HTMLElement, count: number}>} */
    this.subs = new Map();
    this.form.addEventListener("submit", (e) => {
      e.preventDefault();
      const channel = document.getElementById("channel").value.trim();
      const filter = document.getElementById("filter").value.trim() || undefined;
      if (channel) {
        this.add(channel, filter);
        this.form.reset();
      }
    });
    document.getElementById("clear-events").addEventListener("click", () => {
      this.events.replaceChildren();
      this.total = 0;
      this.counter.textContent = "0 events";
    });
  }

  add(channel, filter) {
    const key = `${channel}\u0000${filter ?? ""}`;
    if (this.subs.has(key)) return;
    const count = h("span", { class: "count" }, "0");
    const chip = h(
      "li",
      { class: "chip pending", dataset: { channel } },
      h("span", { class: "name" }, channel),
      filter ? h("span", { class: "filter" }, filter) : null,
      count,
      h("button", { type: "button", class: "x", title: "unsubscribe", "aria-label": `unsubscribe ${channel}`, onclick: () => this.remove(key) }, "×"),
    );
    const sub = { channel, filter, chip, count: 0, unsubscribe: undefined };
    this.subs.set(key, sub);
    this.list.append(chip);
    this.start(sub, count);
  }

  start(sub, countEl = sub.chip.querySelector(".count")) {
    const client = this.app.client();
    sub.chip.classList.add("pending");
    sub.chip.classList.remove("failed", "live");
    sub.unsubscribe = client.subscribe(
      sub.channel,
      {
        filter: sub.filter,
        onSubscribed: () => {
          sub.chip.classList.remove("pending");
          sub.chip.classList.add("live");
        },
        onReset: () => this.note(`${sub.channel}: reset, history was pruned (reload your state)`),
        onError: (err) => {
          sub.chip.classList.remove("pending", "live");
          sub.chip.classList.add("failed");
          sub.chip.title = `${err.code}: ${err.message}`;
          this.note(`${sub.channel}: ${err.code}: ${err.message}`, "error");
        },
      },
      (ev) => {
        sub.count++;
        countEl.textContent = String(sub.count);
        this.show(sub.channel, ev);
      },
    );
  }

  remove(key) {
    const sub = this.subs.get(key);
    if (!sub) return;
    sub.unsubscribe?.();
    sub.chip.remove();
    this.subs.delete(key);
  }

  /** restart subscribes everything again on a new client (after signing in as someone else). */
  restart() {
    for (const sub of this.subs.values()) this.start(sub);
  }

  show(channel, ev) {
    this.total++;
    this.counter.textContent = `${this.total} event${this.total === 1 ? "" : "s"}`;
    if (this.pause.checked) return;
    const action = ev.type.split(".").at(-1);
    const li = h(
      "li",
      { class: `event ${action}`, dataset: { type: ev.type, id: ev.id } },
      h(
        "div",
        { class: "meta" },
        h("span", { class: "time", title: ev.timestamp }, clock(new Date(ev.timestamp))),
        h("span", { class: "type" }, ev.type),
        h("span", { class: "id" }, ev.id),
        h("span", { class: "via muted" }, channel),
      ),
      json(ev.payload),
    );
    this.events.prepend(li);
    while (this.events.childElementCount > MAX_EVENTS) this.events.lastElementChild.remove();
  }

  note(text, kind = "note") {
    this.events.prepend(h("li", { class: `event ${kind}` }, h("div", { class: "meta" }, h("span", { class: "time" }, clock()), text)));
  }
}
