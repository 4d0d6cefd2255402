/**
 * The hub delivers frames to sockets. This one, for runtimes without native
 * topics (Deno), serializes each frame once per audience, never per
 * recipient, and sends everything queued for one socket in the same tick as
 * one `\n`-separated WebSocket frame, which cuts the per-frame send cost that
 * bounds a chat server's fan-out. `hub_topics.ts` is the Bun counterpart.
 *
 * A socket that still has `HOLD_BYTES` unsent is not written to: its frames
 * wait in the hub, where a room's members share them, instead of in a copy
 * per socket in the runtime's send buffer, and they go out together once it
 * drains (fewer, bigger writes exactly when the server is busiest).
 *
 * The runtime's backlog is a runtime call to read (an op on Deno), so the hub
 * keeps a bound on it instead: the last reading plus everything written since
 * (at most 3 bytes of UTF-8 per UTF-16 code unit, and a frame header). It
 * asks the runtime only when that bound reaches `HOLD_BYTES`: a healthy
 * socket is asked once every few hundred writes, not at each one. (A backlog
 * only grows by what is written to the socket: `Socket.bufferedAmount`.)
 *
 * A socket whose unsent bytes (held here or in the runtime's buffer) pass
 * `maxBufferedBytes` is reported through `onSlowConsumer` so it cannot grow
 * the server's memory; the others are
 * unaffected. The check runs in a later task than the writes (within one
 * task no write has reached the kernel yet), and a socket is slow when its
 * backlog is over the cap and has not shrunk since the last check: a healthy
 * client drains a burst, a stuck one does not. A backlog over
 * `HARD_BACKLOG_FACTOR` times the cap is slow at once.
 *
 * @module
 */
import type { Metrics } from "../metrics.ts";
import type { ServerFrame } from "../core/protocol.ts";
import type { SessionId } from "../core/registry.ts";
import type { Origin } from "../core/router.ts";
import type { Socket } from "../core/socket.ts";

/** Delivers frames to the sockets of sessions; each runtime adapter picks an implementation. */
export interface Hub {
  /** Registers the socket of a new session speaking `dialect` ("native" or a dialect's name). */
  add(id: SessionId, socket: Socket, dialect: string): void;
  /** Forgets a session's socket; anything still queued for it is dropped. */
  remove(id: SessionId): void;
  /** Sends one native frame to one session, after what was sent to it before. */
  send(id: SessionId, frame: ServerFrame): void;
  /** Sends text already in the session's wire format. */
  sendText(id: SessionId, text: string): void;
  /**
   * Sends one frame to a channel's `members` (or its topics' subscribers),
   * encoded once per dialect, but not to `except`, which must be subscribed.
   */
  publish(
    channel: string,
    members: Iterable<SessionId>,
    frame: ServerFrame,
    except?: SessionId,
    origin?: Origin,
  ): void;
  /** The session starts receiving the channel's publications. */
  subscribe(id: SessionId, channel: string): void;
  /** The session stops receiving the channel's publications. */
  unsubscribe(id: SessionId, channel: string): void;
  /** Sends what is queued for `id`, then closes its socket and forgets it. */
  close(id: SessionId, code: number, reason: string): void;
  /** Cancels pending timers; the hub sends nothing more. */
  stop(): void;
}

/** Makes a hub; a runtime adapter provides the one that suits it. */
export type HubFactory = (options: HubOptions) => Hub;

/** How the hub is set up. */
export interface HubOptions {
  maxBufferedBytes: number;
  metrics: Metrics;
  /** Called, in its own task, for a socket whose backlog is over `maxBufferedBytes`. */
  onSlowConsumer(id: SessionId): void;
  /** Encodes a published frame for a dialect's clients; null: they do not get it. */
  encode(dialect: string, frame: ServerFrame, origin: Origin | undefined): string | null;
}

/** A backlog this many times `maxBufferedBytes` marks a slow consumer without a second look. */
export const HARD_BACKLOG_FACTOR = 8;

/** Frames one batch may hold before it is written at once, bounding memory and latency. */
export const MAX_BATCH_FRAMES = 512;

/** Bytes (UTF-16 code units) one batch may hold before it is written at once. */
export const MAX_BATCH_CHARS = 256 * 1024;

/** Flushes closer together than this mean load: the next flush waits for a timer, batching more. */
const BUSY_GAP_MS = 1;

/** A socket with this many bytes still unsent gets nothing more until it drains below. */
export const HOLD_BYTES = 64 * 1024;

/** A bound on a WebSocket frame's header, counted with its payload in a backlog bound. */
const FRAME_HEADER_BYTES = 14;

/** How often held sockets are looked at for having drained. */
const HELD_POLL_MS = 1;

