/**
 * The history every node of a cluster shares (`SharedLog`): one contract run
 * against the Redis log (lib/cluster/history_redis.ts, on a private
 * redis-server), its in-process double (lib/cluster/history_memory.ts,
 * the `log` of a memory cluster's engines) and the Deno KV log
 * (lib/cluster/history_kv.ts), then what is particular to each.
 * What was published is read the way nodes read it: a real ioredis
 * subscriber, or a memory engine's listener.
 */
import assert from "node:assert/strict";
import { Redis, type RedisOptions } from "ioredis";
import { busOpen, type BusPayload, decodePayload } from "../../lib/cluster/cluster_bus.ts";
import {
  createMemoryCluster,
  createMemoryEngine,
  type Engine,
  type EngineListener,
  type MemoryCluster,
} from "../../lib/cluster/engine.ts";
import { createKvEngine } from "../../lib/cluster/engine_kv.ts";
import { createRedisEngine } from "../../lib/cluster/engine_redis.ts";
import { createRedisLog } from "../../lib/cluster/history_redis.ts";
import { createManualClock } from "../../lib/core/clock.ts";
import type { SharedLog, SharedMessage, StoredMessage } from "../../lib/store/store.ts";
import { withTimeout } from "../_helpers.ts";
import { startRedis, type TestRedis } from "../e2e/_redis.ts";
import { cuttable, kvDir, queue } from "./_kv.ts";

/** The contract's history keeps this many messages per channel. */
const MAX = 5;
const TTL_MS = 60 * 60 * 1000;
const TS = "2026-01-01T00:00:00.000Z";

let ids = 0;

/** A message for `channel` as the app hands it to a shared log. */
function message(
  channel: string,
  from: string,
  text: string,
  key?: string,
  origin?: { dialect: string; original?: Record<string, unknown> },
  except?: number,
): SharedMessage {
  const id = `m${++ids}`;
  const frame = { type: "message", channel, from, text, id, ts: TS };
  return {
    from,
    text,
    id,
    ts: TS,
    ...(key === undefined ? {} : { key }),
    frameOpen: JSON.stringify(frame).slice(0, -1),
    busOpen: busOpen(channel, origin, except),
  };
}

/** The frame a log stores for `sent` under `seq`. */
const stored = (sent: SharedMessage, channel: string, seq: number): StoredMessage => ({
  type: "message",
  channel,
  from: sent.from,
  text: sent.text,
  id: sent.id,
  ts: TS,
  seq,
});

/** One implementation under test: two logs on separate connections to one history. */
interface Subject extends AsyncDisposable {
  readonly a: SharedLog;
  readonly b: SharedLog;
  /** The next payload published on the bus, decoded. */
  next(): Promise<BusPayload>;
  /** Makes the history unreachable for both logs. */
  cut(): Promise<void>;
  /** Brings the history back empty, as a Redis without persistence restarts. */
  restart(): Promise<void>;
}

/** An engine listener that keeps the payloads it receives. */
function listening(engine: Engine) {
  const payloads = queue<string>();
  let up!: () => void;
  const connected = new Promise<void>((resolve) => up = resolve);
  const listener: EngineListener = { message: payloads.push, up: () => up(), down() {} };
  engine.start(listener);
  return { payloads, connected };
}

/** Decodes a payload, without the run (`g`) Redis and memory logs add to numbered messages. */
function decoded(text: string): BusPayload {
  const payload = decodePayload(text);
  assert.ok(payload !== null, `not a bus payload: ${text}`);
  for (const message of payload.m) if (message.t === "pub") delete message.g;
  return payload;
}

function memorySubject(cluster: MemoryCluster = createMemoryCluster({
  history: { maxPerChannel: MAX, ttlMs: TTL_MS },
})): Subject {
  const engines = [cluster.engine(), cluster.engine(), cluster.engine()];
  const [a, b] = engines.map((engine) => engine.log!);
  const watcher = listening(engines[2]);
  for (const engine of engines.slice(0, 2)) listening(engine);
  return {
    a,
    b,
    next: async () => decoded(await watcher.payloads.next("a publication")),
    cut() {
      cluster.cut();
      return Promise.resolve();
    },
    restart() {
      cluster.cut({ forget: true });
      for (const engine of engines) cluster.reconnect(engine);
      return Promise.resolve();
    },
    async [Symbol.asyncDispose]() {
      for (const engine of engines) await engine.stop();
    },
  };
}

