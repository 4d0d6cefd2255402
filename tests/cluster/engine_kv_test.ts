/**
 * The Deno KV engine (lib/cluster/engine_kv.ts): engines on one store file,
 * each on its own handle as the workers of one process have them. The bus
 * delivers every payload to every engine once and in one order, however the
 * watch coalesces; names are leases decided by versionstamp checks and by
 * the expiry stored in the value (a manual clock, so nothing waits); a store
 * error puts an engine down until it works again. `shared_log_test.ts` runs
 * the history contract on it, `kv_workers_test.ts` the same across workers.
 */
import assert from "node:assert/strict";
import { createKvEngine, type FastPath } from "../../lib/cluster/engine_kv.ts";
import type { Engine } from "../../lib/cluster/engine.ts";
import type { KvAtomic, KvHandle } from "../../lib/cluster/kv.ts";
import { BUS_CHUNK_CHARS } from "../../lib/cluster/kv_bus.ts";
import { createManualClock } from "../../lib/core/clock.ts";
import { withTimeout } from "../_helpers.ts";
import { cuttable, type CuttableKv, fastPaths, kvDir, onOneStore, queue } from "./_kv.ts";

const PREFIX = "test";

/** An engine under test with what it has told its node. */
interface Node {
  readonly engine: Engine;
  readonly kv: CuttableKv;
  readonly payloads: ReturnType<typeof queue<string>>;
  readonly events: ReturnType<typeof queue<string>>;
  /** The next `count` payloads. */
  take(count: number): Promise<string[]>;
}

/** `count` engines on one store file, started and up; disposed with the store. */
async function engines(
  count: number,
  options: {
    clock?: { now(): number };
    fastPath?: (i: number) => FastPath | undefined;
    /** The engines' poll of the head (default: none, so only the watch and the fast path deliver). */
    pollMs?: number;
  } = {},
) {
  const dir = await kvDir();
  const nodes: Node[] = [];
  for (let i = 0; i < count; i++) {
    const kv = cuttable(await Deno.openKv(dir.path()));
    const engine = createKvEngine({
      kv,
      prefix: PREFIX,
      clock: options.clock,
      fastPath: options.fastPath?.(i),
      pollMs: options.pollMs ?? 0,
    });
    const payloads = queue<string>();
    const events = queue<string>();
    engine.start({
      message: payloads.push,
      up: () => events.push("up"),
      down: (reason) => events.push(`down: ${reason}`),
    });
    nodes.push({
      engine,
      kv,
      payloads,
      events,
      async take(n) {
        const found: string[] = [];
        while (found.length < n) found.push(await payloads.next(`payload ${found.length + 1}`));
        return found;
      },
    });
  }
  for (const node of nodes) assert.equal(await node.events.next("the engine to start"), "up");
  return onOneStore(dir, nodes);
}

Deno.test("kv engine: a Deno.Kv is a KvHandle, and a BroadcastChannel a FastPath", async () => {
  await using dir = await kvDir();
  using kv = await Deno.openKv(dir.path());
  const handle: KvHandle = kv;
  const channel = new BroadcastChannel("hubbub-kv-types");
  const fastPath: FastPath = channel;
  const engine = createKvEngine({ kv: handle, prefix: PREFIX, fastPath });
  assert.equal(engine.kind, "kv");
  assert.equal(engine.shared, true);
  assert.ok(engine.log !== undefined);
  // Stopping without starting closes the fast path all the same.
  await engine.stop();
});

Deno.test("kv engine: every payload reaches every engine, its publisher's included, in one order; a burst loses none", async () => {
  await using cluster = await engines(2);
  const [a, b] = cluster.nodes;
  const total = 1200;
  // Bursts from both engines at once, some in one tick and some a tick apart: many commits
  // racing for the head, and far more head changes than the watches report.
  for (let i = 0; i < total; i += 2) {
    assert.equal(a.engine.publish(`a${i}`), true);
    assert.equal(b.engine.publish(`b${i + 1}`), true);
    if (i % 50 === 0) await new Promise((resolve) => setTimeout(resolve, 0));
  }
  const [seenByA, seenByB] = await Promise.all([a.take(total), b.take(total)]);
  assert.deepEqual(seenByA, seenByB);
  // Each engine's own payloads keep the order they were published in.
  for (const who of ["a", "b"]) {
    const mine = seenByA.filter((p) => p.startsWith(who)).map((p) => Number(p.slice(1)));
    assert.deepEqual(mine, [...mine].sort((x, y) => x - y));
    assert.equal(mine.length, total / 2);
  }
  assert.equal(a.payloads.size + b.payloads.size, 0);
});

