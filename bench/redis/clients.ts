/**
 * ioredis against node-redis, on the runtime this runs on, against one
 * Redis, in one run: pub/sub throughput (what the cluster bus does), name
 * claims (`SET NX PX`) one at a time and all at once, the compare-and-delete
 * script, and how each behaves across a Redis restart (fail fast with no
 * offline queue, reconnect, re-subscribe). hubbub's engine uses the client
 * this picks.
 *
 *   redis-server --port 6390 --save '' --appendonly no --daemonize yes
 *   deno run -A --no-lock bench/redis/clients.ts --port 6390
 *   (cd bench/redis && npm ci) && bun bench/redis/clients.ts --port 6390
 *
 * Deno loads the clients with `npm:` specifiers; Bun from this folder's
 * node_modules (package.json here pins the same versions).
 *
 * @module
 */
import { spawnSync } from "node:child_process";
import process from "node:process";

const IOREDIS = "6.0.0";
const NODE_REDIS = "6.3.1";
const isBun = "Bun" in globalThis;
const runtime = isBun ? `Bun ${process.versions.bun}` : `Deno ${process.versions.deno}`;
const portAt = process.argv.indexOf("--port");
const PORT = portAt > 0 ? Number(process.argv[portAt + 1]) : 6390;
const URL_ = `redis://127.0.0.1:${PORT}`;
const MESSAGES = 100_000;
const SEQUENTIAL = 5_000;
const CONCURRENT = 10_000;
const PAYLOAD = "x".repeat(200);
const RELEASE =
  `if redis.call('get',KEYS[1])==ARGV[1] then return redis.call('del',KEYS[1]) else return 0 end`;

/** The operations measured, the same for both clients. */
interface Client {
  name: string;
  publish(channel: string, message: string): Promise<unknown>;
  subscribe(channel: string, onMessage: (message: string) => void): Promise<void>;
  setNx(key: string, value: string): Promise<unknown>;
  release(key: string, value: string): Promise<unknown>;
  flush(): Promise<unknown>;
  close(): Promise<void>;
  /** Whether both connections are ready. */
  ready(): boolean;
}

const load = (pkg: string, version: string) => import(isBun ? pkg : `npm:${pkg}@${version}`);

async function ioredisClient(): Promise<Client> {
  const { Redis } = await load("ioredis", IOREDIS);
  const options = {
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    retryStrategy: () => 200,
    lazyConnect: true,
  };
  const commands = new Redis(URL_, options);
  const subscriber = new Redis(URL_, options);
  for (const c of [commands, subscriber]) c.on("error", () => {});
  await Promise.all([commands.connect(), subscriber.connect()]);
  const sha = await commands.script("LOAD", RELEASE);
  return {
    name: `ioredis ${IOREDIS}`,
    publish: (channel, message) => commands.publish(channel, message),
    async subscribe(channel, onMessage) {
      subscriber.on("message", (_: string, message: string) => onMessage(message));
      await subscriber.subscribe(channel);
    },
    setNx: (key, value) => commands.set(key, value, "PX", 30_000, "NX"),
    release: (key, value) => commands.evalsha(sha, 1, key, value),
    flush: () => commands.flushall(),
    async close() {
      await Promise.allSettled([commands.quit(), subscriber.quit()]);
    },
    ready: () => commands.status === "ready" && subscriber.status === "ready",
  };
}

async function nodeRedisClient(): Promise<Client> {
  const { createClient } = await load("redis", NODE_REDIS);
  const options = {
    url: URL_,
    disableOfflineQueue: true,
    socket: { reconnectStrategy: () => 200 },
  };
  const commands = createClient(options);
  const subscriber = createClient(options);
  for (const c of [commands, subscriber]) c.on("error", () => {});
  await Promise.all([commands.connect(), subscriber.connect()]);
  const sha = await commands.scriptLoad(RELEASE);
  return {
    name: `node-redis ${NODE_REDIS}`,
    publish: (channel, message) => commands.publish(channel, message),
    subscribe: (channel, onMessage) => subscriber.subscribe(channel, onMessage),
    setNx: (key, value) => commands.set(key, value, { PX: 30_000, NX: true }),
    release: (key, value) => commands.evalSha(sha, { keys: [key], arguments: [value] }),
    flush: () => commands.flushAll(),
    async close() {
      await Promise.allSettled([commands.quit(), subscriber.quit()]);
    },
    ready: () => commands.isReady && subscriber.isReady,
  };
}

const percentile = (sorted: number[], q: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * q))];

