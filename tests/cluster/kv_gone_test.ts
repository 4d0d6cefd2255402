/**
 * Review 11c, finding 3, on Deno KV: a node whose follower of a channel fell
 * so far behind that messages were gone from the store before it read them
 * (past `FOLLOW_SLACK`) closes that channel's members with 1013, as the
 * Redis and memory engines do when they cannot read back what the bus
 * skipped, so they rejoin with `since` and are told `recovered:false`;
 * members of other channels stay.
 */
import assert from "node:assert/strict";
import { createKvEngine } from "../../lib/cluster/engine_kv.ts";
import { startServer, type TestServer, withTimeout } from "../_helpers.ts";
import { barrier, broadcast, join, messages } from "../history/_history.ts";
import { cuttable, type CuttableKv, kvDir } from "./_kv.ts";

Deno.test("kv gone: messages gone before a node read them close its members of that channel with 1013", async () => {
  await using dir = await kvDir();
  const handles: CuttableKv[] = [];
  const nodes: TestServer[] = [];
  try {
    for (const i of [0, 1]) {
      const kv = cuttable(await Deno.openKv(dir.path()));
      handles.push(kv);
      // No poll and no fast path: node 1 learns of messages by its watches alone.
      const engine = createKvEngine({ kv, prefix: "gone", pollMs: 0 });
      nodes.push(startServer({ rateBurst: 100_000, idleTimeout: 0 }, { engine, nodeId: `n${i}` }));
    }
    const [a, b] = nodes;
    const alice = await a.user("alice", "room");
    const carol = await b.user("carol");
    const { epoch } = await join(carol, "room");
    const dave = await b.user("dave", "elsewhere");

    handles[1].hold(); // node 1's watches stall
    for (const text of ["one", "two", "three"]) broadcast(alice, "room", text);
    assert.deepEqual((await messages(alice, 3)).map((m) => m.seq), [1, 2, 3]);
    // As if node 1 had fallen further behind than the store keeps: the first two are gone.
    using raw = await Deno.openKv(dir.path());
    await raw.atomic().delete(["gone", "h", "room", "m", 1]).delete(["gone", "h", "room", "m", 2])
      .commit();
    handles[1].release();

    assert.deepEqual(await withTimeout(carol.closed, "carol's close"), {
      code: 1013,
      reason: "Messages were lost on the way here",
    });
    assert.deepEqual(await barrier(dave), [], "a member of another channel stays");
    // (Under another name: carol's own may not be released in the store yet.)
    const back = await b.user("cora");
    const joined = await join(back, "room", { since: { epoch, seq: 0 }, history: 10 });
    assert.equal(joined.recovered, false);
    assert.deepEqual(joined.messages.map((m: { seq: number }) => m.seq), [3]);
  } finally {
    for (const node of nodes) await node[Symbol.asyncDispose]();
    for (const kv of handles) kv[Symbol.dispose]();
  }
});
