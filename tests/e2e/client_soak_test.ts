/**
 * A churn soak of the client library against real server processes: clients
 * in one channel send with `send` (keys chosen by the library) while the test
 * cuts their sockets at random and, on one node, restarts the server midway.
 * Each client reconnects by itself, re-joins with `since` and re-sends what
 * was not acknowledged. At the end every send has resolved, the history holds
 * every text exactly once, and every client delivered seq 1..N, each once.
 * Bounded: a fixed seed, a fixed number of messages and of cuts, every wait
 * bounded.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import type { Message, Sent } from "../../client/mod.ts";
import { seeded, withTimeout } from "../_helpers.ts";
import { assertFullRange, clientPool, type PoolClient } from "./_client.ts";
import { startRedis } from "./_redis.ts";
import { type SpawnedServer, spawnServer } from "./_server.ts";

const CHANNEL = "soak";
const CLIENTS = 12;
/** Messages each client sends. */
const PER_CLIENT = 40;
const TOTAL = CLIENTS * PER_CLIENT;
/** Sends each client keeps unacknowledged at once. */
const WINDOW = 3;
/** Chance that a client's socket is cut when it delivers a message, or logs in. */
const CUT_ON_MESSAGE = 1 / 100;
const CUT_ON_OPEN = 1 / 5;
/** Cuts per client at most, so that the soak ends. */
const MAX_CUTS = 6;
/**
 * Above TOTAL: a client away for a while must be able to recover all it missed
 * (`recovered:true`), so any gap would be a bug, not the history's size.
 */
const HISTORY_LIMIT = 1000;
const PAGE = 100;
/** Bounds for a loaded machine, or a Bun binary that restarts. */
const SENDS_MS = 20_000;
const DELIVERY_MS = 10_000;
/** `SOAK_SEED` replays another run. */
const SEED = Number(Deno.env.get("SOAK_SEED") ?? 15);

const debug = Deno.env.get("DEBUG_LOG") !== undefined;

const SERVER_ARGS = [
  ...["--history-limit", String(HISTORY_LIMIT), "--history-size", String(HISTORY_LIMIT)],
  ...["--rate-limit", "100000", "--rate-burst", "100000", "--connect-rate", "10000"],
];

/** What a soak did, for the log. */
type Figures = { ms: number; cuts: number; reconnects: number; resent: number };

/**
 * Runs the soak on `urls`: client i starts on `urls[i % urls.length]` and each reconnect goes
 * to the next one, as behind a load balancer, so that a client recovers on another node than
 * the one it sent on. `midway`, when given, runs once half the messages are acknowledged, while
 * traffic goes on.
 */