const CONNECTION: RedisOptions = {
  enableOfflineQueue: false,
  maxRetriesPerRequest: 0,
  retryStrategy: () => 20,
  autoResubscribe: false,
};

/** A connection that is ready (or that has just become so). */
async function ready(connection: Redis): Promise<void> {
  if (connection.status === "ready") return;
  await withTimeout(new Promise((resolve) => connection.once("ready", resolve)), "Redis");
}

/** Closes `connection` and waits until it has let go of its socket. */
async function close(connection: Redis): Promise<void> {
  if (connection.status === "end") return;
  const ended = new Promise((resolve) => connection.once("end", resolve));
  connection.disconnect();
  await ended;
}

/** A connection to `redis`, ready; errors while it is down are expected, not logged. */
async function connect(redis: TestRedis): Promise<Redis> {
  const connection = new Redis(redis.url, CONNECTION);
  connection.on("error", () => {});
  await ready(connection);
  return connection;
}

const PREFIX = "test";
const BUS = `${PREFIX}:bus`;

async function redisSubject(): Promise<Subject & { redis: TestRedis; connections: Redis[] }> {
  const redis = await startRedis();
  const connections = await Promise.all([connect(redis), connect(redis), connect(redis)]);
  const [first, second, subscriber] = connections;
  const options = { prefix: PREFIX, busChannel: BUS, maxPerChannel: MAX, ttlMs: TTL_MS };
  const payloads = queue<string>();
  subscriber.on("message", (channel: string, payload: string) => {
    if (channel === BUS) payloads.push(payload);
  });
  await subscriber.subscribe(BUS);
  const cut = async () => {
    const closed = connections.map((connection) =>
      new Promise((resolve) => connection.once("close", resolve))
    );
    await redis.stop();
    await withTimeout(Promise.all(closed), "the connections to close");
  };
  return {
    redis,
    connections,
    a: createRedisLog(first, options),
    b: createRedisLog(second, options),
    next: async () => decoded(await payloads.next("a publication")),
    cut,
    async restart() {
      if (connections[0].status === "ready") await cut();
      await redis.start();
      await Promise.all(connections.map(ready));
      await subscriber.subscribe(BUS);
    },
    async [Symbol.asyncDispose]() {
      await Promise.all(connections.map(close));
      await redis.stop();
    },
  };
}

/** The seqs of a page or recovery's messages. */
const seqs = (found: { messages: StoredMessage[] } | null) => {
  assert.ok(found !== null, "the history could not be read");
  return found.messages.map((m) => m.seq);
};

/** Appends one message at a time, returning the seqs. */
async function fill(log: SharedLog, channel: string, count: number): Promise<number[]> {
  const result: number[] = [];
  for (let i = 0; i < count; i++) {
    const appended = await log.append("node-a", channel, [message(channel, "ann", `m${i}`)]);
    assert.ok(appended.ok);
    result.push(appended.results[0].seq);
  }
  return result;
}

/** Reads payloads until `count` `pub` messages have arrived; their frames' seqs, in order. */
async function publishedSeqs(subject: Subject, count: number): Promise<number[]> {
  const found: number[] = [];
  while (found.length < count) {
    for (const m of (await subject.next()).m) {
      assert.equal(m.t, "pub");
      if (m.t === "pub") found.push(m.f.seq as number);
    }
  }
  return found;
}

/** Every channel the contract uses. */
const CHANNELS = [
  "one",
  "two",
  "keys",
  "keys2",
  "pages",
  "since",
  "trim",
  "trim2",
  "epoch",
  "epoch-new",
  "race",
  "lost",
];

/**
 * The next `count` payloads, ordered by their channel (stably): a log orders
 * each channel's messages, not those of different channels.
 */
async function nextByChannel(subject: Subject, count: number): Promise<BusPayload[]> {
  const payloads: BusPayload[] = [];
  while (payloads.length < count) payloads.push(await subject.next());
  const channel = (payload: BusPayload) => payload.m[0]?.t === "pub" ? payload.m[0].c : "";
  return payloads.sort((x, y) => channel(x) < channel(y) ? -1 : channel(x) > channel(y) ? 1 : 0);
}

