// Compiled by `tsc -p test/types` (types.test.js): the README's examples
// type-check against index.d.ts, through the package's own name.
import { ApiError, createClient, type RealtimeEvent } from "@pgcast/client";

declare const WebSocketImpl: new (url: string) => any;

const client = createClient({
  url: "http://localhost:8080",
  token: async () => "jwt",
  WebSocket: WebSocketImpl,
  backoff: { base: 500, max: 30000 },
  onConnectionChange: (c) => console.log(c.endpoint, c.state, c.code),
});

type Post = { title: string };
const unsubscribe = client.subscribe<Post & { id: number }>(
  "posts.*",
  { filter: "title=eq.Hello", select: ["title"], since: "evt_1", onReset: () => {}, onError: (e) => console.log(e.code) },
  (ev: RealtimeEvent<Post & { id: number }>) => console.log(ev.id, ev.payload.title),
);
void unsubscribe.ready.then(() => unsubscribe.lastEventId?.startsWith("evt_"));
unsubscribe();
client.subscribe("job.*", (ev) => console.log(ev.type));

const stop = client.objectRecords({ classIds: [1], fieldIds: [2] }, (items) => {
  for (const it of items) if (it.event === "object_records_count_changed") console.log(it.count);
}, { onReconnect: () => {} });
stop();
client.tasks({}, (items) => items.map((i) => i.task_id));

async function rest() {
  const posts = client.collection<Post>("posts");
  const page = await posts.list({ limit: 10 });
  const first: string = page.items[0].title;
  const rec = await posts.create({ title: first });
  await posts.update(rec.id, { title: "x" });
  await posts.delete(rec.id);
  try {
    await posts.get(1);
  } catch (e) {
    if (e instanceof ApiError && e.code === "not_found") console.log(e.status, e.details);
  }
  const cols = await client.listCollections();
  console.log(cols[0].fields[0].id);
  await client.close();
}
void rest();
