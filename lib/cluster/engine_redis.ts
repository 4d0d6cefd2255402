/**
 * The Redis engine: the cluster bus is one Redis pub/sub channel (each node
 * publishes a tick's messages once, and every node subscribes), and names are
 * keys claimed with `SET key owner NX PX lease`, renewed by a script that
 * also claims again what a restarted Redis forgot, and freed by a
 * compare-and-delete script so a node never frees a name it lost.
 *
 * The channels' shared history (`log`, `history_redis.ts`) lives in the
 * same Redis, under the same prefix, and publishes on the same bus.
 *
 * It uses two connections (a subscribed connection can do nothing else) and
 * no offline queue: while Redis is down, claims answer "unavailable" at once
 * instead of piling up, and the node serves its own sockets alone until the
 * client library reconnects.
 *
 * @module
 */
import { Redis, type RedisOptions } from "ioredis";
import type { Claim, ClaimOutcome, Engine, EngineListener } from "./engine.ts";
import { createRedisLog } from "./history_redis.ts";
import { DEFAULT_MAX_AGE_MS, DEFAULT_MAX_PER_CHANNEL } from "../store/store.ts";

/** How the engine reaches Redis. */
export interface RedisEngineOptions {
  /** `redis://[user:password@]host:port[/db]` or `rediss://…`. */
  url: string;
  /** Prefix of the bus channel and of every key. */
  prefix: string;
  /** Per-channel limits of the shared history (defaults: the store's, 1000 messages and 7 days). */
  history?: { maxPerChannel: number; ttlMs: number };
}

/** Milliseconds a Redis command may take before the engine treats Redis as unreachable. */
const COMMAND_TIMEOUT_MS = 2000;

/** Claims renewed per script call, so one call never blocks Redis for long. */
const RENEW_CHUNK = 500;

/** Extends each key's lease if its owner still holds it, claims it if nobody does; returns the lost. */
const RENEW_SCRIPT = `
local lost = {}
for i, key in ipairs(KEYS) do
  local owner = ARGV[i + 1]
  local holder = redis.call('GET', key)
  if holder == owner then
    redis.call('PEXPIRE', key, ARGV[1])
  elseif not holder then
    redis.call('SET', key, owner, 'PX', ARGV[1])
  else
    lost[#lost + 1] = i
  end
end
return lost`;

/** Deletes the key only if the caller still holds it. */
const RELEASE_SCRIPT = `
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0`;

/** Creates an engine on the Redis at `url`; it connects on `start`. */
export function createRedisEngine({ url, prefix, history }: RedisEngineOptions): Engine {
  const channel = `${prefix}:bus`;
  const keyOf = (name: string) => `${prefix}:name:${name}`;
  const options: RedisOptions = {
    lazyConnect: true,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    commandTimeout: COMMAND_TIMEOUT_MS,
    // Back off to a retry every 2 s, forever: Redis coming back is the normal end of an outage.
    retryStrategy: (attempt) => Math.min(50 * 2 ** attempt, 2000),
  };
  const commands = new Redis(url, { ...options, connectionName: `${prefix}-commands` });
  const subscriber = new Redis(url, {
    ...options,
    connectionName: `${prefix}-bus`,
    autoResubscribe: true,
  });
  commands.defineCommand("hubbubRenew", { lua: RENEW_SCRIPT });
  commands.defineCommand("hubbubRelease", { lua: RELEASE_SCRIPT, numberOfKeys: 1 });
  type Scripted = Redis & {
    hubbubRenew(keyCount: number, ...args: (string | number)[]): Promise<number[]>;
    hubbubRelease(key: string, owner: string): Promise<number>;
  };
  const scripted = commands as Scripted;

  let listener: EngineListener | undefined;
  let up = false;
  let stopped = false;
  let lastError = "";

  /** Up once both connections are ready and the bus is subscribed. */
  const update = () => {
    const ready = commands.status === "ready" && subscriber.status === "ready" && subscribed;
    if (ready === up || stopped) return;
    up = ready;
    if (up) listener?.up();
    else listener?.down(lastError || "connection closed");
  };
  let subscribed = false;

  const onError = (error: Error) => {
    lastError = error.message;
    // Unreachable from the start: say so (the node logs it once); later errors surface as down/up.
    if (!up && !stopped) listener?.down(lastError);
  };
  commands.on("error", onError);
  subscriber.on("error", onError);
  commands.on("ready", update);
  commands.on("close", update);
  subscriber.on("close", () => {
    subscribed = false;
    update();
  });
  subscriber.on("ready", () => {
    // autoResubscribe subscribes again after a reconnect; the first time, we do.
    subscriber.subscribe(channel).then(() => {
      subscribed = true;
      update();
    }, onError);
  });
  subscriber.on("message", (from: string, payload: string) => {
    if (from === channel && !stopped) listener?.message(payload);
  });

  const log = createRedisLog(commands, {
    prefix,
    busChannel: channel,
    maxPerChannel: history?.maxPerChannel ?? DEFAULT_MAX_PER_CHANNEL,
    ttlMs: history?.ttlMs ?? DEFAULT_MAX_AGE_MS,
  });

  return {
    kind: "redis",
    shared: true,
    log,
    replay: (channel, after, limit) =>
      up ? log.replay(channel, after, limit) : Promise.resolve(null),
    start(l) {
      listener = l;
      // Failures are retried by the client; they surface as down/up, never as rejections.
      commands.connect().catch(onError);
      subscriber.connect().catch(onError);
    },
    publish(payload) {
      if (!up) return false;
      commands.publish(channel, payload).catch(onError);
      return true;
    },
    async claim({ key, owner }, leaseMs): Promise<ClaimOutcome> {
      if (!up) return "unavailable";
      try {
        const answer = await commands.set(keyOf(key), owner, "PX", leaseMs, "NX");
        return answer === "OK" ? "claimed" : "taken";
      } catch (error) {
        onError(error as Error);
        // A timed-out SET may still run (Redis was slow, not gone): the login told `unavailable`
        // must not hold the name for a lease. Sent after it on one connection, this runs after it.
        scripted.hubbubRelease(keyOf(key), owner).catch(() => {});
        return "unavailable";
      }
    },
    async renew(claims, leaseMs) {
      if (!up) return null;
      const lost: Claim[] = [];
      try {
        for (let at = 0; at < claims.length; at += RENEW_CHUNK) {
          const chunk = claims.slice(at, at + RENEW_CHUNK);
          const indexes = await scripted.hubbubRenew(
            chunk.length,
            ...chunk.map((claim) => keyOf(claim.key)),
            leaseMs,
            ...chunk.map((claim) => claim.owner),
          );
          for (const index of indexes) lost.push(chunk[index - 1]);
        }
      } catch (error) {
        onError(error as Error);
        return null;
      }
      return lost;
    },
    release({ key, owner }) {
      if (!up) return; // the lease frees it
      scripted.hubbubRelease(keyOf(key), owner).catch(onError);
    },
    async stop() {
      stopped = true;
      await Promise.allSettled([quit(commands), quit(subscriber)]);
    },
  };
}

/** Closes a connection politely when it is open, at once otherwise. */
async function quit(connection: Redis): Promise<void> {
  if (connection.status === "ready") {
    try {
      await connection.quit();
      return;
    } catch {
      // fall through
    }
  }
  connection.disconnect();
}
