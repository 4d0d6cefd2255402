/**
 * A channel's shared history that starts over (it expired `--history-ttl`
 * after its last message, while members stayed connected) numbers again from
 * 1. Members of other nodes must not take those seqs for ones they have seen
 * (a client drops them) nor miss them: they are closed with 1013, and
 * rejoining with `since` tells them `recovered:false`.
 *
 * Two ways a node knows where it is in a channel: from a message it delivered,
 * or only from the read of its member's join (no message came since).
 */
import assert from "node:assert/strict";
import { type Frame, withTimeout } from "../_helpers.ts";
import { startMemoryNodes } from "./_memory_nodes.ts";
import { barrier, broadcast, join, messages } from "../history/_history.ts";

const TTL_MS = 5_000;

const startNodes = () => startMemoryNodes({ history: { maxPerChannel: 100, ttlMs: TTL_MS } });

for (const known of ["a message", "a join's read"] as const) {
  Deno.test(`history restart: a history that expired with members connected closes them with 1013 (known from ${known})`, async () => {
    await using c = startNodes();
    const [a, b] = c.nodes;
    const alice = await a.user("alice", "room");
    const carol = await b.user("carol");
    let epoch = known === "a message" ? (await join(carol, "room")).epoch : undefined;
    broadcast(alice, "room", "old 1");
    broadcast(alice, "room", "old 2");
    assert.deepEqual((await messages(alice, 2)).map((m) => m.seq), [1, 2]);
    if (epoch === undefined) {
      // Node B has no member there until now: only this read tells it where the channel is.
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
    const back = await b.user("carol");
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

Deno.test("history restart: members who saw no message of the history that expired stay", async () => {
  await using c = startNodes();
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