async function measure(client: Client) {
  await client.flush();
  // 1. The bus: publish without awaiting each, as hubbub does; the subscriber checks order.
  let received = 0, outOfOrder = 0, last = -1;
  let done!: () => void;
  const all = new Promise<void>((resolve) => done = resolve);
  await client.subscribe("bench", (message) => {
    const seq = Number(message.slice(0, message.indexOf(":")));
    if (seq !== last + 1) outOfOrder++;
    last = seq;
    if (++received === MESSAGES) done();
  });
  const t0 = performance.now();
  const sent: Promise<unknown>[] = [];
  for (let i = 0; i < MESSAGES; i++) sent.push(client.publish("bench", `${i}:${PAYLOAD}`));
  await Promise.all(sent);
  await all;
  const pubsubPerSec = MESSAGES / ((performance.now() - t0) / 1000);
  // 2. Claims one at a time (a login waits for one), then all at once (a login storm).
  const claimUs: number[] = [];
  for (let i = 0; i < SEQUENTIAL; i++) {
    const start = performance.now();
    await client.setNx(`name:${i}`, "node:1");
    claimUs.push((performance.now() - start) * 1000);
  }
  claimUs.sort((a, b) => a - b);
  const t1 = performance.now();
  await Promise.all(
    Array.from({ length: CONCURRENT }, (_, i) => client.setNx(`storm:${i}`, "node:1")),
  );
  const stormPerSec = CONCURRENT / ((performance.now() - t1) / 1000);
  // 3. Compare-and-delete, one at a time.
  const releaseUs: number[] = [];
  for (let i = 0; i < SEQUENTIAL; i++) {
    const start = performance.now();
    await client.release(`name:${i}`, "node:1");
    releaseUs.push((performance.now() - start) * 1000);
  }
  releaseUs.sort((a, b) => a - b);
  return {
    pubsubPerSec,
    outOfOrder: outOfOrder + (MESSAGES - received),
    claimP50: percentile(claimUs, 0.5),
    claimP99: percentile(claimUs, 0.99),
    stormPerSec,
    releaseP50: percentile(releaseUs, 0.5),
    releaseP99: percentile(releaseUs, 0.99),
  };
}

/** Restarts Redis under a connected client: how fast a command fails, and whether the bus heals. */
async function restart(client: Client) {
  let heard = 0;
  await client.subscribe("restart", () => heard++);
  spawnSync("redis-cli", ["-p", String(PORT), "shutdown", "nosave"]);
  await new Promise((resolve) => setTimeout(resolve, 300));
  const start = performance.now();
  const failed = await client.setNx("down", "x").then(() => false, () => true);
  const failMs = performance.now() - start;
  spawnSync("redis-server", [
    ...["--port", String(PORT), "--save", "", "--appendonly", "no", "--daemonize", "yes"],
  ]);
  const deadline = Date.now() + 10_000;
  while (!client.ready() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  const reconnected = client.ready();
  // Give the subscriber its moment to subscribe again, then publish.
  await new Promise((resolve) => setTimeout(resolve, 500));
  await client.publish("restart", "after").catch(() => {});
  await new Promise((resolve) => setTimeout(resolve, 300));
  return { failed, failMs, reconnected, resubscribed: heard > 0 };
}

const us = (n: number) => `${n.toFixed(0)} µs`;
const rows: string[] = [];
const results: Record<string, Awaited<ReturnType<typeof measure>>> = {};
for (const make of [ioredisClient, nodeRedisClient]) {
  for (let run = 1; run <= 2; run++) {
    const client = await make();
    const r = await measure(client);
    await client.close();
    results[`${client.name} #${run}`] = r;
    rows.push(
      `| ${runtime} | ${client.name} | ${run} | ${
        (r.pubsubPerSec / 1000).toFixed(0)
      }k | ${r.outOfOrder} | ${us(r.claimP50)} / ${us(r.claimP99)} | ${
        (r.stormPerSec / 1000).toFixed(0)
      }k | ${us(r.releaseP50)} / ${us(r.releaseP99)} |`,
    );
  }
}
const restarts: string[] = [];
for (const make of [ioredisClient, nodeRedisClient]) {
  const client = await make();
  const r = await restart(client);
  await client.close();
  restarts.push(
    `| ${runtime} | ${client.name} | ${r.failed ? `yes, in ${r.failMs.toFixed(0)} ms` : "no"} | ${
      r.reconnected ? "yes" : "no"
    } | ${r.resubscribed ? "yes" : "no"} |`,
  );
}
const best = (prefix: string, key: "pubsubPerSec" | "stormPerSec") =>
  Math.max(
    ...Object.entries(results).filter(([name]) => name.startsWith(prefix)).map(([, r]) => r[key]),
  );
const ratio = (key: "pubsubPerSec" | "stormPerSec") =>
  (best("ioredis", key) / best("node-redis", key)).toFixed(2);
console.log(
  [
    `| runtime | client | run | pub/sub msgs/s | lost or reordered | claim p50 / p99 | claims/s (10k at once) | release p50 / p99 |`,
    `|---|---|---|---|---|---|---|---|`,
    ...rows,
    "",
    `${runtime}: ioredis ÷ node-redis, best of two runs: pub/sub ${
      ratio("pubsubPerSec")
    }×, claim storm ${ratio("stormPerSec")}×`,
    "",
    `| runtime | client | command fails fast while down | reconnects | re-subscribes |`,
    `|---|---|---|---|---|`,
    ...restarts,
  ].join("\n"),
);