/** `log`, its reads without the run (`gen`) Redis and memory logs tell (see the test of `gen`). */
function withoutGen(log: SharedLog): SharedLog {
  const strip = <T extends { gen?: string } | null>(found: T): T => {
    if (found !== null) delete found.gen;
    return found;
  };
  return {
    ...log,
    latest: (channel, limit) => log.latest(channel, limit).then(strip),
    before: (channel, seq, limit) => log.before(channel, seq, limit).then(strip),
    since: (channel, epoch, seq, limit) => log.since(channel, epoch, seq, limit).then(strip),
  };
}

/** The contract every SharedLog keeps; each step uses its own channels. */
async function contract(t: Deno.TestContext, subject: Subject) {
  const [a, b] = [withoutGen(subject.a), withoutGen(subject.b)];

  await t.step(
    "numbers each channel 1, 2, 3… and publishes each append once, in order",
    async () => {
      const first = [
        message("one", "ann", "hello"),
        message(
          "one",
          "ann",
          "there",
          undefined,
          { dialect: "wschat", original: { usr: "ann" } },
          3,
        ),
      ];
      const second = message("one", "bob", "hi");
      const other = message("two", "cy", "elsewhere");
      const appended = await a.append("node-a", "one", first);
      assert.ok(appended.ok);
      assert.deepEqual(appended.results, [
        { seq: 1, id: first[0].id, duplicate: false },
        { seq: 2, id: first[1].id, duplicate: false },
      ]);
      const again = await b.append("node-b", "one", [second]);
      assert.ok(again.ok);
      assert.equal(again.epoch, appended.epoch);
      assert.deepEqual(again.results, [{ seq: 3, id: second.id, duplicate: false }]);
      const elsewhere = await a.append("node-a", "two", [other]);
      assert.ok(elsewhere.ok);
      assert.deepEqual(elsewhere.results, [{ seq: 1, id: other.id, duplicate: false }]);

      assert.deepEqual(await nextByChannel(subject, 3), [{
        n: "node-a",
        m: [
          { t: "pub", c: "one", f: stored(first[0], "one", 1) },
          {
            t: "pub",
            c: "one",
            f: stored(first[1], "one", 2),
            o: { dialect: "wschat", original: { usr: "ann" } },
            x: 3,
          },
        ],
      }, {
        n: "node-b",
        m: [{ t: "pub", c: "one", f: stored(second, "one", 3) }],
      }, {
        n: "node-a",
        m: [{ t: "pub", c: "two", f: stored(other, "two", 1) }],
      }]);
      assert.deepEqual(await b.latest("one", 10), {
        epoch: appended.epoch,
        seq: 3,
        messages: [
          stored(first[0], "one", 1),
          stored(first[1], "one", 2),
          stored(second, "one", 3),
        ],
      });
    },
  );

  await t.step(
    "a key used again by its sender in the channel is not stored again: it names the first",
    async () => {
      const first = message("keys", "ann", "once", "k1");
      const appended = await a.append("node-a", "keys", [first]);
      assert.ok(appended.ok);
      assert.deepEqual(appended.results, [{ seq: 1, id: first.id, duplicate: false }]);
      assert.deepEqual((await subject.next()).m.map((m) => m.t === "pub" && m.f.id), [first.id]);

      // Again from the other node, beside a new message and a repeat within the same append.
      const plain = message("keys", "ann", "new");
      const fresh = message("keys", "ann", "fresh", "k2");
      const repeat = await b.append("node-b", "keys", [
        message("keys", "ann", "once (resent)", "k1"),
        plain,
        fresh,
        message("keys", "ann", "fresh (resent)", "k2"),
      ]);
      assert.ok(repeat.ok);
      assert.deepEqual(repeat.results, [
        { seq: 1, id: first.id, duplicate: true },
        { seq: 2, id: plain.id, duplicate: false },
        { seq: 3, id: fresh.id, duplicate: false },
        { seq: 3, id: fresh.id, duplicate: true },
      ]);
      assert.deepEqual((await subject.next()).m, [
        { t: "pub", c: "keys", f: stored(plain, "keys", 2) },
        { t: "pub", c: "keys", f: stored(fresh, "keys", 3) },
      ]);

      // Only duplicates: nothing is published (the next payload is the following append's).
      const none = await a.append("node-a", "keys", [message("keys", "ann", "once again", "k1")]);
      assert.ok(none.ok);
      assert.deepEqual(none.results, [{ seq: 1, id: first.id, duplicate: true }]);
      // The same key from another sender, or into another channel, is another message.
      const bob = message("keys", "bob", "mine", "k1");
      const there = message("keys2", "ann", "there", "k1");
      const others = await a.append("node-a", "keys", [bob]);
      assert.ok(others.ok);
      assert.deepEqual(others.results, [{ seq: 4, id: bob.id, duplicate: false }]);
      assert.deepEqual((await subject.next()).m, [{
        t: "pub",
        c: "keys",
        f: stored(bob, "keys", 4),
      }]);
      const elsewhere = await a.append("node-a", "keys2", [there]);
      assert.ok(elsewhere.ok);
      assert.deepEqual(elsewhere.results, [{ seq: 1, id: there.id, duplicate: false }]);
      assert.deepEqual((await subject.next()).m, [
        { t: "pub", c: "keys2", f: stored(there, "keys2", 1) },
      ]);
      assert.deepEqual(seqs(await a.latest("keys", 10)), [1, 2, 3, 4]);
    },
  );

  await t.step("latest and before page through what is kept, oldest first", async () => {
    const empty = await a.latest("pages", 10);
    assert.ok(empty !== null);
    assert.equal(empty.seq, 0);
    assert.deepEqual(empty.messages, []);
    assert.ok(empty.epoch.length > 0);
    assert.deepEqual(await fill(b, "pages", 5), [1, 2, 3, 4, 5]);
    await publishedSeqs(subject, 5);
    const latest = await a.latest("pages", 2);
    // The epoch a read made for the empty channel is the one its messages got.
    assert.equal(latest?.epoch, empty.epoch);
    assert.equal(latest?.seq, 5);
    assert.deepEqual(seqs(latest), [4, 5]);
    assert.deepEqual(seqs(await a.latest("pages", 0)), []);
    assert.deepEqual(seqs(await a.latest("pages", 100)), [1, 2, 3, 4, 5]);
    const before = await a.before("pages", 4, 2);
    assert.deepEqual(before && { epoch: before.epoch, seq: before.seq }, {
      epoch: empty.epoch,
      seq: 5,
    });
    assert.deepEqual(seqs(before), [2, 3]);
    assert.deepEqual(seqs(await a.before("pages", 2, 10)), [1]);
    assert.deepEqual(seqs(await a.before("pages", 1, 10)), []);
    assert.deepEqual(seqs(await a.before("pages", 0, 10)), []);
    assert.deepEqual(seqs(await a.before("pages", 100, 2)), [4, 5]);
    assert.deepEqual(seqs(await a.before("pages", 4, 0)), []);
  });

  await t.step(
    "since recovers every message after a seq of the same epoch, or says it cannot",
    async () => {
      await fill(a, "since", 3);
      await publishedSeqs(subject, 3);
      const { epoch } = (await a.latest("since", 0))!;
      assert.deepEqual(await b.since("since", epoch, 1, 10), {
        recovered: true,
        epoch,
        seq: 3,
        messages: (await a.latest("since", 2))!.messages,
      });
      assert.deepEqual(await b.since("since", epoch, 3, 10), {
        recovered: true,
        epoch,
        seq: 3,
        messages: [],
      });
      assert.deepEqual(seqs(await b.since("since", epoch, 0, 3)), [1, 2, 3]);
      // Another epoch: the latest `limit`, not recovered.
      const wrong = await b.since("since", "another", 1, 2);
      assert.deepEqual(wrong && { ...wrong, messages: seqs(wrong) }, {
        recovered: false,
        epoch,
        seq: 3,
        messages: [2, 3],
      });
      // More than `limit` to recover, a seq past the head, a seq that is no seq: not recovered.
      for (const [seq, limit] of [[0, 2], [4, 10], [-1, 10], [1.5, 10]]) {
        const found = await b.since("since", epoch, seq, limit);
        assert.equal(found?.recovered, false, `since ${seq} limit ${limit}`);
        assert.equal(found?.epoch, epoch);
        assert.deepEqual(seqs(found), [1, 2, 3].slice(-limit));
      }
    },
  );

  await t.step(
    "keeps the newest maxPerChannel messages; recovery past them says it cannot",
    async () => {
      assert.deepEqual(await fill(a, "trim", 8), [1, 2, 3, 4, 5, 6, 7, 8]);
      await publishedSeqs(subject, 8);
      const { epoch } = (await a.latest("trim", 0))!;
      assert.deepEqual(seqs(await a.latest("trim", 100)), [4, 5, 6, 7, 8]);
      assert.deepEqual(seqs(await a.before("trim", 5, 100)), [4]);
      const trimmed = await a.since("trim", epoch, 2, 100);
      assert.equal(trimmed?.recovered, false);
      assert.deepEqual(seqs(trimmed), [4, 5, 6, 7, 8]);
      const kept = await a.since("trim", epoch, 3, 100);
      assert.equal(kept?.recovered, true);
      assert.deepEqual(seqs(kept), [4, 5, 6, 7, 8]);
      // One append larger than the limit keeps its newest.
      const batch = Array.from({ length: MAX + 2 }, (_, i) => message("trim2", "ann", `b${i}`));
      const appended = await b.append("node-b", "trim2", batch);
      assert.ok(appended.ok);
      assert.deepEqual(appended.results.map((r) => r.seq), [1, 2, 3, 4, 5, 6, 7]);
      assert.deepEqual(await publishedSeqs(subject, MAX + 2), [1, 2, 3, 4, 5, 6, 7]);
      assert.deepEqual(seqs(await a.latest("trim2", 100)), [3, 4, 5, 6, 7]);
    },
  );

  await t.step("newEpoch changes the epoch and keeps the seqs", async () => {
    await fill(a, "epoch", 2);
    await publishedSeqs(subject, 2);
    const { epoch } = (await a.latest("epoch", 0))!;
    assert.equal(await b.newEpoch("epoch"), true);
    const after = await a.latest("epoch", 10);
    assert.ok(after !== null);
    assert.notEqual(after.epoch, epoch);
    assert.equal(after.seq, 2);
    assert.deepEqual(seqs(after), [1, 2]);
    assert.equal((await a.since("epoch", epoch, 2, 10))?.recovered, false);
    assert.equal((await a.since("epoch", after.epoch, 2, 10))?.recovered, true);
    const next = await a.append("node-a", "epoch", [message("epoch", "ann", "next")]);
    assert.ok(next.ok);
    assert.equal(next.epoch, after.epoch);
    assert.equal(next.results[0].seq, 3);
    await publishedSeqs(subject, 1);
    // A channel with no history yet gets one with no message.
    assert.equal(await b.newEpoch("epoch-new"), true);
    assert.equal((await a.latest("epoch-new", 10))?.seq, 0);
  });

  await t.step(
    "two appenders racing into one channel give seqs 1..N, published in order",
    async () => {
      const appends = 60;
      const sizes = Array.from({ length: appends }, (_, i) => 1 + (i % 3));
      const total = sizes.reduce((sum, n) => sum + n, 0);
      const results = await Promise.all(sizes.map((size, i) => {
        const batch = Array.from(
          { length: size },
          (_, j) => message("race", `u${i % 2}`, `${i}.${j}`),
        );
        return (i % 2 === 0 ? a : b).append(`node-${i % 2}`, "race", batch);
      }));
      const assigned = results.flatMap((result) => {
        assert.ok(result.ok);
        // One append's messages are consecutive.
        const own = result.results.map((r) => r.seq);
        assert.deepEqual(own, own.map((_, i) => own[0] + i));
        return own;
      });
      const all = Array.from({ length: total }, (_, i) => i + 1);
      assert.deepEqual([...assigned].sort((x, y) => x - y), all);
      assert.deepEqual(await publishedSeqs(subject, total), all);
      assert.deepEqual(seqs(await a.latest("race", MAX)), all.slice(-MAX));
    },
  );

  let epoch = "";
  await t.step(
    "unreachable: reads resolve to null, appends and newEpoch fail, nothing throws",
    async () => {
      await fill(a, "lost", 2);
      await publishedSeqs(subject, 2);
      epoch = (await a.latest("lost", 0))!.epoch;
      await subject.cut();
      for (const log of [a, b]) {
        const appended = await log.append("node-a", "lost", [message("lost", "ann", "unheard")]);
        assert.equal(appended.ok, false);
        assert.ok(!appended.ok && appended.message.length > 0);
        assert.equal(await log.latest("lost", 10), null);
        assert.equal(await log.before("lost", 2, 10), null);
        assert.equal(await log.since("lost", epoch, 1, 10), null);
        assert.equal(await log.newEpoch("lost"), false);
      }
    },
  );

  await t.step("back empty: a new epoch, seqs from 1, keys forgotten", async () => {
    await subject.restart();
    const read = await b.latest("lost", 10);
    assert.ok(read !== null);
    assert.notEqual(read.epoch, epoch);
    assert.deepEqual({ seq: read.seq, messages: read.messages }, { seq: 0, messages: [] });
    const recovery = await b.since("lost", epoch, 2, 10);
    assert.deepEqual(recovery, { recovered: false, epoch: read.epoch, seq: 0, messages: [] });
    const keyed = message("keys", "ann", "once more", "k1");
    const appended = await a.append("node-a", "keys", [keyed]);
    assert.ok(appended.ok);
    assert.deepEqual(appended.results, [{ seq: 1, id: keyed.id, duplicate: false }]);
    assert.deepEqual((await subject.next()).m, [{
      t: "pub",
      c: "keys",
      f: stored(keyed, "keys", 1),
    }]);
    const again = await a.append("node-a", "lost", [message("lost", "ann", "new")]);
    assert.ok(again.ok);
    assert.equal(again.epoch, read.epoch);
    assert.equal(again.results[0].seq, 1);
  });
}

