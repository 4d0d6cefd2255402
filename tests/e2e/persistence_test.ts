/**
 * Durable history in a real process (Deno, Bun or a compiled binary, by
 * `HUBBUB_TARGET`): `kill -9` under acknowledged traffic, then a restart on
 * the same `--data-dir`, loses no acknowledged message, keeps the epoch, and
 * lets clients that left at any point recover exactly what they missed. With
 * `--data-dir none` a restart starts a new epoch, and recovery says so.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { type TestClient, withTimeout } from "../_helpers.ts";
import {
  assertContinuous,
  assertIn,
  member,
  readAll,
  type Seen,
  send,
  type Sent,
  watch,
} from "./_history.ts";
import { type SpawnedServer, spawnServer } from "./_server.ts";

const CHANNEL = "room";
/** Senders, each keeping `WINDOW` acknowledged broadcasts in flight. */
const SENDERS = 4;
const WINDOW = 8;
/** The server is killed once this many broadcasts are acknowledged. */
const KILL_AFTER = 300;
/** Sent after the restart, while the watchers are away. */
const AFTER_RESTART = 20;
/** Above everything the test sends, so that `since` seq 0 can recover it all. */
const HISTORY_LIMIT = 1000;
/** When the lagging member leaves, long before the kill. */
const LAGGER_LEAVES_AT = 50;
/** A generous bound: a Bun binary or a loaded machine may take a while to start or stop. */
const TRAFFIC_MS = 30_000;

const debug = Deno.env.get("DEBUG_LOG") !== undefined;

/** A server on `dataDir` (or `none`), free to read and write `root` on Deno. */
function serve(dataDir: string, root?: string): Promise<SpawnedServer> {
  return spawnServer({
    args: [
      ...["--data-dir", dataDir, "--history-limit", String(HISTORY_LIMIT)],
      ...["--rate-limit", "100000", "--rate-burst", "100000", "--connect-rate", "1000"],
    ],
    allowDirs: root === undefined ? [] : [root],
  });
}

