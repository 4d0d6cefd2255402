/**
 * The cluster bus of the KV engine: a log in Deno KV that every engine on
 * the store reads in order. What it carries is a Redis pub/sub channel's
 * worth: each payload reaches every engine, its publisher's included.
 *
 * Layout, under the engine's prefix `P`:
 * - `[P, "bus", "head"]` → `{n, id}`: the number of the latest entry, and a
 *   random id of this bus (a store emptied and written again gets a new id,
 *   so an engine can tell a new bus from an old one);
 * - `[P, "bus", n]` → `{p, more?}`: entry `n`, a payload or a piece of one
 *   (`more`: the payload goes on in the next entry), deleted 60 s after it
 *   was written at the earliest.
 *
 * Writing an entry is one atomic operation that checks the head's
 * versionstamp, sets the entries and moves the head (retried when another
 * engine moved it first), so the entries are numbered 1, 2, 3… with no gap
 * and every engine reads one order. Chat messages do not go through it: a
 * history append touches only its channel's keys, and engines deliver it
 * from the channel's log (`kv_follow.ts`).
 *
 * Reading: each engine watches the head key and, on every change it is told
 * of, reads the entries after the last it delivered up to the head. A watch
 * reports the latest value only (rapid changes coalesce), which loses
 * nothing here: one range read fetches every entry since the last. It also
 * reads the head once a second, for what a watch does not see (a local
 * store's watch misses other processes' writes). An engine that falls more
 * than 60 s behind finds entries gone and says `down` then `up`, so its node
 * resynchronizes.
 *
 * Two faster paths deliver entries before the watch does, never instead of
 * it: an engine delivers the entries it committed itself as soon as those
 * before them are delivered, and an optional `BroadcastChannel` (it crosses
 * the workers of one process, `deno serve --parallel` among them) carries
 * each commit's entries to the other engines. Entries are delivered by
 * number, once each and in order, whichever path brought them first.
 *
 * @module
 */
import type { EngineListener } from "./engine.ts";
import {
  KV_LIMITS,
  type KvAtomic,
  type KvEntryMaybe,
  type KvHandle,
  type KvKey,
  kvReason,
  storedBytes,
} from "./kv.ts";

/** How long an entry stays readable at least: an engine further behind resynchronizes. */
export const BUS_TTL_MS = 60_000;

/** Characters of a payload per entry: at two bytes each, well inside a value. */
export const BUS_CHUNK_CHARS = 30_000;

/** How often an engine reads the head besides watching it. */
const POLL_MS = 1000;

/** Entries read per range read. */
const READ_PAGE = 500;

/** Commits tried before a publication is given up (the node then resynchronizes). */
const MAX_ATTEMPTS = 200;

/** Fast-path entries held for later at most, so a stalled watch cannot grow memory without end. */
const MAX_PENDING = 20_000;

/** Budget of one atomic operation, with room for the head and the caller's own mutations. */
const OPERATION_BYTES = KV_LIMITS.operationBytes - 40 * 1024;
const OPERATION_MUTATIONS = KV_LIMITS.mutations - 10;

/** A channel to the other engines of the process, as `BroadcastChannel` is one. */
export interface FastPath {
  /** Sends `message` (structured-cloned) to every other holder of the channel. */
  postMessage(message: unknown): void;
  /** Listens for what the others send. */
  addEventListener(type: "message", listener: (event: { data: unknown }) => void): void;
  /** Stops listening. */
  removeEventListener(type: "message", listener: (event: { data: unknown }) => void): void;
  /** Closes the channel. */
  close(): void;
}

/** The head's value: the latest entry's number and the bus's id. */
export type BusHead = { n: number; id: string };

/** An entry's value: a payload, or a piece of one when `more` is set. */
export type BusEntry = { p: string; more?: true };

/** Entries an atomic operation adds to the bus: numbers `first`, `first + 1`, … of bus `id`. */
type Staged = { id: string; first: number; entries: BusEntry[] };

/** The bus of the KV engine: ordered delivery to `listener`, and the writing side. */
export interface KvBus {
  /** Whether the watch is running (the engine is up). */
  readonly up: boolean;
  /** Starts watching; `listener.up` once it runs, `down` (repeatedly while it cannot) on errors. */
  start(listener: EngineListener): void;
  /** Queues `payload` for the bus; false while down. Payloads published in one tick share a commit. */
  publish(payload: string): boolean;
  /**
   * Runs `job` after every write queued before it, publications included:
   * one engine's writes reach the bus in the order they were made.
   */
  serial<T>(job: () => Promise<T>): Promise<T>;
  /** Keeps `operation` in mind so `stop` waits for it. */
  track<T>(operation: Promise<T>): Promise<T>;
  /** Stops watching once queued writes are done; the KV store is left open (its owner closes it). */
  stop(): Promise<void>;
}