Deno.test("shared log contract: memory (the log of a memory cluster's engines)", async (t) => {
  await using subject = memorySubject();
  await contract(t, subject);
});

Deno.test("shared log contract: Redis", async (t) => {
  await using subject = await redisSubject();
  await contract(t, subject);
});

Deno.test("shared log: a lone memory engine has no log; a memory cluster's engines share one", async () => {
  const lone = createMemoryEngine();
  assert.equal(lone.log, undefined);
  assert.equal("log" in lone, false);
  await lone.stop();
  const cluster = createMemoryCluster();
  const [a, b] = [cluster.engine(), cluster.engine()];
  const appended = await a.log!.append("node-a", "c", [message("c", "ann", "hi")]);
  assert.ok(appended.ok);
  assert.deepEqual(seqs(await b.log!.latest("c", 10)), [1]);
  await Promise.all([a.stop(), b.stop()]);
});

Deno.test("shared log (memory): each append reaches every connected engine once, its own included", async () => {
  const cluster = createMemoryCluster();
  const engines = [cluster.engine(), cluster.engine(), cluster.engine()];
  const [a, b, c] = engines.map(listening);
  await Promise.all([a.connected, b.connected, c.connected]);
  const sent = message("c", "ann", "hi");
  const appended = await engines[0].log!.append("node-a", "c", [sent]);
  assert.ok(appended.ok);
  const expected = { n: "node-a", m: [{ t: "pub", c: "c", f: stored(sent, "c", 1) }] };
  for (const node of [a, b, c]) {
    assert.deepEqual(decoded(await node.payloads.next("a publication")), expected);
  }

  // A cut engine neither reads nor hears; the others go on, and it finds the history on return.
  cluster.cut();
  cluster.reconnect(engines[1]);
  cluster.reconnect(engines[2]);
  assert.equal(await engines[0].log!.latest("c", 10), null);
  const later = message("c", "bob", "later");
  assert.ok((await engines[1].log!.append("node-b", "c", [later])).ok);
  const second = { n: "node-b", m: [{ t: "pub", c: "c", f: stored(later, "c", 2) }] };
  for (const node of [b, c]) {
    assert.deepEqual(decoded(await node.payloads.next("a publication")), second);
  }
  cluster.reconnect(engines[0]);
  assert.deepEqual(seqs(await engines[0].log!.latest("c", 10)), [1, 2]);
  assert.equal(a.payloads.size, 0);
  const last = message("c", "cy", "last");
  assert.ok((await engines[2].log!.append("node-c", "c", [last])).ok);
  // The first payload engine a hears after its return is the one sent after it.
  const heard = decoded(await a.payloads.next("a publication")).m[0];
  assert.equal(heard.t === "pub" && heard.f.id, last.id);

  // A stopped engine's log is out of reach.
  await engines[0].stop();
  assert.equal(await engines[0].log!.latest("c", 10), null);
  await engines[1].stop();
  await engines[2].stop();
});

