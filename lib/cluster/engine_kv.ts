/**
 * The Deno KV engine: what the nodes sharing one KV store share, with no
 * server beside them. Where Deno KV is one store for many isolates (the
 * workers of `deno serve --parallel` on one local file; the instances of a
 * Deno Deploy app), they form a cluster.
 *
 * - The bus is a log in KV (`kv_bus.ts`), read by every engine in one order,
 *   optionally sped up by a `BroadcastChannel` (never relied on alone). It
 *   carries everything but chat messages.
 * - Names are leases: `[P, "name", KEY]` → `{owner, expiresAt}`. A claim
 *   succeeds when the key is absent or its lease has run out by the expiry
 *   stored in the value (KV's own `expireIn` only says when it may delete the
 *   entry, not that it has), checked by versionstamp so exactly one of
 *   racing claims wins; renewal extends the leases an owner still holds and
 *   claims again those that vanished; release deletes only an entry whose
 *   owner is the caller, checked by versionstamp (compare-and-delete).
 *   Releases made together (a node's stop releases every name it holds) are
 *   deleted together, 50 per atomic operation. Renewals and releases run in
 *   turn with the engine's other writes, so a release is never undone by a
 *   renewal asked for before it.
 * - The history (`log`, `history_kv.ts`) numbers and stores a channel's
 *   messages in one atomic operation on that channel's keys, and delivers
 *   them from there to the engines that follow the channel (`kv_follow.ts`:
 *   a watch of each followed channel's head, a poll, and the fast path); the
 *   bus carries the rest (presence, membership, names' news).
 *
 * The engine is up while its watch of the bus runs; a KV error puts it down,
 * and it tries again (every 2 s at most) until the watch runs again. It
 * never opens or closes the store: its owner does (`Deno.*` lives in
 * `lib/runtime/` and `main.ts`).
 *
 * @module
 */
import type { Clock } from "../core/clock.ts";
import { DEFAULT_MAX_AGE_MS, DEFAULT_MAX_PER_CHANNEL } from "../store/store.ts";
import type { Claim, ClaimOutcome, Engine, EngineListener } from "./engine.ts";
import { createKvLog } from "./history_kv.ts";
import { KV_LIMITS, type KvEntryMaybe, type KvHandle, type KvKey, patient } from "./kv.ts";
import { contend, createKvBus, type FastPath } from "./kv_bus.ts";

export type { FastPath } from "./kv_bus.ts";
export type { KvHandle } from "./kv.ts";

/** What the KV engine runs on. */
export interface KvEngineOptions {
  /** The store, opened by the caller (`await Deno.openKv(path)`), who also closes it. */
  kv: KvHandle;
  /** First part of every key: clusters with different prefixes share nothing. */
  prefix: string;
  /** Per-channel limits of the shared history (defaults: the store's, 1000 messages and 7 days). */
  history?: { maxPerChannel: number; ttlMs: number };
  /**
   * A `BroadcastChannel` (or alike) to the other engines of this process,
   * which carries the bus's entries ahead of the watch; the engine closes it
   * when it stops.
   */
  fastPath?: FastPath;
  /** The time stored in leases and messages and compared with them (default: the system clock). */
  clock?: Pick<Clock, "now">;
  /**
   * How often to read the bus's head and the followed channels' heads
   * besides watching them, in ms (default 1000; 0: never): a local store's
   * watch misses other processes' writes.
   */
  pollMs?: number;
}

/** A name's lease as stored. */
type Lease = { owner: string; expiresAt: number };

/** Claims renewed or released per atomic operation (one check and one set or delete each). */
const NAMES_CHUNK = 50;

/** Commits tried before a claim, a renewal or a release gives up (the store is being fought over). */
const MAX_ATTEMPTS = 50;

function parseLease(value: unknown): Lease | null {
  const lease = value as Partial<Lease> | null;
  return lease !== null && typeof lease === "object" && typeof lease.owner === "string" &&
      typeof lease.expiresAt === "number"
    ? lease as Lease
    : null;
}

/**
 * Creates an engine on the KV store `kv`; it starts watching on `start`.
 *
 * @example
 * ```ts
 * import { createKvEngine } from "./engine_kv.ts";
 * const kv = await Deno.openKv("./data/hubbub.kv");
 * const engine = createKvEngine({
 *   kv,
 *   prefix: "hubbub",
 *   fastPath: new BroadcastChannel("hubbub"),
 * });
 * // … createCluster({ engine, … }); at the end:
 * await engine.stop();
 * kv.close();
 * ```
 */
