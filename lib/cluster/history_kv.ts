/**
 * The history every engine on one Deno KV store shares (`SharedLog`), and
 * the way its messages reach the nodes (`kv_follow.ts`). Per channel `C`,
 * under the engine's prefix `P`:
 *
 * - `[P, "h", C, "meta"]` → `{epoch, top, at, gen}`: the epoch, the last seq
 *   given out, when the channel last got a message (or its history began),
 *   and `gen`, which names this run of the channel's history: it changes
 *   only when the history starts over (expired or lost), never with
 *   `newEpoch`;
 * - `[P, "h", C, "m", SEQ]` → `{f, at, g, b, n}`: the stored `message`
 *   frame's JSON, when it was stored, its `gen`, and what delivery needs:
 *   the start of its bus message (`b`, up to the frame) and the node that
 *   sent it (`n`);
 * - `[P, "h", C, "k", FROM, KEY]` → `{seq, id, at, g}`: a sender's
 *   idempotency key.
 *
 * One append is ONE atomic operation: it checks the meta entry's
 * versionstamp, sets the messages, the keys and the new meta (its `top` is
 * the channel's head), and deletes the seqs the channel no longer keeps;
 * when another engine got there first, it reads again and retries. It
 * touches that channel's keys only, so appends to different channels never
 * contend. Every engine that follows the channel delivers the stored
 * messages in seq order, each as `{"n":node,"m":[<bus message>]}`, as the
 * bus would: its own at once, the others' when their watch of the meta key
 * (or a `BroadcastChannel`, or the poll) tells them of the new head.
 * One engine's appends to a channel are made in the order they were asked.
 *
 * Expiry, as `history_redis.ts` has it and more: a channel's history starts
 * over with a new epoch `ttlMs` after its last message; and as KV deletes
 * each entry on its own (`expireIn` is only the earliest deletion), a
 * message older than `ttlMs` is not served even in a busy channel, and a key
 * goes `ttlMs` after its message. Every expiry is decided from the time
 * stored in the value (the engine's clock), so reads do not depend on when
 * KV gets round to deleting, and what a read serves is always the newest
 * run of seqs with no gap: `canRecover` holds as in the other stores.
 *
 * Limits: a message frame must fit in one KV value (64 KiB; 4096 characters
 * of text, the default, always do), or the append fails; an append too
 * large for one atomic operation (800 KiB, 1000 mutations) is split into
 * several, each atomic, whose seqs may then interleave with another
 * engine's appends.
 *
 * @module
 */
import {
  canRecover,
  clampLimit,
  newEpoch,
  type Page,
  type SharedAppended,
  type SharedLog,
  type SharedMessage,
  type SharedRecovery,
  type StoredMessage,
} from "../store/store.ts";
import {
  KV_LIMITS,
  type KvEntryMaybe,
  type KvHandle,
  type KvKey,
  kvReason,
  storedBytes,
} from "./kv.ts";
import { contend, type FastPath, type KvBus } from "./kv_bus.ts";
import { createFollower, type Follower } from "./kv_follow.ts";

/** Where the log keeps its keys, what it keeps, and its clock. */
export interface KvLogOptions {
  /** Prefix of every key (the engine's prefix). */
  prefix: string;
  /** The most messages kept per channel. */
  maxPerChannel: number;
  /** How long a message and a key are kept, and a channel's history after its last message. */
  ttlMs: number;
  /** The time stored in values and compared with them (default: the system clock). */
  now?: () => number;
  /** Hands a message's payload to the node, as the bus does (`{"n":node,"m":[…]}`). */
  deliver(payload: string): void;
  /**
   * Messages of followed `channel` were gone before this engine read them, or
   * its history started over after it had some; `reason` is for the log.
   */
  lost(channel: string, reason: string): void;
  /** Carries each commit to the other engines of the process, ahead of their watches. */
  fastPath?: FastPath;
  /** How often to read the followed channels' heads besides watching them, in ms (0: never). */
  pollMs: number;
}

/** The KV log: the shared history, the delivery of the channels this node follows, and its stop. */
export type KvLog =
  & SharedLog
  & Required<Pick<SharedLog, "follow" | "unfollow" | "following">>
  & { stop(): Promise<void> };

/** A channel's meta entry. */
type Meta = { epoch: string; top: number; at: number; gen: string };
/** A stored message: what reads need, and what delivery does (`b`, `n`, `c`). */
type Message = { f: string; at: number; g: string; b?: string; n?: string; c?: number };
/** A stored idempotency key. */
type Key = { seq: number; id: string; at: number; g: string };