/** A new bus id: 12 base-36 characters. */
function newBusId(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(12));
  return [...bytes].map((byte) => (byte % 36).toString(36)).join("");
}

/** The head as stored; null when absent or not one. */
function parseHead(value: unknown): BusHead | null {
  const head = value as Partial<BusHead> | null;
  return head !== null && typeof head === "object" && Number.isSafeInteger(head.n) &&
      typeof head.id === "string"
    ? { n: head.n!, id: head.id }
    : null;
}

/** An entry as stored; null when it is not one. */
function parseEntry(value: unknown): BusEntry | null {
  const entry = value as Partial<BusEntry> | null;
  if (entry === null || typeof entry !== "object" || typeof entry.p !== "string") return null;
  return entry.more === true ? { p: entry.p, more: true } : { p: entry.p };
}

/** The entries carrying `payload`: one, or pieces of at most `BUS_CHUNK_CHARS` characters. */
function busEntries(payload: string): BusEntry[] {
  if (payload.length <= BUS_CHUNK_CHARS) return [{ p: payload }];
  const entries: BusEntry[] = [];
  for (let at = 0; at < payload.length; at += BUS_CHUNK_CHARS) {
    const end = at + BUS_CHUNK_CHARS;
    entries.push(
      end < payload.length ? { p: payload.slice(at, end), more: true } : {
        p: payload.slice(at),
      },
    );
  }
  return entries;
}

/** What publishing `payload` adds to an atomic operation: bytes and mutations. */
function busCost(payload: string): { bytes: number; mutations: number } {
  const entries = Math.ceil(payload.length / BUS_CHUNK_CHARS);
  return { bytes: storedBytes(payload) + 64 * entries, mutations: entries };
}

/** What the bus needs: the store, the key prefix, and maybe a fast path. */
export interface KvBusOptions {
  kv: KvHandle;
  prefix: string;
  fastPath?: FastPath;
  /** How often to read the head besides watching it, in ms (default 1000; 0: never). */
  pollMs?: number;
}

