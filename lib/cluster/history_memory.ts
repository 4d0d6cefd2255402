/**
 * The in-process double of the Redis history (`history_redis.ts`), for the
 * engines of a memory cluster: the same seqs, keys, trimming, expiry (a
 * channel's whole history `ttlMs` after its last message) and new epochs
 * after a loss, and each append's payload handed to every connected engine,
 * the appending one included, as Redis pub/sub echoes a publication to its
 * own subscriber. Each engine sees the history through its own view, which
 * is unreachable while that engine is cut off.
 *
 * @module
 */
import type { Clock } from "../core/clock.ts";
import type { Missed } from "../store/store.ts";
import {
  canRecover,
  clampLimit,
  newEpoch,
  type Page,
  type SharedLog,
  type SharedRecovery,
} from "../store/store.ts";

/** What the history keeps, and its time source. */
export interface MemoryHistoryOptions {
  /** The most messages kept per channel. */
  maxPerChannel: number;
  /** How long a channel's history outlives its last message, and a key its message. */
  ttlMs: number;
  /** The time source for expiry (default: the system clock). */
  clock?: Pick<Clock, "now">;
}

/** One history shared by the engines of a memory cluster. */
export interface MemoryHistory {
  /** The history as one engine sees it: reachable while `reachable()` says so. */
  view(reachable: () => boolean): SharedLog;
  /** Forgets every channel and key, as a Redis without persistence does when it restarts. */
  forget(): void;
  /** The channel's messages after seq `after`, as the bus carried them (`Engine.replay`). */
  replay(channel: string, after: number, limit: number): Missed;
}

/** A channel's meta hash and stream in one: they expire together, as in Redis. */
interface ChannelLog {
  epoch: string;
  /** The run of the history its seqs count in: new when the history starts over, not with an epoch. */
  gen: string;
  top: number;
  /** Stored frames' JSON, oldest first, with the bus message that carried each and its node. */
  entries: { seq: number; frame: string; bus: string; node: string }[];
  expiresAt: number;
}

/**
 * Creates an empty history; `deliver` receives each append's payload once
 * and hands it to every connected engine.
 */
export function createMemoryHistory(
  options: MemoryHistoryOptions,
  deliver: (payload: string) => void,
): MemoryHistory {
  const maxPerChannel = Math.max(1, Math.floor(options.maxPerChannel));
  const ttlMs = Math.max(1, Math.floor(options.ttlMs));
  const now = () => (options.clock ?? Date).now();
  const channels = new Map<string, ChannelLog>();
  const keys = new Map<string, { seq: number; id: string; expiresAt: number }>();

  /** The channel's log, made with a new epoch when missing or expired. */
  const ensure = (channel: string): ChannelLog => {
    const found = channels.get(channel);
    if (found !== undefined && found.expiresAt > now()) return found;
    const log: ChannelLog = {
      epoch: newEpoch(),
      gen: newEpoch(),
      top: 0,
      entries: [],
      expiresAt: now() + ttlMs,
    };
    channels.set(channel, log);
    return log;
  };
  const keyOf = (channel: string, from: string, key: string) => `${channel}\0${from}\0${key}`;
  const liveKey = (id: string) => {
    const found = keys.get(id);
    if (found === undefined || found.expiresAt > now()) return found;
    keys.delete(id);
    return undefined;
  };
  const parse = (entries: ChannelLog["entries"]) => entries.map((entry) => JSON.parse(entry.frame));
  const latest = (log: ChannelLog, limit: number): Page => ({
    epoch: log.epoch,
    seq: log.top,
    gen: log.gen,
    messages: limit === 0 ? [] : parse(log.entries.slice(-limit)),
  });
  const unreachable = "Cannot store messages: the history store cannot be reached";

  return {
    view(reachable): SharedLog {
      return {
        append(node, channel, messages) {
          if (!reachable()) return Promise.resolve({ ok: false, message: unreachable });
          const log = ensure(channel);
          const results: { seq: number; id: string; duplicate: boolean }[] = [];
          const parts: string[] = [];
          for (const message of messages) {
            const key = message.key === undefined
              ? undefined
              : keyOf(channel, message.from, message.key);
            const first = key === undefined ? undefined : liveKey(key);
            if (first !== undefined) {
              results.push({ seq: first.seq, id: first.id, duplicate: true });
              continue;
            }
            const seq = ++log.top;
            const frame = `${message.frameOpen},"seq":${seq}}`;
            const bus = `${message.busOpen}${frame},"g":${JSON.stringify(log.gen)}}`;
            log.entries.push({ seq, frame, bus, node });
            if (key !== undefined) keys.set(key, { seq, id: message.id, expiresAt: now() + ttlMs });
            parts.push(bus);
            results.push({ seq, id: message.id, duplicate: false });
          }
          if (parts.length > 0) {
            if (log.entries.length > maxPerChannel) {
              log.entries.splice(0, log.entries.length - maxPerChannel);
            }
            log.expiresAt = now() + ttlMs;
            deliver(`{"n":${JSON.stringify(node)},"m":[${parts.join(",")}]}`);
          }
          return Promise.resolve({ ok: true, epoch: log.epoch, results });
        },
        latest(channel, limit) {
          if (!reachable()) return Promise.resolve(null);
          return Promise.resolve(latest(ensure(channel), clampLimit(limit)));
        },
        before(channel, seq, limit) {
          if (!reachable()) return Promise.resolve(null);
          const log = ensure(channel);
          const n = clampLimit(limit);
          const older = log.entries.filter((entry) => entry.seq < seq);
          return Promise.resolve({
            epoch: log.epoch,
            seq: log.top,
            gen: log.gen,
            messages: n === 0 ? [] : parse(older.slice(-n)),
          });
        },
        since(channel, epoch, seq, limit) {
          if (!reachable()) return Promise.resolve(null);
          const log = ensure(channel);
          const n = clampLimit(limit);
          const oldest = log.entries.length === 0 ? null : log.entries[0].seq;
          const head = { epoch: log.epoch, seq: log.top };
          const found: SharedRecovery = canRecover(head, oldest, epoch, seq, n)
            ? {
              recovered: true,
              ...head,
              gen: log.gen,
              messages: parse(log.entries.filter((entry) => entry.seq > seq)),
            }
            : { recovered: false, ...latest(log, n) };
          return Promise.resolve(found);
        },
        newEpoch(channel) {
          if (!reachable()) return Promise.resolve(false);
          const log = ensure(channel);
          let epoch = newEpoch();
          while (epoch === log.epoch) epoch = newEpoch();
          log.epoch = epoch;
          return Promise.resolve(true);
        },
      };
    },
    forget() {
      channels.clear();
      keys.clear();
    },
    replay(channel, after, limit) {
      // A read, so it makes no history (as Redis's replay makes no key).
      const log = channels.get(channel);
      if (log === undefined || log.expiresAt <= now()) return { gen: "", top: 0, messages: [] };
      const messages = log.entries.filter((entry) => entry.seq > after).slice(0, limit)
        .map(({ node, bus }) => ({ node, message: bus }));
      return { gen: log.gen, top: log.top, messages };
    },
  };
}