Deno.test("kv engine: a payload larger than a KV value crosses in pieces, whole", async () => {
  await using cluster = await engines(2);
  const [a, b] = cluster.nodes;
  const large = "é".repeat(BUS_CHUNK_CHARS * 2 + 17) + "✓".repeat(BUS_CHUNK_CHARS + 3);
  a.engine.publish("before");
  a.engine.publish(large);
  a.engine.publish("after");
  for (const node of [a, b]) assert.deepEqual(await node.take(3), ["before", large, "after"]);
});

Deno.test("kv engine: a stalled watch misses nothing; what it reports late is read as a range", async () => {
  await using cluster = await engines(2);
  const [a, b] = cluster.nodes;
  b.kv.hold();
  for (let i = 0; i < 50; i++) a.engine.publish(`p${i}`);
  const expected = Array.from({ length: 50 }, (_, i) => `p${i}`);
  assert.deepEqual(await a.take(50), expected);
  assert.equal(b.payloads.size, 0);
  // One report for fifty entries.
  b.kv.release();
  assert.deepEqual(await b.take(50), expected);
});

Deno.test("kv engine: what no watch reports (another process wrote it) is delivered by the poll of the head", async () => {
  await using cluster = await engines(2, { pollMs: 20 });
  const [a, b] = cluster.nodes;
  b.kv.hold(); // for good: b's watch never reports again
  a.engine.publish("one");
  a.engine.publish("two");
  assert.deepEqual(await b.take(2), ["one", "two"]);
  a.engine.publish("three");
  assert.deepEqual(await b.take(1), ["three"]);
});

Deno.test("kv engine: entries gone before an engine read them (it fell behind): down, up, then it goes on", async () => {
  await using cluster = await engines(2);
  const [a, b] = cluster.nodes;
  b.kv.hold();
  for (const payload of ["one", "two", "three"]) a.engine.publish(payload);
  assert.deepEqual(await a.take(3), ["one", "two", "three"]);
  // As if "one" and "two" had expired while b was not reading.
  using raw = await cluster.raw();
  await raw.atomic().delete([PREFIX, "bus", 1]).delete([PREFIX, "bus", 2]).commit();
  b.kv.release();
  const down = await b.events.next("down");
  assert.match(down, /^down: fell behind the bus/);
  assert.equal(await b.events.next("up"), "up");
  assert.equal(b.payloads.size, 0);
  a.engine.publish("four");
  assert.deepEqual(await b.take(1), ["four"]);
  assert.deepEqual(await a.take(1), ["four"]);
});

Deno.test("kv engine: the fast path delivers ahead of a stalled watch, and nothing twice once it catches up", async () => {
  const paths = fastPaths();
  await using cluster = await engines(2, { fastPath: paths.make });
  const [a, b] = cluster.nodes;
  b.kv.hold();
  for (let i = 0; i < 20; i++) a.engine.publish(`p${i}`);
  const expected = Array.from({ length: 20 }, (_, i) => `p${i}`);
  // b's watch reports nothing: these came by the fast path.
  assert.deepEqual(await b.take(20), expected);
  assert.ok(paths.posts > 0);
  b.kv.release();
  a.engine.publish("last");
  assert.deepEqual(await b.take(1), ["last"]);
  assert.equal(b.payloads.size, 0);
});

Deno.test("kv engine: a fast path that loses entries loses no payload: the watch fills the gaps, in order", async () => {
  const paths = fastPaths((n) => n % 3 === 0);
  await using cluster = await engines(2, { fastPath: paths.make });
  const [a, b] = cluster.nodes;
  const expected: string[] = [];
  for (let i = 0; i < 60; i++) {
    a.engine.publish(`p${i}`);
    expected.push(`p${i}`);
    await new Promise((resolve) => setTimeout(resolve, 0));
  }
  assert.deepEqual(await b.take(60), expected);
  a.engine.publish("last");
  assert.deepEqual(await b.take(1), ["last"]);
  assert.equal(b.payloads.size, 0);
});

Deno.test("kv engine: BroadcastChannel as the fast path, between engines of one isolate", async () => {
  await using cluster = await engines(2, {
    fastPath: () => new BroadcastChannel(`hubbub-kv-test-${crypto.randomUUID()}`),
  });
  const [a, b] = cluster.nodes;
  for (let i = 0; i < 30; i++) b.engine.publish(`p${i}`);
  const expected = Array.from({ length: 30 }, (_, i) => `p${i}`);
  assert.deepEqual(await a.take(30), expected);
  assert.deepEqual(await b.take(30), expected);
});

