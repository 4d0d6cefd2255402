/**
 * How the KV engine delivers chat messages: from each channel's own log
 * (`history_kv.ts`), not through the bus, so appends to different channels
 * never contend for one key. An engine follows the channels its node has
 * members in (counted: one `unfollow` per `follow`), and for each keeps the
 * last seq it delivered:
 *
 * - it watches the channels' meta keys (whose `top` is the channel's head),
 *   ten keys per watch as Deno KV allows, and on every change it is told of
 *   range-reads the messages after the last it delivered up to the head (a
 *   watch reports the latest value only; one range read fetches everything
 *   since the last, so coalesced changes lose nothing);
 * - it reads the heads once a second besides (a local store's watch misses
 *   another process's writes);
 * - it delivers its own commits at once, and an optional `BroadcastChannel`
 *   carries each commit to the other engines of the process, ahead of their
 *   watches, never instead of them.
 *
 * Whichever path brings a message first, each is delivered once, in seq
 * order, within the channel's current history (its `gen`; a history that
 * starts over starts again at seq 1). A channel's messages keep their order;
 * messages of different channels, and the bus's presence, have none between
 * them. An engine that falls so far behind that messages are gone before it
 * reads them, or whose channel's history starts over after it knew of
 * messages there, says so (`lost`, so the node can tell that channel's
 * members), and goes on from what is there.
 *
 * @module
 */
import type { FastPath } from "./kv_bus.ts";
import type { KvEntryMaybe, KvHandle, KvKey } from "./kv.ts";

/** Keys one watch takes at most (a Deno KV limit). */
const WATCH_KEYS = 10;

/** Messages read per range read. */
const READ_PAGE = 500;

/** Messages held ahead of their turn per channel at most, so a stalled watch cannot grow memory. */
const MAX_PENDING = 5000;

/** How long a failed watch waits before it starts again. */
const WATCH_RETRY_MS = 500;

/** A channel's head as its meta entry says: the history's run and its last seq. */
export type LogHead = { gen: string; top: number };

/**
 * A stored message as delivery needs it: its run, the first seq of the
 * commit that stored it (a commit's messages reach the node as one payload,
 * as they would on the bus), the node that sent it, and its bus message.
 */
export type LogEntry = { gen: string; commit: number; node: string; message: string };

/** What the follower needs of the log and the engine. */
export interface FollowerOptions {
  kv: KvHandle;
  metaKey(channel: string): KvKey;
  messageKey(channel: string, seq: number): KvKey;
  /** The head in a meta entry's value; null when there is none or it expired. */
  head(value: unknown): LogHead | null;
  /** A message entry's value as delivered; null when it is not one or it expired. */
  entry(value: unknown): LogEntry | null;
  /** Hands a payload to the node, as the bus does. */
  deliver(payload: string): void;
  /**
   * Messages of `channel` were gone before they could be read, or its history
   * started over after it had some; `reason` is for the log.
   */
  lost(channel: string, reason: string): void;
  /** Carries commits to the other engines of the process, if any. */
  fastPath?: FastPath;
  /** How often to read the heads besides watching them, in ms (0: never). */
  pollMs: number;
  /** Keeps an operation in mind so the engine's stop waits for it. */
  track<T>(operation: Promise<T>): Promise<T>;
}

/** The delivery side of the KV log. */
export interface Follower {
  /** Delivers `channel`'s messages from now on (one more member here). */
  follow(channel: string): void;
  /** One member fewer here; at none, stops delivering `channel`. */
  unfollow(channel: string): void;
  /**
   * Resolves once `channel`'s delivery has a starting point: every message
   * numbered after a read that begins then is delivered (at once when the
   * channel is not followed).
   */
  following(channel: string): Promise<void>;
  /** This engine committed `messages` from `node` as seqs `first`, `first + 1`, … of run `gen`. */
  committed(
    channel: string,
    gen: string,
    first: number,
    node: string,
    messages: readonly string[],
  ): void;
  /** Stops watching and polling; the store stays open. */
  stop(): Promise<void>;
}