Deno.test("shared log (memory): a channel's history and keys expire ttl after its last message", async () => {
  const clock = createManualClock(1_000_000);
  const cluster = createMemoryCluster({ history: { maxPerChannel: MAX, ttlMs: 1000 }, clock });
  const engine = cluster.engine();
  const log = engine.log!;
  const first = message("c", "ann", "first", "k");
  const appended = await log.append("node-a", "c", [first]);
  assert.ok(appended.ok);
  clock.advance(999);
  assert.ok((await log.append("node-a", "c", [message("c", "bob", "second")])).ok);
  // The key is as old as its message: it goes after ttl even though the channel lives on.
  clock.advance(1);
  const resent = await log.append("node-a", "c", [message("c", "ann", "first (resent)", "k")]);
  assert.ok(resent.ok);
  assert.deepEqual(resent.results.map((r) => [r.seq, r.duplicate]), [[3, false]]);
  const kept = await log.latest("c", 10);
  assert.equal(kept?.epoch, appended.epoch);
  assert.deepEqual(seqs(kept), [1, 2, 3]);
  // Idle for ttl after the last message: the whole history is gone, with a new epoch.
  clock.advance(1000);
  const gone = await log.latest("c", 10);
  assert.ok(gone !== null);
  assert.notEqual(gone.epoch, appended.epoch);
  assert.deepEqual({ seq: gone.seq, messages: gone.messages }, { seq: 0, messages: [] });
  assert.equal((await log.since("c", appended.epoch, 3, 10))?.recovered, false);
  await engine.stop();
});

