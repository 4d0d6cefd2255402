/**
 * The message-history interface (issue 15 groundwork, not wired in yet): a
 * per-channel log of `message` frames, each with a `seq` (1, 2, 3, … per
 * channel, continuous within an epoch). The epoch and each channel's head seq
 * outlive the messages themselves, so a trimmed channel keeps its numbering
 * (as Centrifugo's history does). Every operation is synchronous and takes and
 * returns plain data; implementations are `memory.ts` and `sqlite.ts`.
 *
 * @module
 */
import type { Clock } from "../core/clock.ts";
import type { MessageFrame } from "../core/protocol.ts";

/** A message as the store keeps and returns it: the native `message` frame plus its seq. */
export type StoredMessage = MessageFrame & { seq: number };

/** A message to append: the frame's fields but the channel, and an optional idempotency key. */
export type NewMessage = {
  from: string;
  text: string;
  id: string;
  ts: string;
  /** The sender's `broadcast` key (1–64 characters), for `byKey`. */
  key?: string;
};

/** A message to append, with its channel. */
export type ChannelMessage = { channel: string; message: NewMessage };

/** Where a channel's history stands: the store's epoch and the latest seq (0 for none). */
export type Head = { epoch: string; seq: number };

/**
 * What `append` did: the stored messages in order, or why nothing was stored
 * (`busy`: another connection held the write lock and the caller would not
 * wait; nothing went wrong, try again).
 */
export type Appended =
  | { ok: true; epoch: string; messages: StoredMessage[] }
  | { ok: false; message: string; busy?: true };

/**
 * What `since` found: every message after the seq (possibly none) with
 * `recovered: true`, or the latest messages with `recovered: false` — never a
 * partial recovery.
 */
export type Recovery = { recovered: boolean; epoch: string; messages: StoredMessage[] };

/** Limits on what a store keeps, per channel. */
export type StoreOptions = {
  /** The most messages kept per channel; older ones are trimmed (default 1000). */
  maxPerChannel?: number;
  /** How long a message is kept, in milliseconds (default 7 days). */
  maxAgeMs?: number;
  /** The time source for ages; injected so trimming is tested without waiting. */
  clock?: Pick<Clock, "now">;
  /** Channels left with no message kept past which their heads are folded (default 10,000). */
  maxEmptyHeads?: number;
};

/** The default of `StoreOptions.maxPerChannel`. */
export const DEFAULT_MAX_PER_CHANNEL = 1000;
/** The default of `StoreOptions.maxAgeMs`: 7 days. */
export const DEFAULT_MAX_AGE_MS = 7 * 24 * 60 * 60 * 1000;
/**
 * The default of `StoreOptions.maxEmptyHeads`. A channel whose messages all went keeps its head,
 * so that its numbering goes on where it stopped; that cost memory for every channel anyone ever
 * wrote to, for good. Past this many, the store keeps one number for all of them instead, the
 * highest of their heads (the floor), and such a channel's numbering goes on after the floor: a
 * seq is never given twice within an epoch, and a client that knew an older seq of it is told
 * `recovered: false`.
 */
export const DEFAULT_MAX_EMPTY_HEADS = 10_000;
/** How often a store looks over every channel for messages past their age. */
export const EXPIRE_EVERY_MS = 60_000;

/** A per-channel message history with an epoch and continuous seqs. */
export interface MessageStore {
  /** Appends `messages` to `channel` in one transaction, assigning the next seqs in order. */
  append(channel: string, messages: readonly NewMessage[]): Appended;
  /**
   * Appends messages of any channels in one transaction (a tick's worth),
   * each getting its channel's next seq; `messages` of the result are in the
   * order of `entries`. With `mayWait` false, a store whose write lock another
   * connection holds answers `busy` at once instead of waiting for it.
   */
  appendAll(entries: readonly ChannelMessage[], mayWait?: boolean): Appended;
  /** The latest `limit` messages of `channel`, oldest first. */
  latest(channel: string, limit: number): StoredMessage[];
  /** The latest `limit` messages of `channel` before `seq`, oldest first. */
  before(channel: string, seq: number, limit: number): StoredMessage[];
  /** Every message of `channel` after `seq` in `epoch`, or the latest `limit` when it cannot. */
  since(channel: string, epoch: string, seq: number, limit: number): Recovery;
  /** The epoch and latest seq of `channel` (the floor, 0 at first, when it has had no message). */
  head(channel: string): Head;
  /** The kept message `from` sent into `channel` with `key`, or null when none is kept. */
  byKey(channel: string, from: string, key: string): StoredMessage | null;
  /** Releases what the store holds; a closed store must not be used again. */
  close(): void;
}

/** The store's resolved limits and clock. */
export type ResolvedOptions = {
  maxPerChannel: number;
  maxAgeMs: number;
  maxEmptyHeads: number;
  now: () => number;
};