async function soak(
  urls: readonly string[],
  midway?: () => Promise<void>,
): Promise<Figures> {
  const random = seeded(SEED);
  await using pool = clientPool(random);
  const members: PoolClient[] = [];
  for (let i = 0; i < CLIENTS; i++) {
    let sockets = i;
    const member = pool.add(urls[0], `c${i}`, {}, () => urls[sockets++ % urls.length]);
    members.push(member);
    const cut = (chance: number) => {
      if (member.sockets.dropped < MAX_CUTS && random() < chance) member.sockets.drop();
    };
    member.client.on("message", () => cut(CUT_ON_MESSAGE));
    // Cut right after a login: the re-joins and re-sends written then are lost too.
    member.client.on("state", (s) => {
      if (s.state === "open" && member.seen.states.some((p) => p.state === "reconnecting")) {
        cut(CUT_ON_OPEN);
      }
    });
  }
  await withTimeout(
    Promise.all(members.map(async ({ client }) => {
      await client.connect();
      await client.join(CHANNEL);
    })),
    "every client to join",
    DELIVERY_MS,
  );
  for (const { client } of members) assert.deepEqual(client.position(CHANNEL)?.seq, 0);

  const started = performance.now();
  let acked = 0;
  let midwayDone: Promise<void> | undefined;
  const sending = members.map(async ({ client }, i) => {
    const sent: Sent[] = [];
    let next = 0;
    const chain = async () => {
      while (next < PER_CLIENT) {
        const text = `c${i}-${next++}`;
        sent.push(await client.send(CHANNEL, text));
        if (++acked === TOTAL / 2 && midway) midwayDone = midway();
      }
    };
    await Promise.all(Array.from({ length: WINDOW }, chain));
    return sent;
  });
  const sent = (await withTimeout(Promise.all(sending), "every send to resolve", SENDS_MS)).flat();
  await midwayDone;
  await withTimeout(
    Promise.all(members.map(({ seen }) => seen.delivered(TOTAL, DELIVERY_MS))),
    "every client to deliver every message",
    DELIVERY_MS,
  ).catch((error) => {
    // Say who is short and where, rather than only that the wait timed out.
    const short = members.filter(({ seen }) => seen.messages.length < TOTAL).map(({ seen }) => {
      const hole = seen.messages.findIndex((m, i) => m.seq !== i + 1);
      return `${seen.label}: ${seen.messages.length} delivered, ${seen.gaps.length} gaps, ${
        hole < 0 ? "no hole" : `seq ${seen.messages[hole].seq} at ${hole + 1}`
      }`;
    });
    throw new Error(`${error.message}; ${short.join("; ")}`);
  });
  const ms = performance.now() - started;

  // The history, paged back from the latest: every text exactly once, seq 1..TOTAL.
  const reader = members[0].client;
  const pages: Message[][] = [];
  let before: number | undefined;
  for (;;) {
    const page = await reader.history(CHANNEL, { limit: PAGE, ...(before && { before }) });
    pages.unshift(page.messages);
    if (page.messages.length < PAGE || page.messages[0].seq === 1) break;
    before = page.messages[0].seq;
  }
  const history = pages.flat();
  const texts = new Map<string, number>();
  for (const message of history) texts.set(message.text, (texts.get(message.text) ?? 0) + 1);
  const twice = [...texts].filter(([, count]) => count > 1).map(([text]) => text);
  assert.deepEqual(twice, [], "texts stored twice");
  const missing = sent.filter((s) => !texts.has(history[s.seq - 1]?.text ?? ""));
  assert.deepEqual(missing, [], "acknowledged sends missing from the history");
  assertFullRange(history, TOTAL, "the history");
  // Every send resolved with the message the history holds at its seq.
  const bySeq = new Map(sent.map((s) => [s.seq, s]));
  assert.equal(bySeq.size, TOTAL, "every send has its own seq");
  for (const message of history) assert.equal(message.id, bySeq.get(message.seq!)?.id);

  // Every client delivered the whole range, each once, as stored, with no gap to excuse a hole.
  for (const { seen } of members) {
    assert.deepEqual(seen.gaps, [], `${seen.label}: gaps`);
    assert.deepEqual(seen.errors, [], `${seen.label}: errors`);
    assertFullRange(seen.messages, TOTAL, seen.label);
    assert.deepEqual(seen.messages.map((m) => m.id), history.map((m) => m.id), seen.label);
  }

  // The churn did happen: sockets were cut and unacknowledged sends went out again.
  const cuts = members.reduce((sum, { sockets }) => sum + sockets.dropped, 0);
  const reconnects = members.reduce(
    (sum, { seen }) => sum + seen.states.filter((s) => s.state === "open").length - 1,
    0,
  );
  let resent = 0;
  for (const { sockets } of members) {
    const writes = new Map<unknown, number>();
    for (const frame of sockets.written) {
      if (frame.type === "broadcast") writes.set(frame.key, (writes.get(frame.key) ?? 0) + 1);
    }
    resent += [...writes.values()].filter((count) => count > 1).length;
  }
  assert.ok(cuts >= CLIENTS, `only ${cuts} cuts`);
  assert.ok(resent > 0, "no send was re-sent");
  return { ms: Math.round(ms), cuts, reconnects, resent };
}

function report(what: string, figures: Figures): void {
  if (!debug) return;
  const { ms, cuts, reconnects, resent } = figures;
  console.log(
    `${what}, seed ${SEED}: ${TOTAL} messages from ${CLIENTS} clients in ${ms} ms; ${cuts} cuts, ${reconnects} reconnects, ${resent} sends re-sent`,
  );
}

Deno.test("client soak e2e: one node on SQLite, sockets cut at random and a restart midway: every send stored once, every client delivers 1..N once", async () => {
  const root = await Deno.makeTempDir({ prefix: "hubbub-client-soak-" });
  const dataDir = join(root, "data");
  const serve = (port = 0) =>
    spawnServer({ port, args: ["--data-dir", dataDir, ...SERVER_ARGS], allowDirs: [root] });
  let server: SpawnedServer | undefined;
  try {
    server = await serve();
    const { port, wsUrl } = server;
    const figures = await soak([wsUrl], async () => {
      await server!.stop();
      server = await serve(port);
    });
    report("client soak (sqlite, restart midway)", figures);
  } finally {
    await server?.stop();
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("client soak e2e: two nodes on Redis, clients on both and each reconnect on the other, sockets cut at random: every send stored once, every client delivers 1..N once", async () => {
  await using redis = await startRedis();
  const nodes = await Promise.all(
    [0, 1].map(() => spawnServer({ args: ["--redis-url", redis.url, ...SERVER_ARGS] })),
  );
  try {
    const figures = await soak(nodes.map((node) => node.wsUrl));
    report("client soak (2 nodes, redis)", figures);
  } finally {
    await Promise.all(nodes.map((node) => node.stop()));
  }
});