/** A bare connection's reply to one command. */
async function ask(redis: TestRedis, ...args: string[]) {
  using connection = await redis.connect();
  return await connection.command(...args);
}

Deno.test("shared log (Redis): keys, entry ids and expiry as documented", async () => {
  await using subject = await redisSubject();
  const { redis } = subject;
  const sent = message("lobby", "ann", "hi", "k1");
  const appended = await subject.a.append("node-a", "lobby", [sent]);
  assert.ok(appended.ok);
  await subject.next();
  const stream = `${PREFIX}:hist:{lobby}`;
  const meta = `${PREFIX}:hmeta:{lobby}`;
  const key = `${PREFIX}:hkey:{lobby}:ann\0k1`;
  assert.deepEqual(await ask(redis, "XRANGE", stream, "-", "+"), [
    ["1-0", [
      "f",
      JSON.stringify(stored(sent, "lobby", 1)),
      "b",
      sent.busOpen,
      "n",
      JSON.stringify("node-a"),
    ]],
  ]);
  assert.deepEqual(await ask(redis, "HGETALL", meta), [
    "epoch",
    appended.epoch,
    "top",
    "1",
    "gen",
    appended.epoch,
  ]);
  assert.equal(await ask(redis, "GET", key), `1 ${sent.id}`);
  for (const name of [stream, meta, key]) {
    const ttl = await ask(redis, "PTTL", name) as number;
    assert.ok(ttl > 0 && ttl <= TTL_MS, `${name}: ${ttl}`);
  }
  // The scripts survive a SCRIPT FLUSH (EVALSHA falls back to EVAL).
  assert.equal(await ask(redis, "SCRIPT", "FLUSH"), "OK");
  assert.ok((await subject.a.append("node-a", "lobby", [message("lobby", "ann", "again")])).ok);
  assert.deepEqual(seqs(await subject.b.latest("lobby", 10)), [1, 2]);
  // The meta hash gone (expired): a new epoch, and the stale stream is not served.
  await ask(redis, "DEL", meta);
  const read = await subject.b.latest("lobby", 10);
  assert.ok(read !== null && read.epoch !== appended.epoch);
  assert.deepEqual({ seq: read.seq, messages: read.messages }, { seq: 0, messages: [] });
});

