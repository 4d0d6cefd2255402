/**
 * How the KV engine delivers chat messages (lib/cluster/kv_follow.ts): from
 * each channel's own log, to the engines that follow the channel, in seq
 * order, one payload per commit, whichever path (the watch of the channel's
 * head, the poll, the fast path) brings a message first; and appends to
 * different channels share no key, so they never contend.
 */
import assert from "node:assert/strict";
import { busOpen, decodePayload } from "../../lib/cluster/cluster_bus.ts";
import { createKvEngine, type FastPath } from "../../lib/cluster/engine_kv.ts";
import type { Engine } from "../../lib/cluster/engine.ts";
import { FOLLOW_SLACK } from "../../lib/cluster/history_kv.ts";
import type { KvAtomic, KvHandle } from "../../lib/cluster/kv.ts";
import type { SharedMessage } from "../../lib/store/store.ts";
import { cuttable, type CuttableKv, fastPaths, kvDir, onOneStore, queue } from "./_kv.ts";

const PREFIX = "test";
const TS = "2026-01-01T00:00:00.000Z";
let ids = 0;

function message(channel: string, text: string): SharedMessage {
  const id = `m${++ids}`;
  const frame = { type: "message", channel, from: "ann", text, id, ts: TS };
  return {
    from: "ann",
    text,
    id,
    ts: TS,
    frameOpen: JSON.stringify(frame).slice(0, -1),
    busOpen: busOpen(channel),
  };
}

/** What a node heard: per payload, its sender and the channel and text of each message. */
type Heard = { n: string; m: string[] };

/** Counts the commits the store refused because another engine wrote a checked key first. */
function counting(kv: KvHandle) {
  let conflicts = 0;
  const handle: KvHandle = {
    get: (key, options) => kv.get(key, options),
    getMany: (keys, options) => kv.getMany(keys, options),
    list: (selector, options) => kv.list(selector, options),
    watch: (keys) => kv.watch(keys),
    atomic(): KvAtomic {
      const inner = kv.atomic();
      const op: KvAtomic = {
        check: (...checks) => (inner.check(...checks), op),
        set: (key, value, options) => (inner.set(key, value, options), op),
        delete: (key) => (inner.delete(key), op),
        async commit() {
          const result = await inner.commit();
          if (!result.ok) conflicts++;
          return result;
        },
      };
      return op;
    },
  };
  return {
    handle,
    get conflicts() {
      return conflicts;
    },
  };
}

type Node = {
  engine: Engine;
  kv: CuttableKv;
  heard: ReturnType<typeof queue<Heard>>;
  events: ReturnType<typeof queue<string>>;
  conflicts(): number;
  /** The next `count` messages heard, as `channel:text`. */
  take(count: number): Promise<string[]>;
  follow(...channels: string[]): Promise<void>;
  append(channel: string, ...texts: string[]): Promise<void>;
};

/** `count` engines on one store file, up; disposed with the store. */
async function engines(
  count: number,
  options: { pollMs?: number; fastPath?: (i: number) => FastPath | undefined } = {},
) {
  const dir = await kvDir();
  const nodes: Node[] = [];
  for (let i = 0; i < count; i++) {
    const kv = cuttable(await Deno.openKv(dir.path()));
    const counted = counting(kv);
    const engine = createKvEngine({
      kv: counted.handle,
      prefix: PREFIX,
      pollMs: options.pollMs ?? 0,
      fastPath: options.fastPath?.(i),
    });
    const heard = queue<Heard>();
    const events = queue<string>();
    engine.start({
      message(payload) {
        const decoded = decodePayload(payload)!;
        heard.push({
          n: decoded.n,
          m: decoded.m.map((m) => m.t === "pub" ? `${m.c}:${m.f.text}` : m.t),
        });
      },
      up: () => events.push("up"),
      down: (reason) => events.push(`down: ${reason}`),
      missed: (channel, reason) => events.push(`missed ${channel}: ${reason}`),
    });
    const node: Node = {
      engine,
      kv,
      heard,
      events,
      conflicts: () => counted.conflicts,
      async take(n) {
        const found: string[] = [];
        while (found.length < n) found.push(...(await heard.next(`message ${found.length + 1}`)).m);
        return found;
      },
      async follow(...channels) {
        for (const channel of channels) engine.log!.follow!(channel);
        await Promise.all(channels.map((channel) => engine.log!.following!(channel)));
      },
      async append(channel, ...texts) {
        const appended = await engine.log!.append(
          `node-${i}`,
          channel,
          texts.map((text) => message(channel, text)),
        );
        assert.ok(appended.ok, appended.ok ? "" : appended.message);
      },
    };
    nodes.push(node);
  }
  for (const node of nodes) assert.equal(await node.events.next("the engine to start"), "up");
  return onOneStore(dir, nodes);
}