type Followed = {
  channel: string;
  refs: number;
  /** The run delivered from; undefined until the starting point is known, null for none yet. */
  gen: string | null | undefined;
  /** The last seq delivered (or skipped). */
  last: number;
  /** The head as last seen. */
  known: number;
  /** Messages that came ahead of their turn, by seq. */
  pending: Map<number, LogEntry>;
  /** Messages delivered but not yet handed over: one commit's, in order. */
  out: LogEntry[];
  reading: boolean;
  started: Promise<void>;
  group: WatchGroup;
};

type WatchGroup = {
  channels: Followed[];
  reader?: ReadableStreamDefaultReader<KvEntryMaybe[]>;
  /** Bumped on each (re)start, so the loop of an earlier watch ends. */
  generation: number;
  retry?: ReturnType<typeof setTimeout>;
};

/** The fast path's message for a commit: `{l: channel, g, s: first seq, n: node, m: messages}`. */
type FastCommit = { l: string; g: string; s: number; n: string; m: string[] };

function parseFast(data: unknown): FastCommit | null {
  const commit = data as Partial<FastCommit> | null;
  return commit !== null && typeof commit === "object" && typeof commit.l === "string" &&
      typeof commit.g === "string" && Number.isSafeInteger(commit.s) &&
      typeof commit.n === "string" && Array.isArray(commit.m) &&
      commit.m.every((message) => typeof message === "string")
    ? commit as FastCommit
    : null;
}

