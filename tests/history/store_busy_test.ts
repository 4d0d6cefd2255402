/**
 * While another thread holds the SQLite history's write lock (the
 * checkpointer starting the log over, or RESTART-ing it), the scheduled
 * commit is put off and tried again a millisecond later instead of holding
 * the event loop; the messages then go out numbered and in order. A lock
 * that stays busy (a second by default: only another process holds it that
 * long) is waited for, and when that too times out the messages go out
 * unnumbered, as for any store failure: they are never held back for good.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { openSqliteStore } from "../../lib/store/sqlite.ts";
import { startServer, waitFor } from "../_helpers.ts";
import { broadcast, expectFrame, messages } from "./_history.ts";

/** A server on a SQLite history in a fresh directory, and a second connection to its file. */
async function serverOnFile(
  { busyTimeoutMs, storeBusyGiveUpMs }: { busyTimeoutMs: number; storeBusyGiveUpMs: number },
) {
  const dir = await Deno.makeTempDir({ prefix: "hubbub-busy-" });
  const path = join(dir, "history.db");
  const opened = openSqliteStore(path, { busyTimeoutMs });
  if (!opened.ok) throw new Error(opened.message);
  const server = startServer({}, { store: opened.store, storeBusyGiveUpMs });
  const other = new DatabaseSync(path);
  return {
    server,
    other,
    async [Symbol.asyncDispose]() {
      if (other.isTransaction) other.exec("COMMIT");
      other.close();
      await server[Symbol.asyncDispose]();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

Deno.test("history (SQLite): messages wait out another connection's write lock without blocking the server, then go out numbered and in order", async () => {
  // Put off for as long as the test takes (a waiting commit would hold this very thread).
  await using setup = await serverOnFile({ busyTimeoutMs: 5000, storeBusyGiveUpMs: 3_600_000 });
  const { server, other } = setup;
  const alice = await server.user("alice", "room");
  const bob = await server.user("bob", "room");
  other.exec("BEGIN IMMEDIATE");
  broadcast(alice, "room", "first", { ref: 1 });
  broadcast(alice, "room", "second", { ref: 2 });
  const { metrics } = server.app;
  // Tried again and again: the event loop runs its timers meanwhile (a waiting commit would
  // have held it for the store's 5 s timeout and then failed).
  await waitFor(
    "three tries that found the lock busy",
    () => Promise.resolve(metrics.historyBusy >= 3),
  );
  assert.equal(metrics.messagesStored, 0);
  assert.equal(metrics.historyFailures, 0);
  other.exec("COMMIT");
  const received = await messages(bob, 2);
  assert.deepEqual(received.map((frame) => [frame.text, frame.seq]), [["first", 1], ["second", 2]]);
  // The sender gets its copy of each message, then `sent` for it.
  const sent = [];
  for (const text of ["first", "second"]) {
    assert.equal((await expectFrame(alice, "message")).text, text);
    sent.push(await expectFrame(alice, "sent"));
  }
  assert.deepEqual(sent.map((frame) => [frame.ref, frame.seq]), [[1, 1], [2, 2]]);
  assert.equal(metrics.historyFailures, 0);
});

Deno.test("history (SQLite): a write lock held for over a second is waited for, and when that times out too the messages go out unnumbered", async () => {
  // The first try that finds the lock busy gives up on putting it off; the wait then lasts 200 ms.
  await using setup = await serverOnFile({ busyTimeoutMs: 200, storeBusyGiveUpMs: 0 });
  const { server, other } = setup;
  const alice = await server.user("alice", "room");
  const bob = await server.user("bob", "room");
  other.exec("BEGIN IMMEDIATE"); // held by this thread: the waiting commit times out
  broadcast(alice, "room", "stuck", { ref: 1 });
  // That wait holds this thread, test included: wait for its outcome before reading frames.
  const { metrics } = server.app;
  await waitFor("the waiting commit to fail", () => Promise.resolve(metrics.historyFailures === 1));
  const [received] = await messages(bob, 1);
  assert.equal(received.text, "stuck");
  assert.equal(received.seq, undefined, "unnumbered");
  assert.equal((await expectFrame(alice, "message")).text, "stuck");
  const error = await expectFrame(alice, "error");
  assert.deepEqual([error.code, error.ref], ["unavailable", 1]);
  assert.equal(metrics.historyFailures, 1);
  assert.ok(metrics.historyBusy > 0, "put off before it waited");
});