Deno.test("kv follow: a channel's messages reach the engines that follow it, the sender's too, in seq order and one payload per commit; others get nothing of it", async () => {
  await using cluster = await engines(3);
  const [a, b, c] = cluster.nodes;
  await a.follow("room");
  await b.follow("room");
  await c.follow("elsewhere");
  await a.append("room", "one", "two");
  await b.append("room", "three");
  for (const node of [a, b]) {
    assert.deepEqual(await node.heard.next("the first commit"), {
      n: "node-0",
      m: ["room:one", "room:two"],
    });
    assert.deepEqual(await node.heard.next("the second"), { n: "node-1", m: ["room:three"] });
  }
  await a.append("elsewhere", "there");
  assert.deepEqual(await c.take(1), ["elsewhere:there"]);
  assert.equal(c.heard.size, 0);
  // Followed from now on: what the channel had before is not delivered.
  await c.follow("room");
  await a.append("room", "four");
  assert.deepEqual(await c.take(1), ["room:four"]);
  assert.deepEqual(await b.take(1), ["room:four"]);
  // Unfollowed (as often as followed): delivered no more.
  b.engine.log!.unfollow!("room");
  await a.append("room", "five");
  assert.deepEqual(await c.take(1), ["room:five"]);
  await a.append("room", "six");
  assert.deepEqual(await c.take(1), ["room:six"]);
  assert.equal(b.heard.size, 0);
});

Deno.test("kv follow: appends from two engines into twenty channels at once never contend (no shared key); into one channel they do, and still number 1..N", async () => {
  await using cluster = await engines(2);
  const [a, b] = cluster.nodes;
  const channels = Array.from({ length: 20 }, (_, i) => `c${i}`);
  await a.follow(...channels);
  // Each engine appends to its own ten channels, all at once.
  await Promise.all(channels.map((channel, i) => (i % 2 === 0 ? a : b).append(channel, "hi")));
  assert.equal(a.conflicts() + b.conflicts(), 0);
  assert.deepEqual((await a.take(20)).sort(), channels.map((channel) => `${channel}:hi`).sort());
  // One channel: the second engine's check fails and it tries again.
  await Promise.all(
    Array.from({ length: 20 }, (_, i) => (i % 2 === 0 ? a : b).append("c0", `${i}`)),
  );
  const found = await a.take(20);
  assert.equal(found.length, 20);
  assert.equal(new Set(found).size, 20);
  const page = await a.engine.log!.latest("c0", 100);
  assert.deepEqual(page?.messages.map((m) => m.seq), Array.from({ length: 21 }, (_, i) => i + 1));
});

Deno.test("kv follow: a stalled watch misses nothing; the head it reports late is read as a range", async () => {
  await using cluster = await engines(2);
  const [a, b] = cluster.nodes;
  await b.follow("room");
  b.kv.hold();
  for (let i = 0; i < 50; i++) await a.append("room", `${i}`);
  assert.equal(b.heard.size, 0);
  b.kv.release();
  assert.deepEqual(await b.take(50), Array.from({ length: 50 }, (_, i) => `room:${i}`));
});