Deno.test("shared log (Redis): the Redis engine carries the log, and hears its own appends", async () => {
  await using redis = await startRedis();
  const engine = createRedisEngine({
    url: redis.url,
    prefix: "eng",
    history: { maxPerChannel: 2, ttlMs: 60_000 },
  });
  const node = listening(engine);
  try {
    await withTimeout(node.connected, "the engine to connect");
    const log = engine.log!;
    for (let i = 0; i < 3; i++) {
      assert.ok((await log.append("node-a", "c", [message("c", "ann", `m${i}`)])).ok);
    }
    const heard = [];
    for (let i = 0; i < 3; i++) heard.push(decoded(await node.payloads.next("a publication")));
    assert.deepEqual(heard.map((p) => [p.n, p.m[0].t === "pub" && p.m[0].f.seq]), [
      ["node-a", 1],
      ["node-a", 2],
      ["node-a", 3],
    ]);
    // Its history options apply.
    assert.deepEqual(seqs(await log.latest("c", 10)), [2, 3]);
    const ttl = await ask(redis, "PTTL", "eng:hist:{c}") as number;
    assert.ok(ttl > 0 && ttl <= 60_000, String(ttl));
  } finally {
    await engine.stop();
  }
});

/** Three KV engines on one store file (a, b, and one that watches the bus), each with its own handle. */
async function kvSubject(): Promise<Subject> {
  const dir = await kvDir();
  let generation = 0;
  const open = () => Deno.openKv(dir.path(`store${generation}`));
  const handles = [cuttable(await open()), cuttable(await open()), cuttable(await open())];
  const engines = handles.map((kv) =>
    createKvEngine({ kv, prefix: PREFIX, history: { maxPerChannel: MAX, ttlMs: TTL_MS } })
  );
  const nodes = engines.map((engine) => {
    const payloads = queue<string>();
    const ups = queue<string>();
    engine.start({ message: payloads.push, up: () => ups.push("up"), down() {} });
    return { payloads, ups };
  });
  await Promise.all(nodes.map((node) => node.ups.next("the engine to start")));
  // A KV engine delivers the channels its node has members in: the watching one has them all.
  const watching = engines[2].log!;
  for (const channel of CHANNELS) watching.follow!(channel);
  await Promise.all(CHANNELS.map((channel) => watching.following!(channel)));
  let cut = false;
  const cutOff = () => {
    cut = true;
    for (const kv of handles) kv.cut();
    return Promise.resolve();
  };
  return {
    a: engines[0].log!,
    b: engines[1].log!,
    next: async () => decoded(await nodes[2].payloads.next("a publication")),
    cut: cutOff,
    async restart() {
      if (!cut) await cutOff();
      generation++;
      for (const kv of handles) kv.restore(await open());
      cut = false;
      await Promise.all(nodes.map((node) => node.ups.next("the engine to come back")));
    },
    async [Symbol.asyncDispose]() {
      for (const engine of engines) await engine.stop();
      for (const kv of handles) kv[Symbol.dispose]();
      await dir[Symbol.asyncDispose]();
    },
  };
}