/** Creates the bus; nothing happens until `start`. */
export function createKvBus({ kv, prefix, fastPath, pollMs = POLL_MS }: KvBusOptions): KvBus {
  const headKey: KvKey = [prefix, "bus", "head"];
  const entryKey = (n: number): KvKey => [prefix, "bus", n];

  let listener: EngineListener | undefined;
  let state: "idle" | "starting" | "up" | "down" | "stopped" = "idle";
  /** Bumped on every (re)start and stop, so a loop of an earlier watch ends. */
  let generation = 0;
  let reader: ReadableStreamDefaultReader<KvEntryMaybe[]> | undefined;
  let retry: ReturnType<typeof setTimeout> | undefined;
  let attempt = 0;

  // Delivery: entries up to `last` are delivered; the head is known to be at least `known`.
  let busId: string | null = null;
  let last = 0;
  let known = 0;
  /** Entries that arrived ahead of their turn, by number (own commits and the fast path). */
  const pending = new Map<number, BusEntry>();
  /** The pieces of a payload split across entries, so far. */
  let partial = "";
  let reading: Promise<void> | undefined;
  /** Bumped when delivery starts over elsewhere, so a read in flight delivers nothing it found. */
  let resets = 0;
  /** The head as this engine last saw it, to write without reading it first. */
  let cachedHead: KvEntryMaybe | undefined;

  const inFlight = new Set<Promise<unknown>>();
  const track = <T>(operation: Promise<T>): Promise<T> => {
    inFlight.add(operation);
    const done = () => inFlight.delete(operation);
    operation.then(done, done);
    return operation;
  };

  let tail: Promise<unknown> = Promise.resolve();
  const serial = <T>(job: () => Promise<T>): Promise<T> => {
    open = null; // publications after this write get a later commit
    const run = tail.then(job);
    tail = run.catch(() => {});
    return track(run);
  };

  const deliver = (n: number, entry: BusEntry) => {
    last = n;
    pending.delete(n);
    if (entry.more) {
      partial += entry.p;
      return;
    }
    const payload = partial + entry.p;
    partial = "";
    try {
      listener?.message(payload);
    } catch (error) {
      // The node's bug, not the store's: it surfaces as an uncaught error, and the bus goes on.
      queueMicrotask(() => {
        throw error;
      });
    }
  };

  /** Delivers what is pending in turn; reads the store when the head is further. */
  const pump = () => {
    while (state === "up" && pending.has(last + 1)) deliver(last + 1, pending.get(last + 1)!);
    if (state === "up" && known > last && reading === undefined) {
      reading = track(read()).finally(() => {
        reading = undefined;
        pump();
      });
    }
  };

  /** Gives up on what cannot be delivered: the node resynchronizes from here on. */
  const resynchronize = (reason: string, n: number, id: string | null) => {
    resets++;
    pending.clear();
    partial = "";
    listener?.down(reason);
    busId = id;
    last = known = n;
    if (state === "up") listener?.up();
  };

  /** Reads and delivers the entries after `last` up to `known`, a page at a time. */
  const read = async () => {
    const current = generation;
    const reset = resets;
    const valid = () => state === "up" && current === generation && reset === resets;
    while (valid() && known > last) {
      const to = Math.min(known, last + READ_PAGE);
      const rows: { n: number; entry: BusEntry | null }[] = [];
      try {
        for await (
          const row of kv.list(
            { start: entryKey(last + 1), end: entryKey(to + 1) },
            { consistency: "strong", batchSize: READ_PAGE },
          )
        ) rows.push({ n: row.key[2] as number, entry: parseEntry(row.value) });
      } catch (error) {
        if (current === generation) fail(kvReason(error));
        return;
      }
      if (!valid()) return;
      for (const { n, entry } of rows) {
        while (n > last + 1 && pending.has(last + 1)) deliver(last + 1, pending.get(last + 1)!);
        if (n <= last) continue;
        if (n > last + 1) break;
        // Not an entry (something else wrote there): skipped, and so is the payload it was part of.
        if (entry === null) {
          last = n;
          partial = "";
        } else deliver(n, entry);
        if (!valid()) return;
      }
      while (last < to && pending.has(last + 1)) deliver(last + 1, pending.get(last + 1)!);
      if (last < to) {
        return resynchronize(
          `fell behind the bus: entries after ${last} are gone (kept ${BUS_TTL_MS / 1000} s)`,
          known,
          busId,
        );
      }
    }
  };

  /** The watch told of `head`. */
  const onHead = (head: BusHead | null) => {
    if (head === null) {
      // The store was emptied: whatever comes next is a new bus.
      if (busId !== null || last > 0) resynchronize("the bus was emptied", 0, null);
      return;
    }
    if (busId !== null && head.id !== busId) {
      // Emptied and written again: every entry of the new bus is news.
      resynchronize("the bus was replaced (the store was emptied)", 0, head.id);
    }
    busId ??= head.id;
    // A watch may report a value older than what this engine delivered already: that is no news.
    known = Math.max(known, head.n);
    pump();
  };

  const watch = async (current: number) => {
    let stream: ReadableStream<KvEntryMaybe[]>;
    try {
      stream = kv.watch([headKey]);
    } catch (error) {
      return fail(kvReason(error));
    }
    const own = stream.getReader();
    reader = own;
    try {
      for (;;) {
        const { value, done } = await own.read();
        if (current !== generation) return;
        if (done) return fail("the watch of the bus ended");
        const entry = value[0];
        const head = parseHead(entry.value);
        const cached = cachedHead === undefined ? null : parseHead(cachedHead.value);
        if (head !== null && (cached === null || head.n >= cached.n)) cachedHead = entry;
        if (state === "starting") {
          // Up from here: what was published before is not ours to deliver.
          state = "up";
          attempt = 0;
          busId = head?.id ?? null;
          last = known = head?.n ?? 0;
          pending.clear();
          partial = "";
          listener?.up();
        } else onHead(head);
      }
    } catch (error) {
      if (current === generation) fail(kvReason(error));
    }
  };

  /**
   * Reads the head now and then besides the watch: a local store's watch
   * does not see another process's writes (it sees other workers'), so
   * engines of several processes on one file still deliver, within a poll.
   */
  let polling = false;
  const poll = () => {
    if (state !== "up" || polling) return;
    polling = true;
    const current = generation;
    track(kv.get(headKey, { consistency: "strong" })).then(
      (entry) => current === generation && state === "up" && onHead(parseHead(entry.value)),
      (error) => current === generation && fail(kvReason(error)),
    ).finally(() => polling = false);
  };
  let poller: ReturnType<typeof setInterval> | undefined;

  const begin = () => {
    retry = undefined;
    if (state === "stopped") return;
    state = "starting";
    track(watch(++generation));
  };

  /** The store failed: down, and the watch starts again after a back-off. */
  const fail = (reason: string) => {
    if (state === "stopped") return;
    generation++;
    reader?.cancel().catch(() => {});
    reader = undefined;
    cachedHead = undefined;
    state = "down";
    open = null;
    listener?.down(reason);
    if (retry === undefined) retry = setTimeout(begin, Math.min(50 * 2 ** attempt++, 2000));
  };

  /** Adds to `op` a check of `head` (as read) and the entries carrying `payloads`. */
  const stage = (op: KvAtomic, head: KvEntryMaybe, payloads: readonly string[]): Staged => {
    const current = parseHead(head.value);
    const staged: Staged = {
      id: current?.id ?? newBusId(),
      first: (current?.n ?? 0) + 1,
      entries: payloads.flatMap(busEntries),
    };
    op.check({ key: headKey, versionstamp: head.versionstamp });
    staged.entries.forEach((entry, i) =>
      op.set(entryKey(staged.first + i), entry, { expireIn: BUS_TTL_MS })
    );
    const top: BusHead = { n: staged.first + staged.entries.length - 1, id: staged.id };
    op.set(headKey, top);
    return staged;
  };

  /** An operation with `staged` committed (at `versionstamp`): deliver its entries here, share them. */
  const committed = (staged: Staged, versionstamp: string) => {
    const end = staged.first + staged.entries.length - 1;
    cachedHead = { key: headKey, value: { n: end, id: staged.id }, versionstamp };
    if (state === "up" && (busId === null || busId === staged.id)) {
      busId = staged.id;
      staged.entries.forEach((entry, i) => {
        if (staged.first + i > last) pending.set(staged.first + i, entry);
      });
      known = Math.max(known, end);
      pump();
    }
    try {
      fastPath?.postMessage({ b: staged.id, n: staged.first, e: staged.entries });
    } catch {
      // Closed or unclonable: the watch delivers anyway.
    }
  };

  /** Entries another engine of the process committed, ahead of the watch. */
  const onFast = (event: { data: unknown }) => {
    const data = event.data as { b?: unknown; n?: unknown; e?: unknown } | null;
    if (state !== "up" || data === null || typeof data !== "object") return;
    const { b, n, e } = data;
    if (typeof b !== "string" || !Number.isSafeInteger(n) || !Array.isArray(e)) return;
    const first = n as number;
    // A bus that had no entry when this engine started: its first entry names it.
    if (busId === null && last === 0 && first === 1) busId = b;
    if (b !== busId) return;
    e.forEach((value, i) => {
      const entry = parseEntry(value);
      if (entry !== null && first + i > last && pending.size < MAX_PENDING) {
        pending.set(first + i, entry);
      }
    });
    // Delivered in turn; a gap before them is read when the watch reports the head.
    pump();
  };
  fastPath?.addEventListener("message", onFast);

  /** Publications not committed yet that later ones may join (one commit per tick). */
  let open: string[] | null = null;

  /** Commits `payloads` in as few operations as fit; a store error puts the bus down. */
  const write = async (payloads: string[]) => {
    // Down since they were queued: lost, as they would be on a dropped connection.
    if (state !== "up") return;
    let at = 0;
    while (at < payloads.length) {
      let bytes = 0;
      let mutations = 0;
      let end = at;
      while (end < payloads.length) {
        const cost = busCost(payloads[end]);
        if (
          end > at && (bytes + cost.bytes > OPERATION_BYTES ||
            mutations + cost.mutations > OPERATION_MUTATIONS)
        ) break;
        bytes += cost.bytes;
        mutations += cost.mutations;
        end++;
      }
      const group = payloads.slice(at, end);
      at = end;
      for (let tries = 1;; tries++) {
        try {
          const head = cachedHead ?? await kv.get(headKey, { consistency: "strong" });
          const op = kv.atomic();
          const staged = stage(op, head, group);
          const result = await op.commit();
          if (result.ok) {
            committed(staged, result.versionstamp);
            break;
          }
          cachedHead = undefined; // another engine moved the head: read it again
        } catch (error) {
          return fail(`Cannot publish on the bus: ${kvReason(error)}`);
        }
        if (tries >= MAX_ATTEMPTS) return fail("Cannot publish on the bus: too much contention");
        await contend(tries);
      }
    }
  };

  return {
    get up() {
      return state === "up";
    },
    start(l) {
      if (state !== "idle") return;
      listener = l;
      begin();
      if (pollMs > 0) poller = setInterval(poll, pollMs);
    },
    publish(payload) {
      if (state !== "up") return false;
      if (open !== null) {
        open.push(payload);
        return true;
      }
      const batch = [payload];
      serial(() => {
        if (open === batch) open = null;
        return write(batch);
      });
      open = batch;
      return true;
    },
    serial,
    track,
    async stop() {
      if (state === "stopped") return;
      // What was queued before the stop (a node's goodbye) still goes out.
      await tail;
      state = "stopped";
      generation++;
      clearTimeout(retry);
      clearInterval(poller);
      fastPath?.removeEventListener("message", onFast);
      fastPath?.close();
      await reader?.cancel().catch(() => {});
      while (inFlight.size > 0) await Promise.allSettled([...inFlight]);
    },
  };
}

/** Waits a little before another try once a commit has lost a race a few times. */
export function contend(tries: number): Promise<void> | undefined {
  if (tries < 3) return undefined;
  const ms = Math.random() * Math.min(2 ** tries, 50);
  return new Promise((resolve) => setTimeout(resolve, ms));
}
