/**
 * The SQLite store's index, in memory: for each channel, which row of the
 * append-ordered `log` table holds each kept seq, when it was stored, and
 * its sender's idempotency key. Plain data: the store fills it from the
 * table when it opens and keeps it as it appends; reads find rows here and
 * fetch them by rowid, so the table needs no per-channel index (whose pages,
 * one per channel written to, made every commit touch as many pages as it
 * had channels).
 *
 * A channel's entries are its newest seqs, continuous: seq `first + i` is
 * `rowids[i]`. Past `maxPerChannel` the oldest go, and their rows are
 * handed back for deletion.
 *
 * @module
 */

/** One channel's kept messages: seq `first + i` is row `rowids[i]`, stored at `ats[i]`. */
export type ChannelIndex = {
  channel: string;
  /** The channel's latest seq (kept or not; 0 for none). */
  head: number;
  /** The seq of `rowids[0]`. */
  first: number;
  rowids: number[];
  ats: number[];
  /** Each entry's `from\0key`, for the keyed ones. */
  keys: (string | undefined)[];
  /** `from\0key` → the seq of the kept message that first used it. */
  byKey: Map<string, number>;
};

/** The identity of a sender's key. */
export const keyOf = (from: string, key: string): string => `${from}\u0000${key}`;

/** An index with no channel. */
export function createLogIndex(maxPerChannel: number) {
  const channels = new Map<string, ChannelIndex>();

  /** Drops the `count` oldest entries of `index`, adding their rows to `dead`. */
  const forget = (index: ChannelIndex, count: number, dead: number[]) => {
    for (let i = 0; i < count; i++) {
      dead.push(index.rowids[i]);
      const key = index.keys[i];
      if (key !== undefined && index.byKey.get(key) === index.first + i) index.byKey.delete(key);
    }
    index.rowids.splice(0, count);
    index.ats.splice(0, count);
    index.keys.splice(0, count);
    index.first += count;
  };

  return {
    /** `channel`'s index, if it has had a message or a known head. */
    get: (channel: string): ChannelIndex | undefined => channels.get(channel),
    /** Every channel's index. */
    all: (): IterableIterator<ChannelIndex> => channels.values(),
    /** Forgets a channel that has no entry left (the store keeps its head elsewhere). */
    remove: (channel: string): void => void channels.delete(channel),
    /** Sets the head of a channel with no kept row (it outlived its messages). */
    setHead(channel: string, head: number) {
      const index = channels.get(channel);
      if (index === undefined) {
        channels.set(channel, {
          channel,
          head,
          first: head + 1,
          rowids: [],
          ats: [],
          keys: [],
          byKey: new Map(),
        });
      } else if (head > index.head && index.rowids.length === 0) {
        index.head = head;
        index.first = head + 1;
      }
    },
    /**
     * Adds seq `seq` of `channel` (its next, or any later one: the entries
     * before it are dropped) at row `rowid`; the rows that fall out of the
     * kept window go to `dead`.
     */
    add(
      channel: string,
      seq: number,
      rowid: number,
      at: number,
      key: string | undefined,
      dead: number[],
    ) {
      let index = channels.get(channel);
      if (index === undefined) {
        index = { channel, head: 0, first: seq, rowids: [], ats: [], keys: [], byKey: new Map() };
        channels.set(channel, index);
      }
      if (seq !== index.first + index.rowids.length) {
        // Not the next (a gap in the table): the run starts over at this seq.
        forget(index, index.rowids.length, dead);
        index.first = seq;
      }
      index.rowids.push(rowid);
      index.ats.push(at);
      index.keys.push(key);
      if (key !== undefined && !index.byKey.has(key)) index.byKey.set(key, seq);
      index.head = Math.max(index.head, seq);
      if (index.rowids.length > maxPerChannel) {
        forget(index, index.rowids.length - maxPerChannel, dead);
      }
    },
    /**
     * Drops `channel`'s entries stored at or before `cutoff` (the oldest
     * are the first); their rows go to `dead`.
     */
    expire(index: ChannelIndex, cutoff: number, dead: number[]) {
      let count = 0;
      while (count < index.ats.length && index.ats[count] <= cutoff) count++;
      if (count > 0) forget(index, count, dead);
    },
  };
}

/** The store's index. */
export type LogIndex = ReturnType<typeof createLogIndex>;
