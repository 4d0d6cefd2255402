/**
 * The engine: what the nodes of one cluster share. A bus that carries each
 * published message once to every other node (each node delivers to its own
 * sockets), and a name store whose claims are leases: a node renews the
 * names its users hold, and a crashed node's names come free when their
 * leases run out.
 *
 * Two implementations: `createMemoryEngine` (one process; the default) and
 * the Redis one in `engine_redis.ts`. The engine moves strings and answers
 * claims; what the strings mean is `cluster.ts`'s business. A shared engine
 * also carries the cluster's message history (`log`): Redis streams
 * (`history_redis.ts`), or their in-process double (`history_memory.ts`).
 *
 * @module
 */
import type { Clock } from "../core/clock.ts";
import {
  DEFAULT_MAX_AGE_MS,
  DEFAULT_MAX_PER_CHANNEL,
  type Missed,
  type SharedLog,
} from "../store/store.ts";
import { createMemoryHistory } from "./history_memory.ts";

/** The outcome of claiming a name cluster-wide. */
export type ClaimOutcome =
  /** The name is this owner's until it stops renewing it. */
  | "claimed"
  /** Another owner holds it. */
  | "taken"
  /** The shared store cannot be asked right now: refuse the login, try again later. */
  | "unavailable";

/** A claim as the store keeps it: the name's key and who holds it. */
export interface Claim {
  readonly key: string;
  readonly owner: string;
}

/** What an engine tells the node it serves. */
export interface EngineListener {
  /** A payload another node published. */
  message(payload: string): void;
  /** The engine is connected (again): anything published meanwhile was lost; resynchronize. */
  up(): void;
  /**
   * The engine lost its connection, or cannot connect (said again on each
   * failed retry while down); `reason` is for the log.
   */
  down(reason: string): void;
  /**
   * Numbered messages of `channel` were gone from the log before this engine
   * could deliver them, or its history started over at seq 1 after it had
   * some (where the log delivers each channel itself: Deno KV); `reason` is
   * for the log.
   */
  missed?(channel: string, reason: string): void;
}

/** The shared part of a cluster, as one node sees it. */
export interface Engine {
  /** "memory" or "redis", for logs and metrics. */
  readonly kind: string;
  /** Whether other nodes can exist: false for a lone process, which skips the cluster bookkeeping. */
  readonly shared: boolean;
  /** Starts receiving; `listener.up` follows once connected. */
  start(listener: EngineListener): void;
  /** Sends `payload` to every other node; false when it could not be sent (disconnected). */
  publish(payload: string): boolean;
  /** Claims `key` for `owner` for `leaseMs`, unless another owner holds it. */
  claim(claim: Claim, leaseMs: number): ClaimOutcome | Promise<ClaimOutcome>;
  /**
   * Extends the leases of `claims`, claiming again any that vanished (the
   * store restarted, or the lease ran out while it was unreachable); resolves
   * to the claims another owner holds now, or null when the store cannot be
   * reached.
   */
  renew(claims: readonly Claim[], leaseMs: number): Promise<Claim[] | null>;
  /** Frees `key` if `owner` still holds it (compare-and-delete). */
  release(claim: Claim): void;
  /** Disconnects; nothing is received afterwards. */
  stop(): Promise<void>;
  /** The history every node shares; absent for a lone node. */
  readonly log?: SharedLog;
  /**
   * The numbered messages of `channel` after seq `after` (at most `limit`),
   * as the bus carried them, for a node that missed them on the bus; null
   * when the store cannot be reached. Absent where the log delivers each
   * channel itself (Deno KV).
   */
  replay?(channel: string, after: number, limit: number): Promise<Missed | null>;
}

/** In-process engines sharing one bus and one name store, with the store's outages at a test's command. */
export interface MemoryCluster {
  /** A new engine on the shared bus and store. */
  engine(): Engine;
  /**
   * Cuts every started engine off the store, as a Redis restart does: each
   * node is told it is down, and until `reconnect` its claims are
   * unavailable, its publications lost and its `log` unreachable. With
   * `forget`, the store comes back empty (a Redis without persistence): names
   * and history are gone, and each channel's history gets a new epoch.
   */
  cut(options?: { forget?: boolean }): void;
  /** Gives `engine` its connection back and tells its node (engines return in the order a test chooses). */
  reconnect(engine: Engine): void;
}

