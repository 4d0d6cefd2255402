/**
 * The client library (`client/`) against a real server process (Deno, Bun or a
 * compiled binary, by `HUBBUB_TARGET`): login, join with history, acknowledged
 * sends, paging back, and a restart that the client rides out by itself: it
 * reconnects with back-off, re-joins with `since` and delivers every message
 * once, or says `gap` when the server lost its history.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import type { Message } from "../../client/mod.ts";
import { seeded } from "../_helpers.ts";
import { assertFullRange, clientPool, seqs } from "./_client.ts";
import { type SpawnedServer, spawnServer } from "./_server.ts";

const CHANNEL = "room";
/** A restart on a loaded machine, or of a Bun binary, may take seconds. */
const RESTART_MS = 15_000;

const debug = Deno.env.get("DEBUG_LOG") !== undefined;

/** A server on `dataDir` (`none`: memory), on `port` (0: a free one), free to use `root` on Deno. */
function serve(dataDir: string, { port = 0, root }: { port?: number; root?: string } = {}) {
  return spawnServer({
    port,
    args: [
      ...["--data-dir", dataDir, "--history-limit", "20"],
      ...["--rate-limit", "1000", "--rate-burst", "1000", "--connect-rate", "1000"],
    ],
    allowDirs: root === undefined ? [] : [root],
  });
}

/** The text of a message, by seq, as the tests send them. */
const text = (seq: number) => `m${seq}`;

function assertTexts(messages: readonly Message[], what: string): void {
  for (const message of messages) assert.equal(message.text, text(message.seq!), what);
}

Deno.test("client e2e: connect, join with the last N messages, send resolves on sent, history pages back", async () => {
  await using server = await serve("none");
  await using pool = clientPool(seeded(1));
  const alice = pool.add(server.wsUrl, "alice");
  const bob = pool.add(server.wsUrl, "bob");

  assert.equal(await alice.client.connect(), "alice");
  assert.equal(alice.client.state, "open");
  const first = await alice.client.join(CHANNEL);
  assert.match(first.epoch, /^\S+$/);
  assert.deepEqual([first.seq, first.messages, first.members], [0, [], ["alice"]]);

  // Sent in one go: one connection keeps their order, so seq follows it.
  const sent = await Promise.all(
    Array.from({ length: 30 }, (_, i) => alice.client.send(CHANNEL, text(i + 1))),
  );
  assert.deepEqual(sent.map((s) => s.seq), sent.map((_, i) => i + 1));
  assert.equal(new Set(sent.map((s) => s.id)).size, 30);
  assert.equal(new Set(sent.map((s) => s.key)).size, 30, "the library gives every send its key");
  // The sender gets its own messages as events, each once, as stored.
  await alice.seen.delivered(30);
  assertFullRange(alice.seen.messages, 30, "alice");
  assertTexts(alice.seen.messages, "alice");
  assert.deepEqual(alice.seen.messages.map((m) => m.id), sent.map((s) => s.id));

  // A join with history: the last 10, as events, once each, in seq order, before join resolves.
  assert.equal(await bob.client.connect(), "bob");
  const joined = await bob.client.join(CHANNEL, { history: 10 });
  assert.equal(joined.epoch, first.epoch);
  assert.equal(joined.seq, 30);
  assert.deepEqual(seqs(joined.messages), [21, 22, 23, 24, 25, 26, 27, 28, 29, 30]);
  assert.deepEqual(bob.seen.messages, joined.messages);
  assertTexts(bob.seen.messages, "bob");
  assert.deepEqual(bob.client.members(CHANNEL), ["alice", "bob"]);

  // Live messages follow, none twice.
  const live = await alice.client.send(CHANNEL, text(31));
  assert.equal(live.seq, 31);
  await bob.seen.delivered(11);
  assert.deepEqual(seqs(bob.seen.messages), [21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31]);
  assert.deepEqual(bob.client.position(CHANNEL), { epoch: first.epoch, seq: 31 });

  // "Load older": pages before the oldest shown, then the latest (limit up to --history-limit).
  const pages = [];
  for (let before = 21; before > 1;) {
    const page = await bob.client.history(CHANNEL, { before, limit: 10 });
    assert.equal(page.epoch, first.epoch);
    pages.unshift(page.messages);
    before = page.messages[0].seq!;
  }
  assert.deepEqual(pages.map(seqs), [
    [1, 2, 3, 4, 5, 6, 7, 8, 9, 10],
    [11, 12, 13, 14, 15, 16, 17, 18, 19, 20],
  ]);
  assert.deepEqual(pages.flat(), alice.seen.messages.slice(0, 20), "history as delivered");
  assert.deepEqual(await bob.client.history(CHANNEL, { before: 1 }).then((p) => p.messages), []);
  assert.deepEqual(
    seqs((await bob.client.history(CHANNEL)).messages),
    seqs(
      alice.seen.messages.slice(11),
    ),
  );
  assert.deepEqual(seqs((await bob.client.history(CHANNEL, { limit: 3 })).messages), [29, 30, 31]);
  // Paging is not delivering.
  assert.equal(bob.seen.messages.length, 11);
  for (const { seen } of [alice, bob]) {
    assert.deepEqual([seen.gaps, seen.errors], [[], []]);
  }
});

