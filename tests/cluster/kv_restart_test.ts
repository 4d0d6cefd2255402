/**
 * Review 11c, finding 3, on Deno KV: a followed channel whose history starts
 * over (it expired `--history-ttl` after its last message while members
 * stayed connected) numbers again from 1. The nodes' followers must not
 * deliver those seqs to members who saw the old run's (a client drops them
 * as seen): those are closed with 1013 and, rejoining with `since`, told
 * `recovered:false`, as on Redis and memory nodes (`history_restart_test.ts`).
 * Members who saw no message of the old run stay.
 *
 * Two ways a node knows where it is in a channel: from a message it delivered,
 * or only from the starting point its member's join read (no message since).
 */
import assert from "node:assert/strict";
import { createKvEngine } from "../../lib/cluster/engine_kv.ts";
import { createManualClock } from "../../lib/core/clock.ts";
import { type Frame, startServer, type TestServer, waitFor, withTimeout } from "../_helpers.ts";
import { barrier, broadcast, join, messages } from "../history/_history.ts";
import { kvDir } from "./_kv.ts";

/** Long enough that KV's own `expireIn` deletes nothing while a test runs; the clock expires it. */
const TTL_MS = 60_000;

async function startNodes() {
  const dir = await kvDir();
  const clock = createManualClock(Date.UTC(2026, 0, 1));
  const stores: Deno.Kv[] = [];
  const nodes: TestServer[] = [];
  // A lease far past the TTL: advancing the clock beats no node and drops none.
  const config = { rateBurst: 100_000, idleTimeout: 0, nameLease: 3600 };
  for (const i of [0, 1]) {
    const kv = await Deno.openKv(dir.path());
    stores.push(kv);
    // No fast path: node 1 learns of node 0's messages by its watches and its poll of the heads.
    const engine = createKvEngine({
      kv,
      prefix: "restart",
      history: { maxPerChannel: 100, ttlMs: TTL_MS },
      clock,
    });
    nodes.push(startServer(config, { engine, nodeId: `node${i}`, clock }));
  }
  // A login before its node is ready (its engine up) is not welcomed; on a busy machine that
  // took past a test's patience.
  for (const node of nodes) {
    await waitFor("the node to be ready", async () => {
      const response = await fetch(`${node.url}/readyz`);
      await response.body?.cancel();
      return response.status === 200;
    });
  }
  return {
    nodes,
    clock,
    async [Symbol.asyncDispose]() {
      for (const node of nodes) await node[Symbol.asyncDispose]();
      for (const kv of stores) kv.close();
      await dir[Symbol.asyncDispose]();
    },
  };
}

for (const known of ["a message", "a join's read"] as const) {
  Deno.test(`kv restart: a history that expired with members connected closes them with 1013 (known from ${known})`, async () => {
    await using c = await startNodes();
    const [a, b] = c.nodes;
    const alice = await a.user("alice", "room");
    const carol = await b.user("carol");
    let epoch = known === "a message" ? (await join(carol, "room")).epoch : undefined;
    broadcast(alice, "room", "old 1");
    broadcast(alice, "room", "old 2");
    assert.deepEqual((await messages(alice, 2)).map((m) => m.seq), [1, 2]);
    if (epoch === undefined) {
      // Node 1 follows the room from now: its starting point is seq 2, delivered to no one.
      const joined = await join(carol, "room");
      assert.equal(joined.seq, 2);
      epoch = joined.epoch as string;
    } else assert.deepEqual((await messages(carol, 2)).map((m) => m.seq), [1, 2]);

    c.clock.advance(TTL_MS + 1);
    broadcast(alice, "room", "new 1");
    // Its seq is 1 again: everyone who had seen the old ones is told (the sender too).
    for (const client of [alice, carol]) {
      assert.deepEqual(
        await withTimeout(client.closed, "a close"),
        { code: 1013, reason: "Messages were lost on the way here" },
      );
    }
    const ann = await a.user("ann");
    // Another name: carol's may not be released yet when her client sees the close.
    const back = await b.user("cora");
    for (const client of [ann, back]) {
      const joined = await join(client, "room", { since: { epoch, seq: 2 }, history: 10 });
      assert.equal(joined.recovered, false);
      assert.notEqual(joined.epoch, epoch);
      assert.deepEqual(joined.messages.map((m: Frame) => [m.text, m.seq]), [["new 1", 1]]);
    }
    broadcast(ann, "room", "new 2");
    for (const client of [ann, back]) {
      assert.deepEqual((await messages(client, 1)).map((m) => [m.text, m.seq]), [["new 2", 2]]);
      assert.deepEqual(await barrier(client), []);
    }
  });
}

Deno.test("kv restart: members who saw no message of the history that expired stay", async () => {
  await using c = await startNodes();
  const [a, b] = c.nodes;
  const alice = await a.user("alice", "room");
  const carol = await b.user("carol", "room");
  c.clock.advance(TTL_MS + 1);
  broadcast(alice, "room", "first");
  for (const client of [alice, carol]) {
    assert.deepEqual((await messages(client, 1)).map((m) => [m.text, m.seq]), [["first", 1]]);
    assert.deepEqual(await barrier(client), []);
  }
});