Deno.test("persistence e2e: kill -9 under acknowledged traffic, restart on the same data dir: nothing acknowledged is lost, the epoch stays, clients recover exactly what they missed", async () => {
  const root = await Deno.makeTempDir({ prefix: "hubbub-persistence-" });
  // A directory that does not exist yet: the server creates it.
  const dataDir = join(root, "data", "hubbub");
  const clients: TestClient[] = [];
  let server: SpawnedServer | undefined;
  try {
    server = await serve(dataDir, root);
    assert.ok((await Deno.stat(join(dataDir, "history.db"))).isFile);
    const first = server;

    const watcher = await member(first.wsUrl, "watcher", CHANNEL);
    const lagger = await member(first.wsUrl, "lagger", CHANNEL);
    clients.push(watcher.client, lagger.client);
    const epoch = watcher.joined.epoch;
    assert.match(epoch, /^\S+$/);
    assert.deepEqual([watcher.joined.seq, watcher.joined.messages], [0, []]);
    const senders = [];
    for (let i = 0; i < SENDERS; i++) senders.push(await member(first.wsUrl, `s${i}`, CHANNEL));
    clients.push(...senders.map(({ client }) => client));

    // Steady traffic; the ack that reaches KILL_AFTER kills the server while the others are
    // still in flight.
    let sends = 0;
    let acked = 0;
    let inFlightAtKill = 0;
    let killedAt = 0;
    const started = performance.now();
    const watched = watch(watcher.client, CHANNEL);
    const lagged = watch(lagger.client, CHANNEL, (seen) => seen.length === LAGGER_LEAVES_AT);
    const sending: Promise<Sent>[] = senders.map(({ client }, i) =>
      send(client, `s${i}`, CHANNEL, {
        window: WINDOW,
        // Each yes is one more broadcast sent.
        more: () => killedAt === 0 && ++sends > 0,
        onAck: () => {
          if (++acked !== KILL_AFTER) return;
          first.child.kill("SIGKILL");
          killedAt = performance.now();
          inFlightAtKill = sends - acked;
        },
      })
    );
    const lagSeen = await withTimeout(lagged, "the lagging member's messages", TRAFFIC_MS);
    await lagger.client.close();
    const sent = await withTimeout(Promise.all(sending), "the traffic to end", TRAFFIC_MS);
    const watcherSeen = await withTimeout(watched, "the watcher to be cut off", TRAFFIC_MS);
    assert.equal((await first.child.status).signal, "SIGKILL");
    await first.stop();
    assert.ok(killedAt > 0, "the server was killed");
    const ackedBeforeKill = sent.flatMap((s) => s.acked);
    assert.ok(ackedBeforeKill.length >= KILL_AFTER);
    assert.ok(inFlightAtKill > 0, "the kill came with messages in flight");
    const sentBeforeKill = sent.reduce((sum, s) => sum + s.sent, 0);
    assert.match(await first.stdout, new RegExp(`store=sqlite:${escape(dataDir)}/history\\.db`));

    // The restart, on another port and the same directory.
    const restarting = performance.now();
    server = await serve(dataDir, root);
    const restarted = performance.now();
    const reader = await member(server.wsUrl, "reader", CHANNEL, {
      since: { epoch, seq: 0 },
    });
    clients.push(reader.client);
    const recoveredAt = performance.now();
    assert.equal(reader.joined.epoch, epoch, "the epoch survives the restart");
    assert.equal(reader.joined.recovered, true);
    const history: Seen[] = reader.joined.messages.map(({ seq, id, from, text }: Seen) => ({
      seq,
      id,
      from,
      text,
    }));
    assert.equal(reader.joined.seq, history.length);
    assertContinuous(history, "the history after the restart");
    assertIn(history, ackedBeforeKill, "an acknowledged message");
    // Delivered means stored: whatever any member received is kept too.
    assertIn(history, watcherSeen, "a message the watcher received");
    assertIn(history, sent.flatMap((s) => s.received), "a message a sender received");
    assertIn(history, lagSeen, "a message the lagging member received");
    // Paging back with `history` finds the same.
    const paged = await readAll(reader.client, CHANNEL, 100);
    assert.equal(paged.epoch, epoch);
    assert.deepEqual(paged.messages, history);

    // What the watchers miss from here on: messages sent after the restart.
    const late = await member(server.wsUrl, "late", CHANNEL);
    clients.push(late.client);
    let count = 0;
    const after = await withTimeout(
      send(late.client, "late", CHANNEL, { window: WINDOW, more: () => count++ < AFTER_RESTART }),
      "the messages after the restart",
      TRAFFIC_MS,
    );
    assert.equal(after.acked.length, AFTER_RESTART);
    assert.deepEqual(
      after.acked.map((m) => m.seq),
      after.acked.map((_, i) => history.length + i + 1),
    );
    const all = [...history, ...after.acked];

    for (const [name, left] of [["watcher", watcherSeen], ["lagger", lagSeen]] as const) {
      const last = left.at(-1)!.seq;
      const back = await member(server.wsUrl, name, CHANNEL, { since: { epoch, seq: last } });
      clients.push(back.client);
      assert.equal(back.joined.recovered, true, name);
      assert.equal(back.joined.epoch, epoch, name);
      assert.equal(back.joined.seq, all.length, name);
      assert.deepEqual(
        back.joined.messages.map((m: Seen) => ({
          seq: m.seq,
          id: m.id,
          from: m.from,
          text: m.text,
        })),
        all.slice(last),
        `${name} gets exactly what it missed after seq ${last}`,
      );
    }
    if (debug) {
      console.log(
        `persistence: ${ackedBeforeKill.length} acked (${
          sentBeforeKill - ackedBeforeKill.length
        } in flight, ${inFlightAtKill} counted at the kill) in ${
          Math.round(killedAt - started)
        } ms; ${history.length} kept (${
          history.length - ackedBeforeKill.length
        } stored unacknowledged); restart ${Math.round(restarted - restarting)} ms, recovery ${
          Math.round(recoveredAt - restarted)
        } ms; watcher saw ${watcherSeen.length}`,
      );
    }
  } finally {
    await Promise.all(clients.map((client) => client.close()));
    await server?.stop();
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("persistence e2e: with --data-dir none a restart starts a new epoch and since says recovered:false", async () => {
  const clients: TestClient[] = [];
  let server: SpawnedServer | undefined;
  try {
    server = await serve("none");
    const alice = await member(server.wsUrl, "alice", CHANNEL);
    clients.push(alice.client);
    let count = 0;
    const sent = await send(alice.client, "alice", CHANNEL, { window: 2, more: () => count++ < 3 });
    assert.deepEqual(sent.acked.map((m) => m.seq), [1, 2, 3]);
    const epoch = alice.joined.epoch;
    server.child.kill("SIGKILL");
    await alice.client.closed;
    await server.stop();
    assert.match(await server.stdout, /store=memory/);

    server = await serve("none");
    const back = await member(server.wsUrl, "alice", CHANNEL, { since: { epoch, seq: 3 } });
    clients.push(back.client);
    assert.equal(back.joined.recovered, false);
    assert.notEqual(back.joined.epoch, epoch);
    assert.match(back.joined.epoch, /^\S+$/);
    assert.deepEqual([back.joined.seq, back.joined.messages], [0, []]);
  } finally {
    await Promise.all(clients.map((client) => client.close()));
    await server?.stop();
  }
});

/** `text` with the characters a regular expression treats specially escaped. */
function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}
