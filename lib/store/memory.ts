/**
 * The in-memory message store: same behaviour as the SQLite store, but
 * history lives only as long as the process, so each store starts a new epoch.
 *
 * @module
 */
import {
  type Appended,
  canRecover,
  clampLimit,
  EXPIRE_EVERY_MS,
  type MessageStore,
  newEpoch,
  type NewMessage,
  resolveOptions,
  type StoredMessage,
  type StoreOptions,
} from "./store.ts";

type Entry = { message: StoredMessage; key: string | undefined; at: number };
type Log = { head: number; entries: Entry[]; keys: Map<string, Entry> };

const keyOf = (from: string, key: string) => `${from}\u0000${key}`;

/**
 * Creates an empty in-memory store with a new random epoch.
 *
 * @example
 * ```ts
 * import { createMemoryStore } from "./memory.ts";
 * const store = createMemoryStore({ maxPerChannel: 100 });
 * store.append("lobby", [{ from: "ann", text: "hi", id: "m1", ts: new Date().toISOString() }]);
 * store.latest("lobby", 50); // [{ type: "message", channel: "lobby", …, seq: 1 }]
 * ```
 */
export function createMemoryStore(options: StoreOptions = {}): MessageStore {
  const { maxPerChannel, maxAgeMs, maxEmptyHeads, now } = resolveOptions(options);
  const epoch = newEpoch();
  const logs = new Map<string, Log>();
  /** Where a channel with no log of its own counts from (`DEFAULT_MAX_EMPTY_HEADS`). */
  let floor = 0;
  let lastSweep = now();

  /**
   * Now and then: drops what expired in every channel, and when too many are left with nothing,
   * forgets them, keeping only the highest of their heads as the floor they count from again.
   */
  const sweep = () => {
    if (now() - lastSweep < EXPIRE_EVERY_MS) return;
    lastSweep = now();
    const empty: string[] = [];
    for (const channel of logs.keys()) if (kept(channel).length === 0) empty.push(channel);
    if (empty.length <= maxEmptyHeads) return;
    for (const channel of empty) {
      floor = Math.max(floor, logs.get(channel)!.head);
      logs.delete(channel);
    }
  };

  /** The channel's log with expired messages dropped; a log keeps its head after emptying. */
  const kept = (channel: string): Entry[] => {
    const log = logs.get(channel);
    if (log === undefined) return [];
    const cutoff = now() - maxAgeMs;
    let drop = 0;
    while (drop < log.entries.length && log.entries[drop].at <= cutoff) drop++;
    if (drop > 0) forget(log, drop);
    return log.entries;
  };
  /** Drops the `count` oldest entries of `log`, and their keys. */
  const forget = (log: Log, count: number) => {
    for (const entry of log.entries.splice(0, count)) {
      const id = entry.key === undefined ? undefined : keyOf(entry.message.from, entry.key);
      if (id !== undefined && log.keys.get(id) === entry) log.keys.delete(id);
    }
  };
  const copy = (entries: Entry[]): StoredMessage[] => entries.map((e) => ({ ...e.message }));

  const store: MessageStore = {
    appendAll(entries) {
      const stored: StoredMessage[] = [];
      for (const { channel, message } of entries) {
        const appended = store.append(channel, [message]) as { messages: StoredMessage[] };
        stored.push(appended.messages[0]);
      }
      return { ok: true, epoch, messages: stored };
    },
    append(channel: string, messages: readonly NewMessage[]): Appended {
      sweep();
      let log = logs.get(channel);
      if (log === undefined) logs.set(channel, log = { head: floor, entries: [], keys: new Map() });
      const at = now();
      const stored = messages.map(({ from, text, id, ts, key }): StoredMessage => {
        const message: StoredMessage = {
          type: "message",
          channel,
          from,
          text,
          id,
          ts,
          seq: ++log.head,
        };
        const entry = { message, key, at };
        log.entries.push(entry);
        if (key !== undefined && !log.keys.has(keyOf(from, key))) {
          log.keys.set(keyOf(from, key), entry);
        }
        return { ...message };
      });
      kept(channel);
      if (log.entries.length > maxPerChannel) forget(log, log.entries.length - maxPerChannel);
      return { ok: true, epoch, messages: stored };
    },
    latest(channel, limit) {
      const entries = kept(channel);
      const n = clampLimit(limit);
      return n === 0 ? [] : copy(entries.slice(-n));
    },
    before(channel, seq, limit) {
      const n = clampLimit(limit);
      if (n === 0) return [];
      const older = kept(channel).filter((entry) => entry.message.seq < seq);
      return copy(older.slice(-n));
    },
    since(channel, sinceEpoch, seq, limit) {
      const entries = kept(channel);
      const head = { epoch, seq: logs.get(channel)?.head ?? floor };
      const oldest = entries.length === 0 ? null : entries[0].message.seq;
      const n = clampLimit(limit);
      if (canRecover(head, oldest, sinceEpoch, seq, n)) {
        return {
          recovered: true,
          epoch,
          messages: copy(entries.filter((e) => e.message.seq > seq)),
        };
      }
      return { recovered: false, epoch, messages: store.latest(channel, n) };
    },
    head(channel) {
      return { epoch, seq: logs.get(channel)?.head ?? floor };
    },
    byKey(channel, from, key) {
      kept(channel);
      const found = logs.get(channel)?.keys.get(keyOf(from, key));
      return found === undefined ? null : { ...found.message };
    },
    close() {
      logs.clear();
    },
  };
  return store;
}
