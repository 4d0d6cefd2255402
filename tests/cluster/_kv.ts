/**
 * Deno KV for the KV engine's tests: stores in a temporary directory
 * (removed by `await using`), and a handle that a test can cut off the store
 * (every call throws, every watch errors) and give back, on the same store
 * or on a new empty one, as a Redis restart without persistence would, and
 * whose watches it can stall.
 *
 * @module
 */
import type { FastPath } from "../../lib/cluster/engine_kv.ts";
import type { Engine } from "../../lib/cluster/engine.ts";
import type { KvAtomic, KvEntryMaybe, KvHandle, KvKey } from "../../lib/cluster/kv.ts";
import { withTimeout } from "../_helpers.ts";

/** A directory for KV files, removed with what is in it. */
export interface KvDir extends AsyncDisposable {
  /** A path for a store file in the directory (`name` picks one of several). */
  path(name?: string): string;
}

/** A temporary directory for KV files. */
export async function kvDir(): Promise<KvDir> {
  const dir = await Deno.makeTempDir({ prefix: "hubbub-kv-" });
  return {
    path: (name = "store") => `${dir}/${name}.kv`,
    async [Symbol.asyncDispose]() {
      await Deno.remove(dir, { recursive: true });
    },
  };
}

/** A KV handle whose store a test can cut off and give back. */
export interface CuttableKv extends KvHandle, Disposable {
  /** Every call throws, and every watch errors, until `restore`. */
  cut(): void;
  /** Reaches `kv` from now on (the store it had, or a new one); the old one is closed. */
  restore(kv?: Deno.Kv): void;
  /** Holds back what the open watches report, keeping only the latest (a stalled watch). */
  hold(): void;
  /** Passes on each held watch's latest report. */
  release(): void;
}

/** Wraps an open store; `using` closes whichever store it holds at the end. */
export function cuttable(initial: Deno.Kv): CuttableKv {
  let kv = initial;
  let cut = false;
  type Watch = { report(value: KvEntryMaybe[]): void; fail(): void };
  const watches = new Set<Watch>();
  /** While held: each watch's latest report, not passed on yet. */
  const held = new Map<Watch, KvEntryMaybe[] | undefined>();
  const store = (): Deno.Kv => {
    if (cut) throw new Error("The KV store is cut off");
    return kv;
  };
  return {
    get: (key, options) => store().get(key, options) as Promise<KvEntryMaybe>,
    getMany: (keys, options) => store().getMany(keys, options) as Promise<KvEntryMaybe[]>,
    list: (selector, options) => store().list(selector, options),
    atomic(): KvAtomic {
      return store().atomic();
    },
    watch(keys: readonly KvKey[]) {
      const inner = store().watch(keys).getReader();
      let controller!: ReadableStreamDefaultController<KvEntryMaybe[]>;
      let done = false;
      const watch = {
        report(value: KvEntryMaybe[]) {
          if (done) return;
          if (held.size > 0) {
            held.set(watch, value); // only the latest, as a watch reports
          } else controller.enqueue(value);
        },
        fail() {
          if (done) return;
          done = true;
          watches.delete(watch);
          controller.error(new Error("The KV store is cut off"));
          inner.cancel().catch(() => {});
        },
      };
      watches.add(watch);
      const stream = new ReadableStream<KvEntryMaybe[]>({
        start: (c) => void (controller = c),
        cancel() {
          done = true;
          watches.delete(watch);
          return inner.cancel();
        },
      });
      (async () => {
        for (;;) {
          const read = await inner.read().catch((error) => ({ error }));
          if (done) return;
          if ("error" in read) {
            done = true;
            watches.delete(watch);
            return controller.error(read.error);
          }
          if (read.done) {
            done = true;
            watches.delete(watch);
            return controller.close();
          }
          watch.report(read.value as KvEntryMaybe[]);
        }
      })();
      return stream;
    },
    hold() {
      for (const watch of watches) if (!held.has(watch)) held.set(watch, undefined);
    },
    release() {
      const reports = [...held];
      held.clear();
      for (const [watch, value] of reports) if (value !== undefined) watch.report(value);
    },
    cut() {
      cut = true;
      for (const watch of [...watches]) watch.fail();
    },
    restore(next) {
      if (next !== undefined && next !== kv) {
        kv.close();
        kv = next;
      }
      cut = false;
    },
    [Symbol.dispose]() {
      for (const watch of [...watches]) watch.fail();
      kv.close();
    },
  };
}

/** Values in arrival order, awaited one at a time. */
export function queue<T>() {
  const items: T[] = [];
  const waiting: ((item: T) => void)[] = [];
  return {
    push(item: T) {
      const waiter = waiting.shift();
      if (waiter === undefined) items.push(item);
      else waiter(item);
    },
    next(what: string): Promise<T> {
      const item = items.shift();
      if (item !== undefined) return Promise.resolve(item);
      return withTimeout(new Promise((resolve) => waiting.push(resolve)), what);
    },
    get size() {
      return items.length;
    },
  };
}

/** A fast path between two engines of one test, which can drop what it carries. */
export function fastPaths(drop: (n: number) => boolean = () => false) {
  const holders: ((event: { data: unknown }) => void)[][] = [[], []];
  let posts = 0;
  const make = (i: number): FastPath => ({
    postMessage(message) {
      if (drop(++posts)) return;
      const data = structuredClone(message);
      for (const listener of holders[1 - i]) queueMicrotask(() => listener({ data }));
    },
    addEventListener: (_, listener) => void holders[i].push(listener),
    removeEventListener: (_, listener) => {
      holders[i] = holders[i].filter((l) => l !== listener);
    },
    close() {},
  });
  return {
    make,
    get posts() {
      return posts;
    },
  };
}

/**
 * Engines a test started on one store file in `dir`: another handle on the
 * store, to look at what they wrote, and disposal of the engines, their
 * handles and the directory.
 */
export function onOneStore<T extends { engine: Engine; kv: CuttableKv }>(dir: KvDir, nodes: T[]) {
  return {
    nodes,
    async raw(): Promise<Deno.Kv> {
      return await Deno.openKv(dir.path());
    },
    async [Symbol.asyncDispose]() {
      for (const node of nodes) await node.engine.stop();
      for (const node of nodes) node.kv[Symbol.dispose]();
      await dir[Symbol.asyncDispose]();
    },
  };
}
