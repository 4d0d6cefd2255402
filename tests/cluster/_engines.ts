/**
 * The engines a cluster behaviour suite runs on, behind one factory: the
 * memory cluster (one process, deliveries in microtasks) and Deno KV (one
 * temporary store file, each engine on its own handle and with a
 * `BroadcastChannel` fast path, as each worker of `deno serve --parallel`
 * has them). Tests written against {@linkcode EngineGroup} run unchanged on
 * both.
 *
 * KV delivers through real I/O, so where a test needs every node to have
 * seen what another did (a member list, a freed name), it awaits
 * `settled()`, an event: each engine publishes a marker behind its own
 * writes, and the bus's one order means an engine that delivered every
 * marker has delivered everything written before them. The markers never
 * reach the nodes. The memory cluster needs no such wait (its deliveries
 * come before any socket event), but takes the same path.
 *
 * @module
 */
import { createKvEngine } from "../../lib/cluster/engine_kv.ts";
import {
  createMemoryCluster,
  type Engine,
  type EngineListener,
  type MemoryClusterOptions,
} from "../../lib/cluster/engine.ts";
import { withTimeout } from "../_helpers.ts";
import { cuttable, type CuttableKv, kvDir } from "./_kv.ts";

/** Engines that form one cluster, and what a test may await of them. */
export interface EngineGroup extends AsyncDisposable {
  /** A new engine of the cluster (stopping it stops its part alone). */
  engine(): Promise<Engine>;
  /**
   * Resolves once every started engine is connected and has delivered
   * whatever any of them was asked to publish or write before the call
   * (after this turn's microtasks, so a node's queued messages count).
   */
  settled(): Promise<void>;
  /**
   * Resolves once `done()` holds, checked after each round of `settled()`:
   * for state that follows from what the engines deliver.
   */
  until(what: string, done: () => boolean): Promise<void>;
  /** Cuts every started engine off the store (it forgets nothing); resolves once each said down. */
  cut(): Promise<void>;
  /** Gives `engine` the store back; resolves once it says up again. */
  reconnect(engine: Engine): Promise<void>;
}

/** One kind of engine a suite runs on. */
export interface EngineKind {
  /** For test names: "memory", "kv". */
  readonly name: string;
  /** A new, empty cluster of this kind. */
  group(options?: MemoryClusterOptions): Promise<EngineGroup>;
}

/** Prefix of marker payloads: never a cluster message (those are JSON objects). */
const MARKER = "\u0000settled:";

/** An engine as a test sees it, and what the group tracks of it. */
interface Tracked {
  readonly engine: Engine;
  readonly inner: Engine;
  started: boolean;
  stopped: boolean;
  up: boolean;
  /** Markers delivered to this engine, as `round:from`. */
  readonly markers: Set<string>;
}

/**
 * Wraps the engines of a group: tracks up and down, swallows markers, and
 * answers `settled`; `publishesToItself` says whether the bus echoes an
 * engine's publications back to it (KV does; the memory bus does not).
 */
function tracker(publishesToItself: boolean, onStop: (inner: Engine) => Promise<void>) {
  const all: Tracked[] = [];
  const waiters = new Set<() => void>();
  const changed = () => {
    for (const waiter of [...waiters]) waiter();
  };
  /** Resolves once `done()` holds, checked after every event of any engine. */
  const until = (what: string, done: () => boolean): Promise<void> => {
    if (done()) return Promise.resolve();
    let check!: () => void;
    const met = new Promise<void>((resolve) => {
      check = () => {
        if (!done()) return;
        waiters.delete(check);
        resolve();
      };
      waiters.add(check);
    });
    return withTimeout(met, what).finally(() => waiters.delete(check));
  };
  let rounds = 0;

  const wrap = (inner: Engine): Engine => {
    const tracked: Tracked = {
      inner,
      started: false,
      stopped: false,
      up: false,
      markers: new Set(),
      engine: {
        ...inner,
        start(listener: EngineListener) {
          tracked.started = true;
          inner.start({
            message(payload) {
              if (payload.startsWith(MARKER)) tracked.markers.add(payload.slice(MARKER.length));
              else listener.message(payload);
              changed();
            },
            up() {
              tracked.up = true;
              listener.up();
              changed();
            },
            down(reason) {
              tracked.up = false;
              listener.down(reason);
              changed();
            },
          });
        },
        async stop() {
          if (tracked.stopped) return;
          tracked.stopped = true;
          changed();
          await onStop(inner);
        },
      },
    };
    all.push(tracked);
    return tracked.engine;
  };

  const live = () => all.filter((t) => t.started && !t.stopped);
  const settled = async () => {
    await until("every engine to be up", () => live().every((t) => t.up));
    // A node's messages go out in a microtask: let those queued so far be published first.
    for (let i = 0; i < 10; i++) await Promise.resolve();
    const round = ++rounds;
    const senders = live();
    for (const [i, sender] of senders.entries()) {
      if (!sender.inner.publish(`${MARKER}${round}:${i}`)) {
        throw new Error("An engine could not publish: settled() needs every engine connected");
      }
      if (!publishesToItself) sender.markers.add(`${round}:${i}`);
    }
    await until(
      "every engine to deliver what was written before",
      () =>
        senders.every((t) => t.stopped || senders.every((_, i) => t.markers.has(`${round}:${i}`))),
    );
  };
  const settledUntil = async (what: string, done: () => boolean) => {
    let waiting = true;
    const loop = (async () => {
      while (waiting && !done()) await settled();
    })();
    try {
      await withTimeout(loop, what);
    } finally {
      waiting = false;
      await loop.catch(() => {});
    }
  };
  return { wrap, all, until, settled, settledUntil };
}