Deno.test("shared log contract: Deno KV (three engines on one store file)", async (t) => {
  await using subject = await kvSubject();
  await contract(t, subject);
});

for (const [kind, make] of [["memory", memorySubject], ["Redis", redisSubject]] as const) {
  Deno.test(`shared log (${kind}): reads tell the run of the history (gen), kept by a new epoch, new when it starts over`, async () => {
    await using subject = await make();
    const { a, b } = subject;
    assert.ok((await a.append("node-a", "run", [message("run", "ann", "hi")])).ok);
    await subject.next();
    const first = (await a.latest("run", 10))!;
    assert.match(first.gen ?? "", /^\S+$/);
    assert.equal((await b.before("run", 5, 10))?.gen, first.gen);
    assert.equal((await b.since("run", first.epoch, 0, 10))?.gen, first.gen);
    assert.ok(await a.newEpoch("run"));
    const renewed = (await b.latest("run", 10))!;
    assert.notEqual(renewed.epoch, first.epoch);
    assert.equal(renewed.gen, first.gen, "a new epoch, the same run: seqs go on");
    await subject.restart();
    assert.ok((await a.append("node-a", "run", [message("run", "ann", "again")])).ok);
    const again = (await b.latest("run", 10))!;
    assert.deepEqual(seqs(again), [1]);
    assert.notEqual(again.gen, first.gen, "seqs started over");
  });
}
