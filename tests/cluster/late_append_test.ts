/**
 * Review 11c, finding 2: an append that fails by a timeout may still be
 * stored and published later. Its node delivered it as not stored already;
 * when the log publishes it after all, the members of that node must not get
 * it a second time (the other nodes' members get it once, numbered).
 *
 * The fake: node A's log answers an append with a failure, then carries it
 * out (after the failure was handled), as a Redis that was paused past the
 * command timeout does.
 */
import assert from "node:assert/strict";
import { createMemoryCluster, type Engine } from "../../lib/cluster/engine.ts";
import type { SharedLog } from "../../lib/store/store.ts";
import { startServer, type TestServer } from "../_helpers.ts";
import { barrier, broadcast, expectFrame, messages } from "../history/_history.ts";

Deno.test("late append: a message stored after its append timed out reaches its node's members once", async () => {
  const cluster = createMemoryCluster();
  const inner = cluster.engine();
  const log = inner.log!;
  let late = false;
  const lateLog: SharedLog = {
    ...log,
    append(node, channel, batch) {
      if (!late) return log.append(node, channel, batch);
      // After the failure was handled (a macrotask follows every microtask): stored after all.
      setTimeout(() => log.append(node, channel, batch), 0);
      return Promise.resolve({ ok: false, message: "Command timed out" });
    },
  };
  const engines: Engine[] = [{ ...inner, log: lateLog }, cluster.engine()];
  const config = { rateBurst: 100_000, idleTimeout: 0 };
  const nodes: TestServer[] = engines.map((engine, i) =>
    startServer(config, { engine, nodeId: `node${i}` })
  );
  try {
    const [a, b] = nodes;
    const alice = await a.user("alice", "room");
    const bob = await a.user("bob", "room");
    const carol = await b.user("carol", "room");

    late = true;
    broadcast(alice, "room", "slow", { ref: 1 });
    assert.equal((await messages(alice, 1))[0].seq, undefined);
    const refused = await expectFrame(alice, "error");
    assert.deepEqual([refused.code, refused.ref], ["unavailable", 1]);
    const [live] = await messages(bob, 1);
    assert.deepEqual([live.text, live.seq], ["slow", undefined], "delivered as not stored");
    const [stored] = await messages(carol, 1);
    assert.deepEqual(
      [stored.text, stored.id, stored.seq],
      ["slow", live.id, 1],
      "stored after all",
    );
    assert.deepEqual(await barrier(bob), [], "not a second time on its node");

    late = false;
    broadcast(alice, "room", "next");
    assert.deepEqual((await messages(bob, 1)).map((m) => [m.text, m.seq]), [["next", 2]]);
  } finally {
    for (const node of nodes) await node[Symbol.asyncDispose]();
  }
});