/**
 * Messages kept past `maxPerChannel` (never served by reads) for the engines
 * that deliver a channel and have not read them yet: one that falls further
 * behind loses messages, and says so.
 */
export const FOLLOW_SLACK = 1000;

/** Commits tried before an append gives up. */
const MAX_ATTEMPTS = 100;

/** The largest frame one value holds, with room for the rest of the value. */
const FRAME_BYTES = KV_LIMITS.valueBytes - 512;

/** Budget of one append's atomic operation, with room for the meta, the head and the checks. */
const OPERATION_BYTES = KV_LIMITS.operationBytes - 64 * 1024;
const OPERATION_MUTATIONS = KV_LIMITS.mutations - 20;

const isString = (value: unknown): value is string => typeof value === "string";
const isTime = (value: unknown): value is number => typeof value === "number" && isFinite(value);

function parseMeta(value: unknown): Meta | null {
  const meta = value as Partial<Meta> | null;
  return meta !== null && typeof meta === "object" && isString(meta.epoch) &&
      Number.isSafeInteger(meta.top) && isTime(meta.at) && isString(meta.gen)
    ? meta as Meta
    : null;
}

function parseMessage(value: unknown): Message | null {
  const message = value as Partial<Message> | null;
  return message !== null && typeof message === "object" && isString(message.f) &&
      isTime(message.at) && isString(message.g)
    ? message as Message
    : null;
}

function parseKey(value: unknown): Key | null {
  const key = value as Partial<Key> | null;
  return key !== null && typeof key === "object" && Number.isSafeInteger(key.seq) &&
      isString(key.id) && isTime(key.at) && isString(key.g)
    ? key as Key
    : null;
}

/** Splits `messages` into runs that each fit one atomic operation. */
function parts(channel: string, messages: readonly SharedMessage[]): SharedMessage[][] {
  const found: SharedMessage[][] = [];
  let part: SharedMessage[] = [];
  let bytes = 0;
  for (const message of messages) {
    // The message's value, its key's entry, and the keys' own bytes.
    const cost = storedBytes(message.frameOpen) + storedBytes(message.busOpen) + 128 +
      3 * (storedBytes(channel) + storedBytes(message.from) + storedBytes(message.key ?? "")) +
      256;
    // Three mutations a message at most: its entry, its key, one seq trimmed.
    const mutations = 3 * (part.length + 1);
    if (part.length > 0 && (bytes + cost > OPERATION_BYTES || mutations > OPERATION_MUTATIONS)) {
      found.push(part);
      part = [];
      bytes = 0;
    }
    part.push(message);
    bytes += cost;
  }
  if (part.length > 0) found.push(part);
  return found;
}

/**
 * Creates the shared history on `kv`, delivering what the node follows. It
 * is reachable while `bus` is up (the engine's watch runs); a store error
 * answers null or `{ok: false}`, never a rejection.
 *
 * @example
 * ```ts
 * import { createKvBus } from "./kv_bus.ts";
 * import { createKvLog } from "./history_kv.ts";
 * const kv = await Deno.openKv("./data/hubbub.kv");
 * const bus = createKvBus({ kv, prefix: "hubbub" });
 * const log = createKvLog(kv, bus, {
 *   prefix: "hubbub",
 *   maxPerChannel: 1000,
 *   ttlMs: 7 * 864e5,
 *   deliver: (payload) => console.log(payload),
 *   lost: (channel, reason) => console.error(channel, reason),
 *   pollMs: 1000,
 * });
 * bus.start({ message() {}, up() {}, down() {} });
 * log.follow("lobby");
 * ```
 */