Deno.test("kv engine: one name raced from three engines: exactly one wins, 100 rounds of 100", async () => {
  await using cluster = await engines(3);
  for (let round = 0; round < 100; round++) {
    const outcomes = await Promise.all(
      cluster.nodes.map((node, i) =>
        node.engine.claim({ key: `name${round}`, owner: `node${i}:1` }, 30_000)
      ),
    );
    assert.deepEqual(
      [...outcomes].sort(),
      ["claimed", "taken", "taken"],
      `round ${round}: ${outcomes}`,
    );
  }
});

Deno.test("kv engine: a lease not renewed frees the name (by the expiry in the value); renewal keeps it", async () => {
  const clock = createManualClock(1_000_000);
  await using cluster = await engines(2, { clock });
  const [a, b] = cluster.nodes;
  const alice = { key: "alice", owner: "a:1" };
  assert.equal(await a.engine.claim(alice, 1000), "claimed");
  // The holder claiming again keeps it; anyone else finds it taken.
  assert.equal(await a.engine.claim(alice, 1000), "claimed");
  assert.equal(await b.engine.claim({ key: "alice", owner: "b:7" }, 1000), "taken");
  clock.advance(600);
  assert.deepEqual(await a.engine.renew([alice], 1000), []);
  clock.advance(600);
  assert.equal(await b.engine.claim({ key: "alice", owner: "b:7" }, 1000), "taken");
  // Not renewed for a lease: free, although KV has not deleted the entry (its expireIn is real time).
  clock.advance(1000);
  using raw = await cluster.raw();
  assert.notEqual((await raw.get([PREFIX, "name", "alice"])).value, null);
  assert.equal(await b.engine.claim({ key: "alice", owner: "b:7" }, 1000), "claimed");
  // The old holder learns it lost the name when it renews.
  assert.deepEqual(await a.engine.renew([alice], 1000), [alice]);
  assert.equal(await a.engine.claim(alice, 1000), "taken");
});

Deno.test("kv engine: renewal claims again a name that vanished, and reports only what another holds", async () => {
  await using cluster = await engines(2);
  const [a, b] = cluster.nodes;
  const claims = Array.from({ length: 120 }, (_, i) => ({ key: `n${i}`, owner: `a:${i}` }));
  for (const claim of claims) assert.equal(await a.engine.claim(claim, 30_000), "claimed");
  using raw = await cluster.raw();
  // n5 vanished (a store that lost it), n7 went to someone else meanwhile.
  await raw.delete([PREFIX, "name", "n5"]);
  await raw.set([PREFIX, "name", "n7"], { owner: "b:1", expiresAt: Date.now() + 30_000 });
  assert.deepEqual(await a.engine.renew(claims, 30_000), [claims[7]]);
  assert.equal(((await raw.get([PREFIX, "name", "n5"])).value as { owner: string }).owner, "a:5");
  assert.equal(await b.engine.claim({ key: "n5", owner: "b:2" }, 30_000), "taken");
});

Deno.test("kv engine: release is compare-and-delete: it frees only the caller's own lease", async () => {
  const clock = createManualClock(1_000_000);
  await using cluster = await engines(3, { clock });
  const [a, b, c] = cluster.nodes;
  using raw = await cluster.raw();
  const owner = async () =>
    ((await raw.get([PREFIX, "name", "bob"])).value as { owner: string } | null)?.owner ?? null;
  assert.equal(await a.engine.claim({ key: "bob", owner: "a:1" }, 1000), "claimed");
  // A release is done once its engine has stopped (stop waits for it).
  c.engine.release({ key: "bob", owner: "c:9" });
  await c.engine.stop();
  assert.equal(await owner(), "a:1");
  // The lease ran out and b took the name: a's late release must not free it.
  clock.advance(1001);
  assert.equal(await b.engine.claim({ key: "bob", owner: "b:2" }, 1000), "claimed");
  a.engine.release({ key: "bob", owner: "a:1" });
  await a.engine.stop();
  assert.equal(await owner(), "b:2");
  b.engine.release({ key: "bob", owner: "b:2" });
  await b.engine.stop();
  assert.equal(await owner(), null);
});