/** How often held sockets are checked for being slow consumers. */
const HELD_CHECK_MS = 100;

/**
 * A sequence of frames queued in one tick, shared by every socket that was
 * queued exactly these frames. Appending a frame to a batch gives the same
 * child batch for every socket, so a room's members share one batch and its
 * joined text is built once, not once per member.
 */
interface Batch {
  readonly parent: Batch | undefined;
  readonly last: string;
  readonly frames: number;
  readonly chars: number;
  /** The frames `\n`-joined; built on first write and shared. */
  text: string | undefined;
  /** The batches this one becomes, by the frame appended. */
  next: Map<string, Batch> | undefined;
}

interface Outbox {
  readonly id: SessionId;
  readonly socket: Socket;
  readonly dialect: string;
  /** Native clients split frames on `\n`; dialect clients get one message per frame. */
  readonly coalesce: boolean;
  /** What is queued for the next flush. */
  batch: Batch | undefined;
  /**
   * Full batches waiting, oldest first, while the socket is held; still shared with other
   * members. Undefined when none: a healthy socket's write reads no array.
   */
  sealed: Batch[] | undefined;
  /** In the list of the next flush. */
  queued: boolean;
  /** Forgotten (closed or removed): queued or held, it gets nothing more. */
  removed: boolean;
  /** The backlog seen at the last check when it was over the cap; Infinity otherwise. */
  backlogOverCap: number;
  /** At least the socket's runtime backlog: the last reading plus what was written since. */
  backlogBound: number;
}

/** `parent` with `text` appended, as a new batch. */
function newBatch(parent: Batch | undefined, text: string): Batch {
  return {
    parent,
    last: text,
    frames: (parent?.frames ?? 0) + 1,
    chars: (parent?.chars ?? 0) + text.length + 1,
    text: undefined,
    next: undefined,
  };
}

/** The joined text of a batch, building what its ancestors have not built yet. */
function textOf(batch: Batch): string {
  if (batch.text !== undefined) return batch.text;
  if (batch.parent === undefined) return batch.text = batch.last; // one frame: no chain to walk
  const chain: Batch[] = [];
  let base: Batch | undefined = batch;
  while (base !== undefined && base.text === undefined) {
    chain.push(base);
    base = base.parent;
  }
  let text = base?.text;
  for (let i = chain.length - 1; i >= 0; i--) {
    text = text === undefined ? chain[i].last : `${text}\n${chain[i].last}`;
    chain[i].text = text;
  }
  return text!;
}

/** A batch's frames, oldest first. */
function framesOf(batch: Batch): string[] {
  const frames: string[] = [];
  for (let at: Batch | undefined = batch; at !== undefined; at = at.parent) frames.push(at.last);
  return frames.reverse();
}

/**
 * The socket's runtime backlog, or a bound on it that is under `HOLD_BYTES`: the runtime is
 * asked (a call into it) only when the bound could hold the socket.
 */
function backlogOf(outbox: Outbox): number {
  if (outbox.backlogBound < HOLD_BYTES) return outbox.backlogBound;
  return outbox.backlogBound = outbox.socket.bufferedAmount;
}

/** What a held socket has waiting in the hub, in UTF-16 code units. */
function heldChars(outbox: Outbox): number {
  let chars = outbox.batch?.chars ?? 0;
  for (const batch of outbox.sealed ?? []) chars += batch.chars;
  return chars;
}