/** Creates the follower; it watches nothing until a channel is followed. */
export function createFollower(options: FollowerOptions): Follower {
  const { kv, fastPath } = options;
  const strong = { consistency: "strong" } as const;
  const followed = new Map<string, Followed>();
  /** Groups with room for another channel. */
  const open = new Set<WatchGroup>();
  /** Groups whose watch restarts at the end of this tick (their channels changed). */
  const restarting = new Set<WatchGroup>();
  let stopped = false;

  const deliver = (state: Followed, seq: number, entry: LogEntry) => {
    state.last = seq;
    state.pending.delete(seq);
    const previous = state.out[state.out.length - 1];
    if (
      previous !== undefined && (previous.commit !== entry.commit || previous.node !== entry.node)
    ) handOver(state);
    state.out.push(entry);
  };

  /** Hands what was delivered over to the node, as the bus payload `{"n":node,"m":[…]}`. */
  const handOver = (state: Followed) => {
    if (state.out.length === 0) return;
    const { node } = state.out[0];
    const messages = state.out.map((entry) => entry.message).join(",");
    state.out = [];
    try {
      options.deliver(`{"n":${JSON.stringify(node)},"m":[${messages}]}`);
    } catch (error) {
      // The node's bug, not the store's: it surfaces as an uncaught error, and delivery goes on.
      queueMicrotask(() => {
        throw error;
      });
    }
  };

  /** Delivers what is pending in turn; reads the store when the head is further. */
  const pump = (state: Followed) => {
    if (state.gen === undefined) return;
    for (;;) {
      const next = state.pending.get(state.last + 1);
      if (next === undefined || next.gen !== state.gen) break;
      deliver(state, state.last + 1, next);
    }
    handOver(state);
    if (state.known > state.last && !state.reading && !stopped) {
      state.reading = true;
      options.track(read(state)).then((done) => {
        state.reading = false;
        if (done && followed.get(state.channel) === state) pump(state);
      });
    }
  };

  /**
   * Reads and delivers the messages after `last` up to the head known, a
   * page at a time; false when the store failed.
   */
  const read = async (state: Followed): Promise<boolean> => {
    while (!stopped && followed.get(state.channel) === state && state.known > state.last) {
      const gen = state.gen;
      const from = state.last + 1;
      const to = Math.min(state.known, state.last + READ_PAGE);
      const rows: { seq: number; entry: LogEntry | null }[] = [];
      try {
        for await (
          const row of kv.list(
            {
              start: options.messageKey(state.channel, from),
              end: options.messageKey(state.channel, to + 1),
            },
            { ...strong, batchSize: to - from + 1 },
          )
        ) {
          rows.push({
            seq: row.key[row.key.length - 1] as number,
            entry: options.entry(row.value),
          });
        }
      } catch {
        return false; // the bus says the store is out of reach; the next head read tries again
      }
      if (state.gen !== gen) continue; // the history started over meanwhile: read the new one
      for (const { seq, entry } of rows) {
        if (seq <= state.last || entry === null || entry.gen !== gen) continue;
        skipTo(state, seq - 1);
        deliver(state, seq, entry);
      }
      skipTo(state, to);
      handOver(state);
    }
    return true;
  };

  /**
   * Delivers what is pending up to `seq`; what is neither pending nor in the
   * store (trimmed or expired before this engine read it) is skipped, and said.
   */
  const skipTo = (state: Followed, seq: number) => {
    while (state.last < seq) {
      const ahead = state.pending.get(state.last + 1);
      if (ahead === undefined || ahead.gen !== state.gen) {
        handOver(state);
        options.lost(
          state.channel,
          `messages ${state.last + 1}–${seq} of "${state.channel}" were gone`,
        );
        state.last = seq;
        return;
      }
      deliver(state, state.last + 1, ahead);
    }
  };

  /**
   * `channel`'s history is run `gen` now, from seq 1 again. If this engine
   * knew of messages of the previous run (it delivered some, or its starting
   * point was past some), members here would take the new seqs for ones they
   * have seen, or missed some: that is said first, before any is delivered.
   * Where it knew of none (members here saw nothing), it starts quietly.
   */
  const startOver = (state: Followed, gen: string) => {
    if (Math.max(state.last, state.known) > 0) {
      handOver(state);
      options.lost(state.channel, `the history of "${state.channel}" started over at seq 1`);
    }
    state.gen = gen;
    state.last = state.known = 0;
  };

  /** A head from the store (the start, a watch or a poll). */
  const onHead = (state: Followed, value: unknown) => {
    const head = options.head(value);
    if (state.gen === undefined) {
      // The starting point: what the channel had before is not ours to deliver.
      state.gen = head?.gen ?? null;
      state.last = state.known = head?.top ?? 0;
      for (const seq of state.pending.keys()) if (seq <= state.last) state.pending.delete(seq);
    } else if (head === null) return; // expired: the next message starts a new run
    else if (head.gen !== state.gen) startOver(state, head.gen);
    if (head !== null) state.known = Math.max(state.known, head.top);
    pump(state);
  };

  /** Messages a commit carried (this engine's, or another's by the fast path). */
  const onCommit = (
    channel: string,
    gen: string,
    first: number,
    node: string,
    messages: readonly string[],
  ) => {
    const state = followed.get(channel);
    if (state === undefined) return;
    // A run's first message names it: the channel had none, or its history started over.
    if (first === 1 && state.gen !== undefined && state.gen !== gen) startOver(state, gen);
    messages.forEach((message, i) => {
      const seq = first + i;
      if (seq > state.last && state.pending.size < MAX_PENDING) {
        state.pending.set(seq, { gen, commit: first, node, message });
      }
    });
    if (state.gen === gen) state.known = Math.max(state.known, first + messages.length - 1);
    pump(state);
  };

  const onFast = (event: { data: unknown }) => {
    const commit = parseFast(event.data);
    if (commit !== null && !stopped) onCommit(commit.l, commit.g, commit.s, commit.n, commit.m);
  };
  fastPath?.addEventListener("message", onFast);

  const watch = async (group: WatchGroup, generation: number) => {
    const channels = group.channels.slice();
    let stream: ReadableStream<KvEntryMaybe[]>;
    try {
      stream = kv.watch(channels.map((state) => options.metaKey(state.channel)));
    } catch {
      return retry(group, generation);
    }
    const reader = stream.getReader();
    group.reader = reader;
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (generation !== group.generation || stopped) return;
        if (done) return retry(group, generation);
        value.forEach((entry, i) => {
          if (followed.get(channels[i].channel) === channels[i]) onHead(channels[i], entry.value);
        });
      }
    } catch {
      retry(group, generation);
    }
  };

  /** A watch failed (the bus says why): it starts again after a pause; the poll delivers meanwhile. */
  const retry = (group: WatchGroup, generation: number) => {
    if (stopped || generation !== group.generation) return;
    group.retry = setTimeout(() => {
      group.retry = undefined;
      restart(group);
    }, WATCH_RETRY_MS);
  };

  const restart = (group: WatchGroup) => {
    group.generation++;
    group.reader?.cancel().catch(() => {});
    group.reader = undefined;
    if (stopped || group.channels.length === 0) return;
    options.track(watch(group, group.generation));
  };

  /** Restarts the watches whose channels changed, once per tick whatever the number of changes. */
  const schedule = (group: WatchGroup) => {
    if (restarting.size === 0) {
      queueMicrotask(() => {
        for (const changed of restarting) restart(changed);
        restarting.clear();
      });
    }
    restarting.add(group);
  };

  /** Reads every followed head, ten per read. */
  let polling = false;
  const poll = async () => {
    if (polling || stopped) return;
    polling = true;
    try {
      const states = [...followed.values()];
      for (let at = 0; at < states.length && !stopped; at += WATCH_KEYS) {
        const some = states.slice(at, at + WATCH_KEYS);
        const entries = await kv.getMany(some.map((s) => options.metaKey(s.channel)), strong);
        entries.forEach((entry, i) => {
          if (followed.get(some[i].channel) === some[i]) onHead(some[i], entry.value);
        });
      }
    } catch {
      // The store is out of reach: the bus says so; the next poll tries again.
    } finally {
      polling = false;
    }
  };
  const poller = options.pollMs > 0
    ? setInterval(() => options.track(poll()), options.pollMs)
    : undefined;

  return {
    follow(channel) {
      const known = followed.get(channel);
      if (known !== undefined) {
        known.refs++;
        return;
      }
      let group = open.values().next().value;
      if (group === undefined) open.add(group = { channels: [], generation: 0 });
      const state: Followed = {
        channel,
        refs: 1,
        gen: undefined,
        last: 0,
        known: 0,
        pending: new Map(),
        out: [],
        reading: false,
        started: Promise.resolve(),
        group,
      };
      followed.set(channel, state);
      group.channels.push(state);
      if (group.channels.length >= WATCH_KEYS) open.delete(group);
      schedule(group);
      state.started = options.track(
        kv.get(options.metaKey(channel), strong).then(
          (entry) => {
            if (followed.get(channel) === state && state.gen === undefined) {
              onHead(state, entry.value);
            }
          },
          () => {}, // the watch or the poll gives the starting point once the store answers
        ),
      );
    },
    unfollow(channel) {
      const state = followed.get(channel);
      if (state === undefined || --state.refs > 0) return;
      followed.delete(channel);
      const { group } = state;
      group.channels.splice(group.channels.indexOf(state), 1);
      open.add(group);
      schedule(group);
    },
    following(channel) {
      return followed.get(channel)?.started ?? Promise.resolve();
    },
    committed(channel, gen, first, node, messages) {
      onCommit(channel, gen, first, node, messages);
      try {
        const commit: FastCommit = { l: channel, g: gen, s: first, n: node, m: [...messages] };
        fastPath?.postMessage(commit);
      } catch {
        // Closed or unclonable: the watches deliver anyway.
      }
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      clearInterval(poller);
      fastPath?.removeEventListener("message", onFast);
      const groups = new Set([...followed.values()].map((state) => state.group));
      for (const group of [...groups, ...open, ...restarting]) {
        clearTimeout(group.retry);
        group.generation++;
        await group.reader?.cancel().catch(() => {});
      }
    },
  };
}