Deno.test("kv engine: a store error puts the engine down (claims unavailable, nothing published); it comes back up", async () => {
  await using cluster = await engines(2);
  const [a, b] = cluster.nodes;
  a.kv.cut();
  assert.match(await a.events.next("down"), /^down: The KV store is cut off/);
  assert.equal(a.engine.publish("lost"), false);
  assert.equal(await a.engine.claim({ key: "c", owner: "a:1" }, 1000), "unavailable");
  assert.equal(await a.engine.renew([{ key: "c", owner: "a:1" }], 1000), null);
  assert.equal(await a.engine.log!.latest("c", 10), null);
  // b goes on meanwhile; a, back, hears what is published from then on.
  b.engine.publish("while a was away");
  assert.deepEqual(await b.take(1), ["while a was away"]);
  a.kv.restore();
  // Retries that failed meanwhile each say down again; then up.
  let event = await a.events.next("up");
  while (event !== "up") event = await a.events.next("up");
  assert.equal(a.payloads.size, 0);
  b.engine.publish("back");
  assert.deepEqual(await a.take(1), ["back"]);
  assert.equal(await a.engine.claim({ key: "c", owner: "a:1" }, 1000), "claimed");
});

Deno.test("kv engine: stop waits for what was published before it (a node's goodbye goes out)", async () => {
  await using cluster = await engines(2);
  const [a, b] = cluster.nodes;
  for (let i = 0; i < 5; i++) a.engine.publish(`p${i}`);
  a.engine.publish("bye");
  await a.engine.stop();
  assert.equal(a.engine.publish("after"), false);
  assert.deepEqual((await b.take(6)).at(-1), "bye");
});

/** A handle on `kv` that counts commits and refuses the next `refuse` as a locked file does. */
function counting(kv: Deno.Kv) {
  const counts = { commits: 0, refuse: 0 };
  const handle: KvHandle = {
    get: (key, options) => kv.get(key, options) as ReturnType<KvHandle["get"]>,
    getMany: (keys, options) => kv.getMany(keys, options) as ReturnType<KvHandle["getMany"]>,
    list: (selector, options) => kv.list(selector, options),
    watch: (keys) => kv.watch(keys),
    atomic() {
      const op = kv.atomic();
      const counted: KvAtomic = {
        check: (...checks) => (op.check(...checks), counted),
        set: (key, value, options) => (op.set(key, value, options), counted),
        delete: (key) => (op.delete(key), counted),
        commit() {
          counts.commits++;
          if (counts.refuse === 0) return op.commit();
          counts.refuse--;
          return Promise.reject(new Error("database is locked"));
        },
      };
      return counted;
    },
  };
  return { handle, counts };
}

Deno.test("kv engine: names released together (a node's stop) are deleted 50 per atomic operation; a commit the locked file refused is tried again", async () => {
  await using dir = await kvDir();
  using kv = await Deno.openKv(dir.path());
  const { handle, counts } = counting(kv);
  const engine = createKvEngine({ kv: handle, prefix: PREFIX, pollMs: 0 });
  const up = Promise.withResolvers<void>();
  engine.start({ message() {}, up: up.resolve, down() {} });
  await withTimeout(up.promise, "the engine to start");
  const claims = Array.from({ length: 120 }, (_, i) => ({ key: `n${i}`, owner: `a:${i}` }));
  for (const claim of claims) assert.equal(await engine.claim(claim, 30_000), "claimed");
  // n119's lease ran out and another owner took it: releasing the old claim must not free it.
  await kv.set([PREFIX, "name", "n119"], { owner: "b:1", expiresAt: Date.now() + 30_000 });
  counts.commits = 0;
  counts.refuse = 2;
  for (const claim of claims) engine.release(claim);
  await engine.stop();
  assert.equal(counts.commits, 3 + 2, "three chunks, two of them refused once");
  const left = [];
  for await (const entry of kv.list({ prefix: [PREFIX, "name"] })) left.push(entry);
  assert.deepEqual(left.map((entry) => [entry.key[2], (entry.value as { owner: string }).owner]), [
    ["n119", "b:1"],
  ]);
});

Deno.test("kv engine: a release is not undone by a renewal asked for before it", async () => {
  await using cluster = await engines(1);
  const [a] = cluster.nodes;
  using raw = await cluster.raw();
  const alice = { key: "alice", owner: "a:1" };
  for (let round = 0; round < 20; round++) {
    assert.equal(await a.engine.claim(alice, 30_000), "claimed", `round ${round}`);
    const renewed = a.engine.renew([alice], 30_000);
    a.engine.release(alice);
    assert.deepEqual(await renewed, []);
    // An engine's writes land in the order they were asked for: once a publication asked for
    // after the release is delivered, the release is done.
    a.engine.publish(`after ${round}`);
    assert.equal(await a.payloads.next("the engine's own publication"), `after ${round}`);
    assert.equal((await raw.get([PREFIX, "name", "alice"])).value, null, `round ${round}`);
  }
});
