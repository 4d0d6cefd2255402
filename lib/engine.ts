/**
 * The engine: what the nodes of one cluster share. A bus that carries each
 * published message once to every other node (each node delivers to its own
 * sockets), and a name store whose claims are leases: a node renews the
 * names its users hold, and a crashed node's names come free when their
 * leases run out.
 *
 * Two implementations: `createMemoryEngine` (one process; the default) and
 * the Redis one in `engine_redis.ts`. The engine moves strings and answers
 * claims; what the strings mean is `cluster.ts`'s business.
 *
 * @module
 */

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
}

/**
 * A set of in-process engines that share one bus and one name store: nodes
 * of a cluster inside one process (tests), or, alone, the single node a
 * plain `hubbub` runs. Publications are delivered in order, in a microtask:
 * asynchronously, as over a network, but before any socket event that
 * follows, which makes tests deterministic.
 */
export function createMemoryCluster(): { engine(): Engine } {
  return memoryEngines(true);
}

/** The engine of a lone process: names live in its registry, nothing is published. */
export function createMemoryEngine(): Engine {
  return memoryEngines(false).engine();
}

function memoryEngines(shared: boolean): { engine(): Engine } {
  const names = new Map<string, string>();
  const listeners = new Set<EngineListener>();
  return {
    engine() {
      let listener: EngineListener | undefined;
      const engine: Engine = {
        kind: "memory",
        shared,
        start(l) {
          listener = l;
          listeners.add(l);
          queueMicrotask(() => l.up());
        },
        publish(payload) {
          for (const other of listeners) {
            if (other !== listener) {
              queueMicrotask(() => listeners.has(other) && other.message(payload));
            }
          }
          return true;
        },
        claim({ key, owner }) {
          const holder = names.get(key);
          if (holder !== undefined && holder !== owner) return "taken";
          names.set(key, owner);
          return "claimed";
        },
        renew(claims) {
          const lost: Claim[] = [];
          for (const claim of claims) {
            const holder = names.get(claim.key);
            if (holder === undefined) names.set(claim.key, claim.owner);
            else if (holder !== claim.owner) lost.push(claim);
          }
          return Promise.resolve(lost);
        },
        release({ key, owner }) {
          if (names.get(key) === owner) names.delete(key);
        },
        stop() {
          if (listener !== undefined) listeners.delete(listener);
          return Promise.resolve();
        },
      };
      return engine;
    },
  };
}