/** What the history of a memory cluster keeps, and its time source. */
export interface MemoryClusterOptions {
  /** Per-channel limits of the shared history (defaults: the store's). */
  history?: { maxPerChannel: number; ttlMs: number };
  /** The time source of the history's expiry (default: the system clock). */
  clock?: Pick<Clock, "now">;
}

/**
 * A set of in-process engines that share one bus, one name store and one
 * history (`log`): nodes of a cluster inside one process (tests).
 * Publications are delivered in order, in a microtask: asynchronously, as
 * over a network, but before any socket event that follows, which makes
 * tests deterministic.
 */
export function createMemoryCluster(options: MemoryClusterOptions = {}): MemoryCluster {
  return memoryEngines(true, options);
}

/** The engine of a lone process: names live in its registry, nothing is published, no `log`. */
export function createMemoryEngine(): Engine {
  return memoryEngines(false, {}).engine();
}

/** One engine's link to the shared store. */
interface Link {
  listener?: EngineListener;
  connected: boolean;
}

function memoryEngines(shared: boolean, options: MemoryClusterOptions): MemoryCluster {
  const names = new Map<string, string>();
  const links = new Map<Engine, Link>();
  /** Hands `payload` to every connected engine, as the bus does, the sender's own included. */
  const echo = (payload: string) => {
    for (const link of links.values()) {
      const { listener } = link;
      if (listener === undefined) continue;
      queueMicrotask(() =>
        link.connected && link.listener === listener && listener.message(payload)
      );
    }
  };
  const history = shared
    ? createMemoryHistory({
      maxPerChannel: options.history?.maxPerChannel ?? DEFAULT_MAX_PER_CHANNEL,
      ttlMs: options.history?.ttlMs ?? DEFAULT_MAX_AGE_MS,
      clock: options.clock,
    }, echo)
    : undefined;
  return {
    engine() {
      const link: Link = { connected: true };
      const engine: Engine = {
        kind: "memory",
        shared,
        // A stopped engine's history is out of reach, as a closed Redis connection's is.
        ...(history && {
          log: history.view(() => link.connected && links.has(engine)),
          replay: (channel: string, after: number, limit: number) =>
            Promise.resolve(
              link.connected && links.has(engine) ? history.replay(channel, after, limit) : null,
            ),
        }),
        start(l) {
          link.listener = l;
          queueMicrotask(() => link.connected && link.listener === l && l.up());
        },
        publish(payload) {
          if (!link.connected) return false;
          for (const other of links.values()) {
            if (other === link || other.listener === undefined) continue;
            const { listener } = other;
            // Received only while connected, as a Redis subscriber would.
            queueMicrotask(() =>
              other.connected && other.listener === listener && listener.message(payload)
            );
          }
          return true;
        },
        claim({ key, owner }) {
          if (!link.connected) return "unavailable";
          const holder = names.get(key);
          if (holder !== undefined && holder !== owner) return "taken";
          names.set(key, owner);
          return "claimed";
        },
        renew(claims) {
          if (!link.connected) return Promise.resolve(null);
          const lost: Claim[] = [];
          for (const claim of claims) {
            const holder = names.get(claim.key);
            if (holder === undefined) names.set(claim.key, claim.owner);
            else if (holder !== claim.owner) lost.push(claim);
          }
          return Promise.resolve(lost);
        },
        release({ key, owner }) {
          if (link.connected && names.get(key) === owner) names.delete(key);
        },
        stop() {
          link.listener = undefined;
          links.delete(engine);
          return Promise.resolve();
        },
      };
      links.set(engine, link);
      return engine;
    },
    cut({ forget = false } = {}) {
      const cut = [...links.values()].filter((link) => link.connected);
      for (const link of cut) link.connected = false;
      if (forget) {
        names.clear();
        history?.forget();
      }
      for (const link of cut) link.listener?.down("the store restarted");
    },
    reconnect(engine) {
      const link = links.get(engine);
      if (link === undefined || link.connected) return;
      link.connected = true;
      link.listener?.up();
    },
  };
}