/** The memory cluster: engines of one process sharing a bus and a store in memory. */
export const MEMORY: EngineKind = {
  name: "memory",
  group(options = {}) {
    const cluster = createMemoryCluster(options);
    const { wrap, all, until, settled, settledUntil } = tracker(false, (inner) => inner.stop());
    return Promise.resolve({
      engine: () => Promise.resolve(wrap(cluster.engine())),
      settled,
      until: settledUntil,
      cut() {
        cluster.cut();
        return Promise.resolve();
      },
      reconnect(engine) {
        const tracked = all.find((t) => t.engine === engine);
        if (tracked === undefined) throw new Error("Not an engine of this group");
        cluster.reconnect(tracked.inner);
        return until("the engine to be up", () => tracked.up);
      },
      async [Symbol.asyncDispose]() {
        for (const tracked of all) await tracked.engine.stop();
      },
    });
  },
};

/**
 * Deno KV: engines on one store file in a temporary directory, each on its
 * own handle and `BroadcastChannel`, as the workers of `deno serve
 * --parallel` run them. Stopping an engine closes its handle, as a worker's
 * stop does.
 */
export const KV: EngineKind = {
  name: "kv",
  async group(options = {}) {
    const dir = await kvDir();
    // A group of its own: engines of groups left over from another test never cross.
    const channel = `hubbub-test-${crypto.randomUUID()}`;
    const handles = new Map<Engine, CuttableKv>();
    const { wrap, all, until, settled, settledUntil } = tracker(true, async (inner) => {
      await inner.stop();
      handles.get(inner)?.[Symbol.dispose]();
    });
    const handleOf = (engine: Engine) => {
      const inner = all.find((t) => t.engine === engine)?.inner;
      const handle = inner && handles.get(inner);
      if (handle === undefined) throw new Error("Not an engine of this group");
      return handle;
    };
    return {
      async engine() {
        const kv = cuttable(await Deno.openKv(dir.path()));
        const inner = createKvEngine({
          kv,
          prefix: "hubbub",
          history: options.history,
          clock: options.clock,
          fastPath: new BroadcastChannel(channel),
        });
        handles.set(inner, kv);
        return wrap(inner);
      },
      settled,
      until: settledUntil,
      async cut() {
        const started = all.filter((t) => t.started && !t.stopped);
        for (const tracked of started) handles.get(tracked.inner)!.cut();
        await until("every engine to be down", () => started.every((t) => !t.up));
      },
      reconnect(engine) {
        handleOf(engine).restore();
        const tracked = all.find((t) => t.engine === engine)!;
        // The engine tries again on its own (50 ms, then longer): up is the event.
        return until("the engine to be up", () => tracked.up);
      },
      async [Symbol.asyncDispose]() {
        for (const tracked of all) await tracked.engine.stop();
        await dir[Symbol.asyncDispose]();
      },
    };
  },
};

/** Every kind, for a suite to loop over. */
export const ENGINE_KINDS: readonly EngineKind[] = [MEMORY, KV];
