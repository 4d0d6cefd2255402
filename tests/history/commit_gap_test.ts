/**
 * Under load the history commits less often (issue 17): a message that comes
 * within `commitGapMs` of the last commit waits for the rest of the gap, so
 * the messages of several reads share one transaction. At rest a message is
 * committed (and delivered) after the read that brought it, and anything
 * that must follow the waiting messages (a membership change, another frame
 * to the same members) still comes after them.
 */
import assert from "node:assert/strict";
import { createMemoryStore } from "../../lib/store/memory.ts";
import type { MessageStore } from "../../lib/store/store.ts";
import { startServer, waitFor } from "../_helpers.ts";
import { broadcast, expectFrame, messages } from "./_history.ts";

/** A memory store that records how many messages each of its writes held. */
function countingStore(): MessageStore & { writes: number[] } {
  const store = createMemoryStore({});
  const writes: number[] = [];
  return {
    ...store,
    writes,
    appendAll(entries) {
      writes.push(entries.length);
      return store.appendAll(entries);
    },
  };
}

Deno.test("history: messages that come soon after a commit wait for the gap and share the next; the first is committed at once", async () => {
  const store = countingStore();
  // A gap no test outlasts: only the membership change below commits what waits.
  await using server = startServer({}, { store, commitGapMs: 3_600_000 });
  const alice = await server.user("alice", "room");
  const bob = await server.user("bob", "room");
  broadcast(alice, "room", "first");
  // Nothing committed just before: not held back for the gap (else this waits an hour).
  assert.equal((await messages(bob, 1))[0].text, "first");
  await messages(alice, 1);
  assert.deepEqual(store.writes, [1]);

  // Each in its own read: the server has taken "second" before "third" is sent. (No barrier:
  // any frame other than a message, such as a pong, commits what waits before it goes out.)
  const taken = (count: number) =>
    waitFor(`${count} messages in`, () => Promise.resolve(server.app.metrics.messagesIn === count));
  broadcast(alice, "room", "second");
  await taken(2);
  broadcast(alice, "room", "third");
  await taken(3);
  assert.deepEqual(store.writes, [1], "both wait for the gap");

  // Alice joins another channel: a membership change commits what waits first, in order.
  alice.send({ type: "join", channel: "elsewhere" });
  assert.deepEqual((await messages(alice, 2)).map((frame) => frame.text), ["second", "third"]);
  await expectFrame(alice, "joined");
  assert.deepEqual((await messages(bob, 2)).map((frame) => frame.text), ["second", "third"]);
  assert.deepEqual(store.writes, [1, 2], "the two waiting messages in one write");
});

Deno.test("history: a burst of more messages than may wait for the gap is committed without it", async () => {
  const store = countingStore();
  await using server = startServer({ rateLimit: 100_000, rateBurst: 100_000 }, {
    store,
    commitGapMs: 3_600_000,
  });
  const alice = await server.user("alice", "room");
  const bob = await server.user("bob", "room");
  broadcast(alice, "room", "first");
  await messages(bob, 1);
  // More than MAX_WAITING (1024) while the gap runs: they go out without waiting an hour.
  for (let i = 0; i < 1100; i++) broadcast(alice, "room", `m${i}`);
  const burst = await messages(bob, 1024);
  assert.deepEqual(burst.map((frame) => frame.text), burst.map((_, i) => `m${i}`));
  assert.ok(store.writes.length >= 2 && store.writes[1] >= 1024, `writes: ${store.writes}`);
});
