/**
 * The SQLite store's unfolded messages, in memory. Each append is written to
 * the database's `journal` table, in arrival order, so a transaction touches
 * the journal's last page or two whatever the channels; every so many
 * messages the store folds the journal into the per-channel `messages` table
 * in one transaction, where each channel's page is then written once for
 * many messages instead of once per append. Until then reads take a channel's
 * newest messages from here: plain data, in seq order per channel, and every
 * one newer than any row of the channel already folded.
 *
 * @module
 */
import type { StoredMessage } from "./store.ts";

/** A message of the journal: what the store returns, plus its key and the time it was stored. */
export type JournalRow = StoredMessage & { key: string | null; at: number };

/** The journal's messages by channel, each channel's in seq order. */
export type Journal = {
  /** Adds `row`, the newest of its channel. */
  add(row: JournalRow): void;
  /** `channel`'s messages, oldest first (empty when it has none). */
  rows(channel: string): readonly JournalRow[];
  /** Whether `channel` has messages here. */
  has(channel: string): boolean;
  /** Every channel with messages here, and its messages. */
  channels(): IterableIterator<[string, readonly JournalRow[]]>;
  /** How many messages are here. */
  readonly size: number;
  /** Forgets every message (they were folded). */
  clear(): void;
};

const NONE: readonly JournalRow[] = [];

/** An empty journal. */
export function createJournal(): Journal {
  const byChannel = new Map<string, JournalRow[]>();
  let size = 0;
  return {
    add(row) {
      const rows = byChannel.get(row.channel);
      if (rows === undefined) byChannel.set(row.channel, [row]);
      else rows.push(row);
      size++;
    },
    rows: (channel) => byChannel.get(channel) ?? NONE,
    has: (channel) => byChannel.has(channel),
    channels: () => byChannel.entries(),
    get size() {
      return size;
    },
    clear() {
      byChannel.clear();
      size = 0;
    },
  };
}

/** `row` as the store returns it: a fresh `message` frame with its seq. */
export function toStored(row: JournalRow): StoredMessage {
  const { channel, from, text, id, ts, seq } = row;
  return { type: "message", channel, from, text, id, ts, seq };
}
