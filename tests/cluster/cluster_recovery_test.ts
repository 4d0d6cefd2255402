/**
 * A cluster store that restarts empty (Redis without persistence): until
 * every node has put its names back, no node gives a name out, so two nodes
 * never hold one name. Deterministic: nodes share an in-memory engine whose
 * outages the test causes (lib/cluster/engine.ts `cut` and `reconnect`), and the
 * engines come back in the order each test chooses.
 *
 * Deno KV does not restart empty (a local file, or Deno Deploy's replicated
 * store, keeps what was committed), so the tests of a store that forgot run
 * on the memory cluster only; the last one, a cut that forgets nothing (a KV
 * error: the engine goes down, then up), runs on every engine of
 * `_engines.ts`, KV's handles cut off the store by the test.
 */
import assert from "node:assert/strict";
import { createChannels } from "../../lib/core/channels.ts";
import { createManualClock, type ManualClock } from "../../lib/core/clock.ts";
import { type Cluster, createCluster } from "../../lib/cluster/cluster.ts";
import { createMemoryCluster, type Engine } from "../../lib/cluster/engine.ts";
import { silentLogger } from "../../lib/log.ts";
import { createMetrics } from "../../lib/metrics.ts";
import { nameKey } from "../../lib/core/names.ts";
import { startServer, type TestServer } from "../_helpers.ts";
import { ENGINE_KINDS } from "./_engines.ts";

const LEASE_MS = 30_000;
const ALICE = nameKey("alice");

/** One node's cluster part, and the sessions it was told to end because their name was lost. */
interface TestNode {
  readonly cluster: Cluster;
  readonly engine: Engine;
  readonly lost: number[];
}

function startNode(engine: Engine, clock: ManualClock, nodeId: string): TestNode {
  const lost: number[] = [];
  const cluster = createCluster({
    engine,
    clock,
    nodeId,
    leaseMs: LEASE_MS,
    channels: createChannels(),
    metrics: createMetrics(),
    deliver() {},
    nameLost: (id) => lost.push(id),
    kick() {},
    log: silentLogger,
  });
  return { cluster, engine, lost };
}

/** Lets the bus deliver what is queued, and the answers to that (each hop is a microtask). */
async function settle(): Promise<void> {
  for (let i = 0; i < 20; i++) await Promise.resolve();
}

/** Two nodes that know each other; node A holds "alice" for its session 1. */
async function twoNodes() {
  const store = createMemoryCluster();
  const clock = createManualClock(1_000_000);
  const a = startNode(store.engine(), clock, "A");
  const b = startNode(store.engine(), clock, "B");
  await settle();
  assert.equal(a.cluster.nodes, 1, "A knows B");
  assert.equal(b.cluster.nodes, 1, "B knows A");
  assert.equal(await a.cluster.claim(ALICE, 1), "claimed");
  return { store, clock, a, b };
}

async function stopAll(...nodes: TestNode[]) {
  for (const node of nodes) await node.cluster.stop();
}

Deno.test("cluster recovery: the store restarts empty and B comes back first: B gives alice to nobody until A has put her back", async () => {
  const { store, a, b } = await twoNodes();
  try {
    store.cut({ forget: true });
    assert.equal(await b.cluster.claim(ALICE, 7), "unavailable", "while the store is down");

    store.reconnect(b.engine);
    assert.equal(b.cluster.up, true);
    assert.equal(await b.cluster.claim(ALICE, 7), "unavailable", "the moment the store is back");
    await settle();
    assert.equal(b.cluster.admitting, false, "A has not put its names back yet");
    assert.equal(await b.cluster.claim(ALICE, 7), "unavailable");
    assert.equal(await b.cluster.claim(nameKey("bob"), 8), "unavailable", "no name at all");

    store.reconnect(a.engine);
    await settle();
    assert.equal(b.cluster.admitting, true, "A re-asserted and said so");
    assert.equal(await b.cluster.claim(ALICE, 7), "taken");
    assert.equal(await b.cluster.claim(nameKey("bob"), 8), "claimed");
    assert.deepEqual(a.lost, [], "A's alice was never taken from her");
  } finally {
    await stopAll(a, b);
  }
});

Deno.test("cluster recovery: the store restarts empty and A comes back first: B, back later, finds alice taken", async () => {
  const { store, a, b } = await twoNodes();
  try {
    store.cut({ forget: true });
    store.reconnect(a.engine);
    await settle();
    assert.equal(a.cluster.admitting, false, "A waits for B's names too");

    store.reconnect(b.engine);
    // Right when B is back: it has not heard from A since.
    assert.equal(await b.cluster.claim(ALICE, 7), "unavailable");
    await settle();
    assert.equal(b.cluster.admitting, true, "A answered B's hello once its names were back");
    assert.equal(a.cluster.admitting, true, "and B's state let A admit again");
    assert.equal(await b.cluster.claim(ALICE, 7), "taken");
    assert.deepEqual(a.lost, []);
  } finally {
    await stopAll(a, b);
  }
});