Deno.test("client e2e: a restart on the same data dir: the client reconnects after 1012, re-joins with since, recovers with no duplicate and no gap, and sends what waited", async () => {
  const root = await Deno.makeTempDir({ prefix: "hubbub-client-" });
  let server: SpawnedServer | undefined;
  try {
    server = await serve(join(root, "data"), { root });
    const port = server.port;
    // The restarted server listens on the same port: the clients keep their URL.
    const url = server.wsUrl;
    await using pool = clientPool(seeded(2));
    const alice = pool.add(url, "alice");
    const bob = pool.add(url, "bob");
    // Carol's reconnect is held until after more is said, so that she must recover it.
    const carol = pool.add(url, "carol");
    for (const { client } of [alice, bob, carol]) {
      await client.connect();
      await client.join(CHANNEL);
    }
    const epoch = alice.client.position(CHANNEL)!.epoch;
    for (let seq = 1; seq <= 5; seq++) {
      assert.equal((await alice.client.send(CHANNEL, text(seq))).seq, seq);
    }
    for (const { seen } of [alice, bob, carol]) await seen.delivered(5);

    // SIGTERM: every client hears 1012 and starts to reconnect by itself.
    carol.sockets.hold();
    const restarting = [alice, bob, carol].map(({ seen }) =>
      seen.next("state", (s) => s.state === "reconnecting" && s.code === 1012, RESTART_MS)
    );
    const rejoined = [alice, bob].map(({ seen }) => seen.next("joined", () => true, RESTART_MS));
    const stopping = performance.now();
    await server.stop();
    await Promise.all(restarting);
    // Sent while the server is down: they wait in the outbox.
    const waiting = [6, 7, 8].map((seq) => alice.client.send(CHANNEL, text(seq)));
    assert.notEqual(alice.client.state, "open");

    const starting = performance.now();
    server = await serve(join(root, "data"), { port, root });
    const started = performance.now();
    for (const joined of await Promise.all(rejoined)) {
      assert.equal(joined.epoch, epoch, "the epoch survives the restart");
      assert.equal(joined.recovered, true);
    }
    const recovered = performance.now();
    assert.deepEqual((await Promise.all(waiting)).map((s) => s.seq), [6, 7, 8]);
    for (const seq of [9, 10]) {
      assert.equal((await alice.client.send(CHANNEL, text(seq))).seq, seq);
    }
    await alice.seen.delivered(10);
    await bob.seen.delivered(10);

    // Carol comes back after all that: the re-join brings exactly what she missed.
    const carolBack = carol.seen.next("joined", () => true, RESTART_MS);
    carol.sockets.release();
    const back = await carolBack;
    assert.deepEqual([back.epoch, back.recovered, back.seq], [epoch, true, 10]);
    assert.deepEqual(seqs(back.messages), [6, 7, 8, 9, 10]);

    for (const { seen } of [alice, bob, carol]) {
      assertFullRange(seen.messages, 10, seen.label);
      assertTexts(seen.messages, seen.label);
      assert.deepEqual([seen.gaps, seen.errors], [[], []], seen.label);
      const opened = seen.states.filter((s) => s.state === "open").length;
      assert.equal(opened, 2, `${seen.label} logged in twice`);
    }
    // Every client saw the same messages.
    assert.deepEqual(bob.seen.messages, alice.seen.messages);
    assert.deepEqual(carol.seen.messages, alice.seen.messages);
    if (debug) {
      console.log(
        `client restart: stop ${Math.round(starting - stopping)} ms, start ${
          Math.round(started - starting)
        } ms, re-joined ${Math.round(recovered - started)} ms after`,
      );
    }
  } finally {
    await server?.stop();
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("client e2e: with --data-dir none a restart loses the history: the client emits gap, then goes on in the new epoch", async () => {
  let server: SpawnedServer | undefined = await serve("none");
  try {
    const port = server.port;
    await using pool = clientPool(seeded(3));
    const alice = pool.add(server.wsUrl, "alice");
    await alice.client.connect();
    await alice.client.join(CHANNEL, { history: 10 });
    const epoch = alice.client.position(CHANNEL)!.epoch;
    for (let seq = 1; seq <= 3; seq++) await alice.client.send(CHANNEL, text(seq));
    await alice.seen.delivered(3);

    const gap = alice.seen.next("gap", () => true, RESTART_MS);
    const rejoined = alice.seen.next("joined", () => true, RESTART_MS);
    await server.stop();
    server = await serve("none", { port });
    const lost = await gap;
    assert.deepEqual(lost.previous, { epoch, seq: 3 });
    assert.notEqual(lost.epoch, epoch);
    assert.equal(lost.channel, CHANNEL);
    const joined = await rejoined;
    assert.deepEqual([joined.epoch, joined.recovered, joined.seq], [lost.epoch, false, 0]);

    // The new epoch numbers from 1 again, and the client delivers it.
    assert.equal((await alice.client.send(CHANNEL, "after")).seq, 1);
    await alice.seen.delivered(4);
    assert.deepEqual(seqs(alice.seen.messages), [1, 2, 3, 1]);
    assert.equal(alice.seen.messages[3].text, "after");
    assert.deepEqual(alice.client.position(CHANNEL), { epoch: lost.epoch, seq: 1 });
    assert.equal(alice.seen.gaps.length, 1);
  } finally {
    await server?.stop();
  }
});

Deno.test("client e2e: close() then connect() re-joins from where the client was: what it missed arrives once", async () => {
  await using server = await serve("none");
  await using pool = clientPool(seeded(4));
  const alice = pool.add(server.wsUrl, "alice");
  const bob = pool.add(server.wsUrl, "bob");
  for (const { client } of [alice, bob]) {
    await client.connect();
    await client.join(CHANNEL);
  }
  for (let seq = 1; seq <= 3; seq++) await alice.client.send(CHANNEL, text(seq));
  await bob.seen.delivered(3);

  // Bob is gone once the server says so to alice: what comes next he misses.
  const left = alice.seen.next("presence", (p) => p.event === "leave" && p.name === "bob");
  bob.client.close();
  assert.equal(bob.client.state, "closed");
  await assert.rejects(bob.client.send(CHANNEL, "never"), { code: "closed" });
  await left;
  for (let seq = 4; seq <= 6; seq++) await alice.client.send(CHANNEL, text(seq));

  const rejoined = bob.seen.next("joined");
  assert.equal(await bob.client.connect(), "bob");
  const back = await rejoined;
  assert.deepEqual([back.recovered, back.seq, seqs(back.messages)], [true, 6, [4, 5, 6]]);
  assertFullRange(bob.seen.messages, 6, "bob");
  assertTexts(bob.seen.messages, "bob");
  assert.deepEqual(bob.seen.gaps, []);
});