export function createKvEngine(options: KvEngineOptions): Engine {
  const { prefix, fastPath } = options;
  const kv = patient(options.kv);
  const now = () => (options.clock ?? Date).now();
  const strong = { consistency: "strong" } as const;
  const bus = createKvBus({ kv, prefix, fastPath, pollMs: options.pollMs });
  let listener: EngineListener | undefined;
  const log = createKvLog(kv, bus, {
    prefix,
    maxPerChannel: options.history?.maxPerChannel ?? DEFAULT_MAX_PER_CHANNEL,
    ttlMs: options.history?.ttlMs ?? DEFAULT_MAX_AGE_MS,
    now,
    deliver: (payload) => listener?.message(payload),
    // The node tells that channel's members (it closes them, and they rejoin with `since`).
    lost: (channel, reason) => listener?.missed?.(channel, reason),
    fastPath,
    pollMs: options.pollMs ?? 1000,
  });
  const nameKey = (key: string): KvKey => [prefix, "name", key];
  const held = (entry: KvEntryMaybe, time: number): Lease | null => {
    const lease = parseLease(entry.value);
    return lease !== null && lease.expiresAt > time ? lease : null;
  };

  const claim = async ({ key, owner }: Claim, leaseMs: number): Promise<ClaimOutcome> => {
    for (let tries = 1; tries <= MAX_ATTEMPTS; tries++) {
      const entry = await kv.get(nameKey(key), strong);
      const time = now();
      const holder = held(entry, time);
      if (holder !== null && holder.owner !== owner) return "taken";
      const lease: Lease = { owner, expiresAt: time + leaseMs };
      const result = await kv.atomic()
        .check({ key: nameKey(key), versionstamp: entry.versionstamp })
        .set(nameKey(key), lease, { expireIn: leaseMs })
        .commit();
      if (result.ok) return "claimed";
      // Someone else wrote it meanwhile: read who holds it now.
      await contend(tries);
    }
    return "unavailable";
  };

  /** Reads `keys`, `KV_LIMITS.readKeys` at a time (at once). */
  const readMany = async (keys: readonly KvKey[]): Promise<KvEntryMaybe[]> => {
    const reads: Promise<KvEntryMaybe[]>[] = [];
    for (let at = 0; at < keys.length; at += KV_LIMITS.readKeys) {
      reads.push(kv.getMany(keys.slice(at, at + KV_LIMITS.readKeys), strong));
    }
    return (await Promise.all(reads)).flat();
  };

  /** Renews a chunk in one atomic operation; the claims another owner holds. */
  const renewChunk = async (claims: readonly Claim[], leaseMs: number): Promise<Claim[]> => {
    for (let tries = 1; tries <= MAX_ATTEMPTS; tries++) {
      const keys = claims.map((claim) => nameKey(claim.key));
      const entries = await readMany(keys);
      const time = now();
      const lost: Claim[] = [];
      const op = kv.atomic();
      claims.forEach((claim, i) => {
        const holder = held(entries[i], time);
        if (holder !== null && holder.owner !== claim.owner) return lost.push(claim);
        const lease: Lease = { owner: claim.owner, expiresAt: time + leaseMs };
        op.check({ key: keys[i], versionstamp: entries[i].versionstamp })
          .set(keys[i], lease, { expireIn: leaseMs });
      });
      if (lost.length === claims.length) return lost;
      if ((await op.commit()).ok) return lost;
      await contend(tries);
    }
    throw new Error("Too much contention on the names");
  };

  /** Deletes, in one atomic operation, the leases of a chunk that their owners still hold. */
  const releaseChunk = async (claims: readonly Claim[]): Promise<void> => {
    for (let tries = 1; tries <= MAX_ATTEMPTS; tries++) {
      const keys = claims.map((claim) => nameKey(claim.key));
      const entries = await readMany(keys);
      const op = kv.atomic();
      const deleting = new Set<string>();
      claims.forEach((claim, i) => {
        if (parseLease(entries[i].value)?.owner !== claim.owner || deleting.has(claim.key)) return;
        deleting.add(claim.key);
        op.check({ key: keys[i], versionstamp: entries[i].versionstamp }).delete(keys[i]);
      });
      if (deleting.size === 0 || (await op.commit()).ok) return;
      await contend(tries);
    }
    throw new Error("Too much contention on the names");
  };

  /** Released names not deleted yet: the deletion queued next takes them all. */
  let releasing: Claim[] = [];

  return {
    kind: "kv",
    shared: true,
    log,
    start(started) {
      listener = started;
      bus.start(started);
    },
    publish(payload) {
      return bus.publish(payload);
    },
    claim(claimed, leaseMs) {
      if (!bus.up) return "unavailable";
      return bus.track(claim(claimed, leaseMs).catch(() => "unavailable" as const));
    },
    renew(claims, leaseMs) {
      if (!bus.up) return Promise.resolve(null);
      return bus.serial(async () => {
        const lost: Claim[] = [];
        for (let at = 0; at < claims.length; at += NAMES_CHUNK) {
          lost.push(...await renewChunk(claims.slice(at, at + NAMES_CHUNK), leaseMs));
        }
        return lost;
      }).catch(() => null);
    },
    release(claim) {
      if (!bus.up) return; // the lease frees it
      releasing.push(claim);
      if (releasing.length > 1) return; // queued already: that deletion takes this one too
      // Together: one operation per name made the stop of a node of 1000 users take up to a second.
      bus.serial(async () => {
        const claims = releasing;
        releasing = [];
        for (let at = 0; at < claims.length; at += NAMES_CHUNK) {
          // What cannot be deleted now is freed by its lease.
          await releaseChunk(claims.slice(at, at + NAMES_CHUNK)).catch(() => {});
        }
      }).catch(() => {});
    },
    async stop() {
      await log.stop();
      return bus.stop();
    },
  };
}
