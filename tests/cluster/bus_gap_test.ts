/**
 * A node whose bus connection drops while the others go on (review 11c,
 * finding 3): when it is back, its members get the numbered messages they
 * missed, read back from the shared log, in order and once, before what the
 * bus brings next; when the log no longer has them, the members are closed
 * with 1013 (as a slow consumer is), so they rejoin with `since` and learn
 * of the gap, instead of missing messages silently.
 *
 * On a memory cluster: every engine is cut, node A comes back first and its
 * members talk, then node B comes back.
 */
import assert from "node:assert/strict";
import { withTimeout } from "../_helpers.ts";
import { startMemoryNodes } from "./_memory_nodes.ts";
import { barrier, broadcast, messages } from "../history/_history.ts";

const startNodes = (history?: { maxPerChannel: number; ttlMs: number }) =>
  startMemoryNodes({ history });

const texts = (frames: Record<string, unknown>[]) => frames.map((f) => [f.seq, f.text]);

Deno.test("bus gap: a node back on the bus delivers what its members missed, in order, once", async () => {
  await using c = startNodes();
  const [a, b] = c.nodes;
  const alice = await a.user("alice", "room");
  const carol = await b.user("carol", "room");
  broadcast(alice, "room", "before");
  assert.deepEqual(texts(await messages(carol, 1)), [[1, "before"]]);
  await messages(alice, 1);

  c.cluster.cut();
  c.cluster.reconnect(c.engines[0]);
  broadcast(alice, "room", "missed 1");
  broadcast(alice, "room", "missed 2");
  assert.deepEqual(texts(await messages(alice, 2)), [[2, "missed 1"], [3, "missed 2"]]);
  c.cluster.reconnect(c.engines[1]);
  broadcast(alice, "room", "after");
  assert.deepEqual(texts(await messages(alice, 1)), [[4, "after"]]);
  assert.deepEqual(texts(await messages(carol, 3)), [
    [2, "missed 1"],
    [3, "missed 2"],
    [4, "after"],
  ]);
  assert.deepEqual(await barrier(carol), [], "each once");
});

Deno.test("bus gap: a member who joined a quiet channel gets what it missed too", async () => {
  await using c = startNodes();
  const [a, b] = c.nodes;
  const alice = await a.user("alice", "room");
  const carol = await b.user("carol", "room");

  c.cluster.cut();
  c.cluster.reconnect(c.engines[0]);
  broadcast(alice, "room", "missed");
  assert.deepEqual(texts(await messages(alice, 1)), [[1, "missed"]]);
  c.cluster.reconnect(c.engines[1]);
  assert.deepEqual(texts(await messages(carol, 1)), [[1, "missed"]]);
  assert.deepEqual(await barrier(carol), []);
});

Deno.test("bus gap: what the log no longer has closes the members there with 1013", async () => {
  await using c = startNodes({ maxPerChannel: 2, ttlMs: 3_600_000 });
  const [a, b] = c.nodes;
  const alice = await a.user("alice", "room");
  const carol = await b.user("carol", "room");
  const dave = await b.user("dave", "elsewhere");
  broadcast(alice, "room", "before");
  await messages(carol, 1);
  await messages(alice, 1);

  c.cluster.cut();
  c.cluster.reconnect(c.engines[0]);
  for (const text of ["m2", "m3", "m4"]) broadcast(alice, "room", text);
  await messages(alice, 3);
  c.cluster.reconnect(c.engines[1]);
  assert.deepEqual(await withTimeout(carol.closed, "carol's close"), {
    code: 1013,
    reason: "Messages were lost on the way here",
  });
  assert.deepEqual(await barrier(dave), [], "a member of another channel stays");
});