Deno.test("kv follow: what no watch reports (another process wrote it) is delivered by the poll of the heads", async () => {
  await using cluster = await engines(2, { pollMs: 20 });
  const [a, b] = cluster.nodes;
  await b.follow("room", "hall");
  b.kv.hold(); // for good: b's watches never report again
  await a.append("room", "one");
  await a.append("hall", "two");
  assert.deepEqual((await b.take(2)).sort(), ["hall:two", "room:one"]);
  await a.append("room", "three");
  assert.deepEqual(await b.take(1), ["room:three"]);
});

Deno.test("kv follow: messages gone before a follower read them (it fell further behind than the slack): said for their channel, and it goes on", async () => {
  await using cluster = await engines(2);
  const [a, b] = cluster.nodes;
  await b.follow("room");
  b.kv.hold();
  await a.append("room", "one", "two", "three");
  // As if the follower had fallen FOLLOW_SLACK messages behind: the first two are gone.
  using raw = await cluster.raw();
  await raw.atomic().delete([PREFIX, "h", "room", "m", 1]).delete([PREFIX, "h", "room", "m", 2])
    .commit();
  b.kv.release();
  assert.match(await b.events.next("missed"), /^missed room: messages 1–2 of "room" were gone/);
  assert.deepEqual(await b.take(1), ["room:three"]);
  await a.append("room", "four");
  assert.deepEqual(await b.take(1), ["room:four"]);
  assert.equal(b.events.size, 0, "the engine stayed up");
  assert.ok(FOLLOW_SLACK >= 1000);
});

Deno.test("kv follow: the fast path delivers ahead of a stalled watch, and nothing twice once it catches up", async () => {
  const paths = fastPaths();
  await using cluster = await engines(2, { fastPath: paths.make });
  const [a, b] = cluster.nodes;
  await b.follow("room");
  b.kv.hold();
  for (let i = 0; i < 20; i++) await a.append("room", `${i}`);
  // b's watch reports nothing: these came by the fast path.
  assert.deepEqual(await b.take(20), Array.from({ length: 20 }, (_, i) => `room:${i}`));
  b.kv.release();
  await a.append("room", "last");
  assert.deepEqual(await b.take(1), ["room:last"]);
  assert.equal(b.heard.size, 0);
});

Deno.test("kv follow: a fast path that loses commits loses no message: the watch fills the gaps, in order", async () => {
  const paths = fastPaths((n) => n % 3 === 0);
  await using cluster = await engines(2, { fastPath: paths.make });
  const [a, b] = cluster.nodes;
  await b.follow("room");
  for (let i = 0; i < 60; i++) await a.append("room", `${i}`);
  assert.deepEqual(await b.take(60), Array.from({ length: 60 }, (_, i) => `room:${i}`));
  await a.append("room", "last");
  assert.deepEqual(await b.take(1), ["room:last"]);
  assert.equal(b.heard.size, 0);
  assert.ok(paths.posts >= 61);
});

Deno.test("kv follow: a history that starts over (the store emptied) is delivered from its seq 1", async () => {
  await using cluster = await engines(2);
  const [a, b] = cluster.nodes;
  await b.follow("room");
  await a.append("room", "old one", "old two");
  assert.deepEqual(await b.take(2), ["room:old one", "room:old two"]);
  using raw = await cluster.raw();
  const op = raw.atomic();
  for await (const entry of raw.list({ prefix: [PREFIX, "h", "room"] })) op.delete(entry.key);
  await op.commit();
  await a.append("room", "new");
  assert.deepEqual(await b.take(1), ["room:new"]);
  // Its members here had seen seqs 1 and 2 of the old run: the node is told, so it can tell them.
  assert.match(await b.events.next("missed"), /^missed room: the history of "room" started over/);
  assert.equal(b.events.size, 0, "the engine stayed up");
});