/** Creates a hub that coalesces each socket's frames per tick into shared batches. */
export function createHub(options: HubOptions): Hub {
  const { metrics } = options;
  const outboxes = new Map<SessionId, Outbox>();
  /**
   * The outboxes queued to since the last flush, each once (`Outbox.queued`): an array, not a
   * set, as each delivery adds to it. A removed one stays until the flush, which skips it.
   */
  let dirty: Outbox[] = [];
  /** The other list, empty: the two take turns (no new array per flush). */
  let spareDirty: Outbox[] = [];
  /**
   * The first batch (one frame, no parent) made last: the members of a publication that had
   * nothing queued share it. No map of them by frame: a frame is published once, so looking it
   * up (hashing its text) found nothing but itself. Forgotten at each flush.
   */
  let lastRoot: Batch | undefined;
  /**
   * The batch the last enqueue made or found, with its parent and frame: a publication's
   * members mostly share their parent (a room's members got the same frames before), so all but
   * the first find their batch here, without a map lookup. Forgotten at each flush.
   */
  let lastParent: Batch | undefined;
  let lastText: string | undefined;
  let lastBatch: Batch | undefined;
  let flushScheduled = false;
  let flushTimer: ReturnType<typeof setTimeout> | undefined;
  let lastFlushAt = -Infinity;
  /** Sockets written to since the last backlog check. */
  let written = new Set<Outbox>();
  /** Sockets with frames waiting for their runtime buffer to drain below `HOLD_BYTES`. */
  const held = new Set<Outbox>();
  let heldTimer: ReturnType<typeof setTimeout> | undefined;
  let heldCheckedAt = 0;
  let checkTimer: ReturnType<typeof setTimeout> | undefined;
  let stopped = false;

  const checkBacklogs = () => {
    const batch = written;
    written = new Set();
    checkTimer = undefined;
    const cap = options.maxBufferedBytes;
    for (const outbox of batch) {
      if (outbox.removed) continue;
      outbox.backlogBound = outbox.socket.bufferedAmount;
      const backlog = outbox.backlogBound + (held.has(outbox) ? heldChars(outbox) : 0);
      if (backlog <= cap) outbox.backlogOverCap = Infinity;
      else if (backlog > cap * HARD_BACKLOG_FACTOR || backlog >= outbox.backlogOverCap) {
        options.onSlowConsumer(outbox.id);
      } else outbox.backlogOverCap = backlog;
    }
  };

  /**
   * Holds `outbox` when its socket's backlog (`buffered`, read by the caller) has `HOLD_BYTES`
   * unsent; says whether it did.
   */
  const hold = (outbox: Outbox, buffered: number): boolean => {
    if (buffered < HOLD_BYTES) return false;
    held.add(outbox);
    if (heldTimer === undefined && !stopped) heldTimer = setTimeout(pollHeld, HELD_POLL_MS);
    return true;
  };

  /** Writes what is queued for `outbox`, or holds it while its socket has `HOLD_BYTES` unsent. */
  const write = (outbox: Outbox, force = false) => {
    if (outbox.batch === undefined && outbox.sealed === undefined) {
      if (held.size > 0) held.delete(outbox);
      return;
    }
    // The backlog (or a bound on it under HOLD_BYTES) decides both the hold and the check.
    let buffered = backlogOf(outbox);
    if (!force && hold(outbox, buffered)) return;
    if (held.size > 0) held.delete(outbox);
    const sealed = outbox.sealed;
    if (sealed !== undefined) {
      outbox.sealed = undefined;
      for (const batch of sealed) buffered = send(outbox, batch, buffered);
    }
    const { batch } = outbox;
    if (batch === undefined) return;
    outbox.batch = undefined;
    send(outbox, batch, buffered);
  };

  /**
   * One batch to the socket: one frame, or one per message for dialect clients. `buffered` is
   * at least the socket's backlog before; returns (and keeps) a bound on it after. Only a socket
   * that may now be over the cap (or was at its last check) is looked at again: a socket whose
   * bound stays under the cap cannot be a slow consumer yet.
   */
  const send = (outbox: Outbox, batch: Batch, buffered: number): number => {
    if (outbox.coalesce) {
      outbox.socket.send(textOf(batch));
      metrics.framesOut++;
    } else {
      // One frame (the usual case for a dialect): no array of frames per socket.
      if (batch.frames === 1) outbox.socket.send(batch.last);
      else for (const text of framesOf(batch)) outbox.socket.send(text);
      metrics.framesOut += batch.frames;
    }
    const after = buffered + 3 * batch.chars + FRAME_HEADER_BYTES * batch.frames;
    outbox.backlogBound = after;
    if (after > options.maxBufferedBytes || outbox.backlogOverCap !== Infinity) {
      written.add(outbox);
    }
    return after;
  };

  /** Writes to the held sockets that have drained; checks the others now and then. */
  const pollHeld = () => {
    heldTimer = undefined;
    for (const outbox of [...held]) {
      if (outbox.removed) held.delete(outbox);
      else if (!outbox.queued) write(outbox); // a queued one goes with the next flush
    }
    const now = performance.now();
    if (held.size > 0 && now - heldCheckedAt >= HELD_CHECK_MS) {
      heldCheckedAt = now;
      for (const outbox of held) written.add(outbox);
      checkTimer ??= setTimeout(checkBacklogs, 0);
    }
    // (A hold() above may have scheduled the next poll already: never two timers at once.)
    if (held.size > 0 && !stopped) heldTimer ??= setTimeout(pollHeld, HELD_POLL_MS);
    else if (written.size > 0 && !stopped) checkTimer ??= setTimeout(checkBacklogs, 0);
  };

  const flush = () => {
    // Swap first: what a flush causes (a slow consumer's presence leave) goes in the next batch.
    const queued = dirty;
    dirty = spareDirty;
    lastRoot = lastParent = lastBatch = undefined;
    lastText = undefined;
    flushScheduled = false;
    flushTimer = undefined;
    lastFlushAt = performance.now();
    for (const outbox of queued) {
      outbox.queued = false;
      if (!outbox.removed) write(outbox); // else closed since it was queued
    }
    queued.length = 0;
    spareDirty = queued;
    if (checkTimer === undefined && written.size > 0 && !stopped) {
      checkTimer = setTimeout(checkBacklogs, 0);
    }
  };

  /** The batch that `parent` becomes with `text` appended (one shared by every socket). */
  const batchAfter = (parent: Batch | undefined, text: string): Batch => {
    if (parent === lastParent && text === lastText && lastBatch !== undefined) return lastBatch;
    let batch: Batch | undefined;
    if (parent === undefined) {
      batch = lastRoot?.last === text ? lastRoot : lastRoot = newBatch(undefined, text);
    } else {
      const siblings = parent.next ??= new Map();
      batch = siblings.get(text);
      if (batch === undefined) siblings.set(text, batch = newBatch(parent, text));
    }
    lastParent = parent;
    lastText = text;
    return lastBatch = batch;
  };

  const enqueue = (outbox: Outbox, text: string) => {
    const batch = batchAfter(outbox.batch, text);
    outbox.batch = batch;
    if (batch.frames >= MAX_BATCH_FRAMES || batch.chars >= MAX_BATCH_CHARS) {
      // Bounded: a big burst goes out in pieces, or, while the socket is busy, waits in pieces.
      if (hold(outbox, backlogOf(outbox))) {
        (outbox.sealed ??= []).push(batch);
        outbox.batch = undefined;
      } else write(outbox, true); // (if queued, the flush finds nothing left to write)
      return;
    }
    if (!outbox.queued) {
      outbox.queued = true;
      dirty.push(outbox);
    }
    if (flushScheduled || stopped) return;
    flushScheduled = true;
    // Under load, flushes come back to back; a timer then lets several
    // inbound frames share one flush. At rest, a microtask keeps latency low.
    if (performance.now() - lastFlushAt < BUSY_GAP_MS) flushTimer = setTimeout(flush, 0);
    else queueMicrotask(flush);
  };

  return {
    add(id, socket, dialect) {
      outboxes.set(id, {
        id,
        socket,
        dialect,
        coalesce: dialect === "native",
        batch: undefined,
        sealed: undefined,
        queued: false,
        removed: false,
        backlogOverCap: Infinity,
        backlogBound: socket.bufferedAmount,
      });
    },
    remove(id) {
      const outbox = outboxes.get(id);
      if (outbox === undefined) return;
      outboxes.delete(id);
      outbox.removed = true;
      held.delete(outbox);
    },
    send(id, frame) {
      const outbox = outboxes.get(id);
      if (outbox !== undefined) enqueue(outbox, JSON.stringify(frame));
    },
    sendText(id, text) {
      const outbox = outboxes.get(id);
      if (outbox !== undefined) enqueue(outbox, text);
    },
    publish(_channel, members, frame, except, origin) {
      // Encoded once per dialect: members of one dialect hit the one-entry cache, and a map of
      // the encodings is made only when a second dialect shows up.
      let lastDialect: string | undefined;
      let lastText: string | null = null;
      let byDialect: Map<string, string | null> | undefined;
      for (const id of members) {
        if (id === except) continue;
        const outbox = outboxes.get(id);
        if (outbox === undefined) continue;
        if (outbox.dialect !== lastDialect) {
          if (lastDialect !== undefined) {
            byDialect ??= new Map([[lastDialect, lastText]]);
          }
          lastDialect = outbox.dialect;
          const known: string | null | undefined = byDialect?.get(lastDialect);
          if (known !== undefined) lastText = known;
          else {
            lastText = options.encode(lastDialect, frame, origin);
            byDialect?.set(lastDialect, lastText);
          }
        }
        if (lastText !== null) enqueue(outbox, lastText);
      }
    },
    // Membership lives in the core's channel map, which `publish` is handed.
    subscribe() {},
    unsubscribe() {},
    close(id, code, reason) {
      const outbox = outboxes.get(id);
      if (outbox === undefined) return;
      outboxes.delete(id);
      outbox.removed = true;
      held.delete(outbox);
      // A slow consumer gets no more data: its queue is what made it slow.
      if (outbox.socket.bufferedAmount <= options.maxBufferedBytes) write(outbox, true);
      outbox.socket.close(code, reason);
    },
    stop() {
      stopped = true;
      clearTimeout(checkTimer);
      clearTimeout(flushTimer);
      clearTimeout(heldTimer);
      checkTimer = undefined;
      heldTimer = undefined;
    },
  };
}