Deno.test("cluster recovery: a name given out by a dialect during the outage loses to the one held before it, in either order", async (t) => {
  for (const first of ["A", "B"]) {
    await t.step(`${first} comes back first`, async () => {
      const { store, a, b } = await twoNodes();
      try {
        store.cut({ forget: true });
        // A dialect login cannot be refused: B gives alice out locally while cut off.
        b.cluster.claimed(ALICE, 9);
        const order = first === "A" ? [a, b] : [b, a];
        for (const node of order) {
          store.reconnect(node.engine);
          await settle();
        }
        assert.deepEqual(b.lost, [9], "B's alice of the outage is ended");
        assert.deepEqual(a.lost, [], "A's alice of before keeps her name");
        assert.equal(await b.cluster.claim(ALICE, 10), "taken");
      } finally {
        await stopAll(a, b);
      }
    });
  }
});

Deno.test("cluster recovery: a node that never comes back is waited for one lease, then its names are free", async () => {
  const { store, clock, a, b } = await twoNodes();
  try {
    store.cut({ forget: true });
    store.reconnect(b.engine);
    await settle();
    clock.advance(LEASE_MS - 1);
    await settle();
    assert.equal(await b.cluster.claim(ALICE, 7), "unavailable", "within the lease: A may be back");
    // Dropped by the first beat after a lease of silence since B came back.
    clock.advance(LEASE_MS / 3 + 1);
    await settle();
    assert.equal(b.cluster.nodes, 0, "A was dropped for silence");
    assert.equal(await b.cluster.claim(ALICE, 7), "claimed", "as a crashed node's names come free");
  } finally {
    await stopAll(a, b);
  }
});

for (const kind of ENGINE_KINDS) {
  Deno.test(`cluster recovery (${kind.name}): a node that was alone waits only for its own names; a cut that forgot nothing costs a round trip`, async () => {
    await using group = await kind.group();
    const clock = createManualClock();
    const alone = startNode(await group.engine(), clock, "solo");
    try {
      await group.settled();
      assert.equal(await alone.cluster.claim(ALICE, 1), "claimed");
      await group.cut();
      await group.reconnect(alone.engine);
      assert.equal(alone.cluster.admitting, false, "its own names first");
      await group.settled();
      assert.equal(alone.cluster.admitting, true, "nobody else to wait for");
      assert.equal(await alone.cluster.claim(nameKey("bob"), 2), "claimed");

      const other = startNode(await group.engine(), clock, "other");
      try {
        await group.until(
          "each node to know the other",
          () => alone.cluster.nodes === 1 && other.cluster.nodes === 1,
        );
        await group.cut();
        await group.reconnect(alone.engine);
        await group.reconnect(other.engine);
        assert.equal(alone.cluster.admitting || other.cluster.admitting, false);
        await group.until(
          "both nodes to admit again",
          () => alone.cluster.admitting && other.cluster.admitting,
        );
        assert.equal(await other.cluster.claim(ALICE, 5), "taken", "nothing was forgotten");
      } finally {
        await other.cluster.stop();
      }
    } finally {
      await alone.cluster.stop();
    }
  });
}

// ---------------------------------------------------------------------------
// Whole servers over real sockets

Deno.test("cluster recovery: over sockets, a login on the node that is back first gets unavailable, then name_taken for a look-alike; alice stays connected", async () => {
  const store = createMemoryCluster();
  const engines = [store.engine(), store.engine()];
  const nodes: TestServer[] = engines.map((engine, i) =>
    startServer({ connectRate: 1000 }, { engine, nodeId: `node${i}` })
  );
  try {
    const alice = await nodes[0].user("alice", "lobby");
    const probe = await nodes[1].connect();
    const login = async (name: string) => {
      probe.send({ type: "login", name, ref: name });
      const reply = await probe.next();
      return reply.type === "error" ? reply.code : reply.type;
    };
    assert.equal(await login("аlice"), "name_taken", "Cyrillic а: the same skeleton");

    store.cut({ forget: true });
    store.reconnect(engines[1]);
    assert.equal(await login("аlice"), "unavailable");
    assert.equal(await login("alice"), "unavailable");
    const ready = await fetch(`${nodes[1].url}/readyz`);
    assert.deepEqual(await ready.json(), { status: "not_ready", failed: ["cluster"] });

    store.reconnect(engines[0]);
    assert.equal(await login("аlice"), "name_taken");
    assert.equal(await login("ALICE"), "name_taken");
    for (const node of nodes) {
      assert.deepEqual(await (await fetch(`${node.url}/readyz`)).json(), { status: "ready" });
    }

    // Never closed with 4409: the frame after her ping is its pong.
    alice.send({ type: "ping", ref: "still" });
    assert.deepEqual(await alice.next(), { type: "pong", ref: "still" });
    assert.equal(await login("carol"), "welcome");
  } finally {
    for (const node of nodes) await node[Symbol.asyncDispose]();
  }
});