/** Fills in the defaults of `options`. */
export function resolveOptions(options: StoreOptions = {}): ResolvedOptions {
  const clock = options.clock ?? { now: () => Date.now() };
  return {
    maxPerChannel: Math.max(1, Math.floor(options.maxPerChannel ?? DEFAULT_MAX_PER_CHANNEL)),
    maxAgeMs: Math.max(1, options.maxAgeMs ?? DEFAULT_MAX_AGE_MS),
    maxEmptyHeads: Math.max(0, Math.floor(options.maxEmptyHeads ?? DEFAULT_MAX_EMPTY_HEADS)),
    now: () => clock.now(),
  };
}

/** A new random epoch: 8 base-36 characters. */
export function newEpoch(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(8));
  return [...bytes].map((byte) => (byte % 36).toString(36)).join("");
}

/** A limit as a whole number of at least 0. */
export function clampLimit(limit: number): number {
  return Number.isFinite(limit) ? Math.max(0, Math.floor(limit)) : 0;
}

/**
 * The rule of `since`, shared by the implementations: recovered when the
 * epoch matches, `seq` is not past the head, every message after it is still
 * kept (`oldest` is the oldest kept seq, or null when none is kept) and they
 * fit in `limit`.
 */
export function canRecover(
  head: Head,
  oldest: number | null,
  epoch: string,
  seq: number,
  limit: number,
): boolean {
  if (epoch !== head.epoch || !Number.isInteger(seq) || seq < 0 || seq > head.seq) return false;
  if (seq === head.seq) return true;
  if (oldest === null || oldest > seq + 1) return false;
  return head.seq - seq <= limit;
}

/**
 * A page of a channel's history: its epoch and head seq when read, and
 * messages oldest first; `gen`, from a log that numbers for several nodes,
 * names the run of the history the seqs count in (it changes when the
 * history starts over at 1, not with the epoch).
 */
export type Page = { epoch: string; seq: number; messages: StoredMessage[]; gen?: string };

/** What `SharedLog.since` found: a `Recovery` plus the head seq when read (and `Page`'s `gen`). */
export type SharedRecovery = Recovery & { seq: number; gen?: string };

/**
 * A message for a shared log: the message, and the two JSON fragments the
 * log completes once it knows the seq, so it can store and publish the
 * message without knowing the bus format:
 * - `frameOpen`: the `message` frame's JSON without its closing `}`; the log
 *   stores `frameOpen + ',"seq":' + seq + '}'`;
 * - `busOpen`: the bus message's JSON up to where the frame starts; the bus
 *   carries `busOpen + frameOpen + ',"seq":' + seq + '}}'`.
 */
export type SharedMessage = NewMessage & { frameOpen: string; busOpen: string };

/** What a shared append did, per message in order: its seq and id, or the earlier one its key names. */
export type SharedAppended =
  | { ok: true; epoch: string; results: { seq: number; id: string; duplicate: boolean }[] }
  | { ok: false; message: string };

/**
 * A history every node of a cluster shares (Redis, Deno KV). One `append`
 * assigns the channel's next seqs, stores the messages, records their keys
 * (a message whose sender already used its key in this channel within the
 * history window is not stored again: its result names the first) and
 * publishes the stored ones as bus payloads `{"n":node,"m":[<bus
 * message>,…]}`, all in one atomic step, so every node (this one included)
 * receives a channel's messages in seq order: Redis on the cluster bus, to
 * every node; Deno KV from the channel's own log, to the nodes that follow
 * the channel. Reads resolve to null when the store cannot be reached.
 */
export interface SharedLog {
  /** Appends, records keys and publishes, atomically; `node` is the payload's `n`. */
  append(
    node: string,
    channel: string,
    messages: readonly SharedMessage[],
  ): Promise<SharedAppended>;
  /** The latest `limit` messages and the head. */
  latest(channel: string, limit: number): Promise<Page | null>;
  /** The latest `limit` messages before `seq`, and the head. */
  before(channel: string, seq: number, limit: number): Promise<Page | null>;
  /** As `MessageStore.since`, plus the head seq. */
  since(channel: string, epoch: string, seq: number, limit: number): Promise<SharedRecovery | null>;
  /**
   * Where the log itself delivers messages to the nodes (Deno KV: each node
   * follows the channels it has members in, see `kv_follow.ts`), one more
   * local member of `channel`; absent where every node receives everything
   * (Redis publishes on the cluster bus).
   */
  follow?(channel: string): void;
  /** One local member of `channel` fewer (one per `follow`). */
  unfollow?(channel: string): void;
  /**
   * Resolves once `channel`'s delivery here has its starting point, so a
   * read that begins then misses nothing delivered after it (a `join` waits
   * for it before it reads).
   */
  following?(channel: string): Promise<void>;
  /**
   * Gives `channel` a new epoch (this node delivered messages the log never
   * stored, while it was unreachable): recovery across that gap then says
   * `recovered: false`. False when the store cannot be reached.
   */
  newEpoch(channel: string): Promise<boolean>;
}

/**
 * What a shared log holds of a channel after a seq: the run of its history
 * (`gen`, "" when it has none: never written, expired or lost), its head,
 * and the stored messages after the seq, oldest first, each as the bus
 * carried it (`node` published `message`, a bus message).
 */
export interface Missed {
  gen: string;
  top: number;
  messages: { node: string; message: string }[];
}