export function createKvLog(kv: KvHandle, bus: KvBus, options: KvLogOptions): KvLog {
  const { prefix } = options;
  const maxPerChannel = Math.max(1, Math.floor(options.maxPerChannel));
  const ttlMs = Math.max(1, Math.floor(options.ttlMs));
  const now = options.now ?? (() => Date.now());
  const strong = { consistency: "strong" } as const;

  const metaKey = (channel: string): KvKey => [prefix, "h", channel, "meta"];
  const messageKey = (channel: string, seq: number): KvKey => [prefix, "h", channel, "m", seq];
  const keyKey = (channel: string, from: string, key: string): KvKey => [
    prefix,
    "h",
    channel,
    "k",
    from,
    key,
  ];

  /** The channel's meta, from its entry's value, if its history is current at `time`. */
  const live = (value: unknown, time: number): Meta | null => {
    const meta = parseMeta(value);
    return meta !== null && meta.at + ttlMs > time ? meta : null;
  };
  const fresh = (time: number): Meta => ({ epoch: newEpoch(), top: 0, at: time, gen: newEpoch() });

  const follower: Follower = createFollower({
    kv,
    metaKey,
    messageKey,
    head(value) {
      const meta = live(value, now());
      return meta === null ? null : { gen: meta.gen, top: meta.top };
    },
    entry(value) {
      const message = parseMessage(value);
      const { b, n, c } = message ?? {};
      if (message === null || !isString(b) || !isString(n) || !Number.isSafeInteger(c)) return null;
      if (message.at + ttlMs <= now()) return null;
      return { gen: message.g, commit: c!, node: n, message: `${b}${message.f}}` };
    },
    deliver: options.deliver,
    lost: options.lost,
    fastPath: options.fastPath,
    pollMs: options.pollMs,
    track: (operation) => bus.track(operation),
  });

  /** The channel's current meta, made (a new history, new epoch) when it is missing or expired. */
  const ensure = async (channel: string, entry: KvEntryMaybe): Promise<Meta> => {
    for (let tries = 1;; tries++) {
      const time = now();
      const meta = live(entry.value, time);
      if (meta !== null) return meta;
      const made = fresh(time);
      const result = await kv.atomic()
        .check({ key: metaKey(channel), versionstamp: entry.versionstamp })
        .set(metaKey(channel), made, { expireIn: ttlMs })
        .commit();
      if (result.ok) return made;
      if (tries >= MAX_ATTEMPTS) throw new Error("Too much contention on the history");
      await contend(tries);
      entry = await kv.get(metaKey(channel), strong);
    }
  };

  /** The stored message of `row` if it belongs to `meta`'s history and has not expired. */
  const current = (value: unknown, meta: Meta, time: number): Message | null => {
    const message = parseMessage(value);
    return message !== null && message.g === meta.gen && message.at + ttlMs > time ? message : null;
  };

  /**
   * From rows of messages newest first, the run the channel still keeps
   * that starts at `from` and goes down with no gap, oldest first.
   */
  const run = (
    rows: { seq: number; value: unknown }[],
    meta: Meta,
    from: number,
    time: number,
  ): StoredMessage[] => {
    const floor = Math.max(1, meta.top - maxPerChannel + 1);
    const found: StoredMessage[] = [];
    let expected = from;
    for (const { seq, value } of rows) {
      if (seq > expected) continue;
      const message = seq === expected && seq >= floor ? current(value, meta, time) : null;
      if (message === null) break;
      found.push(JSON.parse(message.f) as StoredMessage);
      expected--;
    }
    return found.reverse();
  };

  /** Message rows of `channel` from `lo` to `hi`, newest first, in one consistent read. */
  const range = async (channel: string, lo: number, hi: number) => {
    const rows: { seq: number; value: unknown }[] = [];
    if (hi < lo) return rows;
    for await (
      const row of kv.list(
        { start: messageKey(channel, lo), end: messageKey(channel, hi + 1) },
        { ...strong, reverse: true, batchSize: Math.min(hi - lo + 1, 1000) },
      )
    ) rows.push({ seq: row.key[4] as number, value: row.value });
    return rows;
  };

  /**
   * The meta and the newest `limit` messages of the channel's current run,
   * in one read of the meta with the messages below it (their keys sort
   * just before it).
   */
  const newest = async (channel: string, limit: number) => {
    const rows: { seq: number; value: unknown }[] = [];
    let metaEntry: KvEntryMaybe = { key: metaKey(channel), value: null, versionstamp: null };
    for await (
      const row of kv.list(
        { start: [prefix, "h", channel, "m"], end: [prefix, "h", channel, "meta", 0] },
        { ...strong, reverse: true, limit: limit + 1, batchSize: Math.min(limit + 1, 1000) },
      )
    ) {
      if (row.key[3] === "meta") metaEntry = row;
      else if (typeof row.key[4] === "number") rows.push({ seq: row.key[4], value: row.value });
    }
    const time = now();
    const found = live(metaEntry.value, time);
    if (found === null) return { meta: await ensure(channel, metaEntry), messages: [] };
    const meta = found;
    let messages = run(rows, meta, meta.top, time);
    // Entries of an earlier history above the current top took places in the read: read just ours.
    if (messages.length < limit && rows.some((row) => row.seq > meta.top)) {
      const lo = Math.max(1, meta.top - limit + 1);
      messages = run(await range(channel, lo, meta.top), meta, meta.top, time);
    }
    return { meta, messages };
  };

  const unreachable = (): SharedAppended => ({
    ok: false,
    message: "Cannot store messages: the Deno KV store cannot be reached",
  });

  /** One atomic append of messages that fit one operation. */
  const appendPart = async (
    node: string,
    channel: string,
    messages: readonly SharedMessage[],
  ): Promise<SharedAppended> => {
    const idOf = (message: SharedMessage) =>
      message.key === undefined ? undefined : `${message.from}\0${message.key}`;
    const keyed = new Map<string, SharedMessage>();
    for (const message of messages) {
      const id = idOf(message);
      if (id !== undefined && !keyed.has(id)) keyed.set(id, message);
    }
    const keyKeys = [...keyed.values()].map((m) => keyKey(channel, m.from, m.key!));
    for (let tries = 1;; tries++) {
      // The meta first: a key is only written with its channel's meta, so a meta unchanged at
      // commit means the keys read after it are still what they were.
      const reads = [metaKey(channel), ...keyKeys.slice(0, KV_LIMITS.readKeys - 1)];
      const [metaEntry, ...keyEntries] = await kv.getMany(reads, strong);
      for (let at = KV_LIMITS.readKeys - 1; at < keyKeys.length; at += KV_LIMITS.readKeys) {
        keyEntries.push(...await kv.getMany(keyKeys.slice(at, at + KV_LIMITS.readKeys), strong));
      }
      const time = now();
      const before = live(metaEntry.value, time);
      const meta = before ?? fresh(time);
      const firsts = new Map<string, { seq: number; id: string }>();
      [...keyed.keys()].forEach((id, i) => {
        const key = parseKey(keyEntries[i].value);
        if (key !== null && key.g === meta.gen && key.at + ttlMs > time) firsts.set(id, key);
      });

      const op = kv.atomic().check({ key: metaKey(channel), versionstamp: metaEntry.versionstamp });
      const results: { seq: number; id: string; duplicate: boolean }[] = [];
      const stored: { seq: number; frame: string; busOpen: string; keyed?: SharedMessage }[] = [];
      const published: string[] = [];
      let top = meta.top;
      for (const message of messages) {
        const id = idOf(message);
        const first = id === undefined ? undefined : firsts.get(id);
        if (first !== undefined) {
          results.push({ seq: first.seq, id: first.id, duplicate: true });
          continue;
        }
        const seq = ++top;
        const frame = `${message.frameOpen},"seq":${seq}}`;
        if (id !== undefined) firsts.set(id, { seq, id: message.id });
        stored.push({
          seq,
          frame,
          busOpen: message.busOpen,
          ...(id === undefined ? {} : { keyed: message }),
        });
        published.push(`${message.busOpen}${frame}}`);
        results.push({ seq, id: message.id, duplicate: false });
      }
      if (stored.length > 0) {
        const first = stored[0].seq;
        for (const { seq, frame, busOpen, keyed } of stored) {
          const value: Message = { f: frame, at: time, g: meta.gen, b: busOpen, n: node, c: first };
          op.set(messageKey(channel, seq), value, { expireIn: ttlMs });
          if (keyed !== undefined) {
            const value: Key = { seq, id: keyed.id, at: time, g: meta.gen };
            op.set(keyKey(channel, keyed.from, keyed.key!), value, { expireIn: ttlMs });
          }
        }
        // Reads serve the newest `maxPerChannel`; the `FOLLOW_SLACK` before them stay for the
        // engines still delivering them, and what falls out of both is deleted (entries of an
        // earlier history are never served either).
        const kept = (head: number) => Math.max(1, head - maxPerChannel - FOLLOW_SLACK + 1);
        for (let seq = kept(meta.top); seq < kept(top) && seq <= meta.top; seq++) {
          op.delete(messageKey(channel, seq));
        }
        op.set(metaKey(channel), { ...meta, top, at: time }, { expireIn: ttlMs });
      } else if (before === null) {
        op.set(metaKey(channel), meta, { expireIn: ttlMs });
      } else {
        return { ok: true, epoch: meta.epoch, results };
      }
      const result = await op.commit();
      if (result.ok) {
        if (stored.length > 0) {
          follower.committed(channel, meta.gen, stored[0].seq, node, published);
        }
        return { ok: true, epoch: meta.epoch, results };
      }
      if (tries >= MAX_ATTEMPTS) {
        return { ok: false, message: "Cannot store messages in Deno KV: too much contention" };
      }
      await contend(tries);
    }
  };

  const append = async (
    node: string,
    channel: string,
    messages: readonly SharedMessage[],
  ): Promise<SharedAppended> => {
    const large = messages.find((m) => storedBytes(m.frameOpen) + 32 > FRAME_BYTES);
    if (large !== undefined) {
      return {
        ok: false,
        message: `Cannot store a message of ${
          storedBytes(large.frameOpen)
        } bytes in Deno KV: a value holds at most 64 KiB`,
      };
    }
    if (messages.length === 0) {
      const page = await reading(() => newest(channel, 0));
      return page === null ? unreachable() : { ok: true, epoch: page.meta.epoch, results: [] };
    }
    let epoch = "";
    const results: { seq: number; id: string; duplicate: boolean }[] = [];
    for (const part of parts(channel, messages)) {
      if (!bus.up) return unreachable();
      let done: SharedAppended;
      try {
        done = await appendPart(node, channel, part);
      } catch (error) {
        done = { ok: false, message: `Cannot store messages in Deno KV: ${kvReason(error)}` };
      }
      if (!done.ok) return done;
      epoch = done.epoch;
      results.push(...done.results);
    }
    return { ok: true, epoch, results };
  };

  /** Runs a read while reachable; null when not, or when the store fails. */
  const reading = <T>(read: () => Promise<T>): Promise<T | null> => {
    if (!bus.up) return Promise.resolve(null);
    return bus.track(read().catch(() => null));
  };

  /** Each channel's last append asked for: one engine's appends to a channel run in turn. */
  const appending = new Map<string, Promise<unknown>>();

  return {
    append(node, channel, messages) {
      if (!bus.up) return Promise.resolve(unreachable());
      const run = (appending.get(channel) ?? Promise.resolve()).then(() =>
        append(node, channel, messages)
      );
      const last = run.catch(() => {});
      appending.set(channel, last);
      last.then(() => appending.get(channel) === last && appending.delete(channel));
      return bus.track(run);
    },
    follow: (channel) => follower.follow(channel),
    unfollow: (channel) => follower.unfollow(channel),
    following: (channel) => follower.following(channel),
    stop: () => follower.stop(),
    latest(channel, limit) {
      return reading(async (): Promise<Page> => {
        const { meta, messages } = await newest(channel, clampLimit(limit));
        return { epoch: meta.epoch, seq: meta.top, messages };
      });
    },
    before(channel, seq, limit) {
      return reading(async (): Promise<Page> => {
        const meta = await ensure(channel, await kv.get(metaKey(channel), strong));
        const n = clampLimit(limit);
        // Entries before `seq` are those up to the greatest whole seq below it.
        const end = seq === Infinity ? meta.top : Number.isNaN(seq) ? 0 : Math.ceil(seq) - 1;
        const hi = Math.min(end, meta.top);
        const lo = Math.max(1, meta.top - maxPerChannel + 1, hi - n + 1);
        const rows = n === 0 ? [] : await range(channel, lo, hi);
        return { epoch: meta.epoch, seq: meta.top, messages: run(rows, meta, hi, now()) };
      });
    },
    since(channel, epoch, seq, limit) {
      return reading(async (): Promise<SharedRecovery> => {
        const n = clampLimit(limit);
        const { meta, messages } = await newest(channel, n);
        const head = { epoch: meta.epoch, seq: meta.top };
        const oldest = messages.length === 0 ? null : messages[0].seq;
        return canRecover(head, oldest, epoch, seq, n)
          ? { recovered: true, ...head, messages: messages.filter((m) => m.seq > seq) }
          : { recovered: false, ...head, messages };
      });
    },
    async newEpoch(channel) {
      const done = await reading(async () => {
        for (let tries = 1;; tries++) {
          const entry = await kv.get(metaKey(channel), strong);
          const time = now();
          const meta = live(entry.value, time);
          let epoch = newEpoch();
          while (epoch === meta?.epoch) epoch = newEpoch();
          const next = meta === null ? { ...fresh(time), epoch } : { ...meta, epoch };
          const result = await kv.atomic()
            .check({ key: metaKey(channel), versionstamp: entry.versionstamp })
            .set(metaKey(channel), next, { expireIn: Math.max(1, next.at + ttlMs - time) })
            .commit();
          if (result.ok) return true;
          if (tries >= MAX_ATTEMPTS) return false;
          await contend(tries);
        }
      });
      return done === true;
    },
  };
}
