/**
 * The hub delivers frames to sockets. This one, for runtimes without native
 * topics (Deno), serializes each frame once per audience, never per
 * recipient, and sends everything queued for one socket in the same tick as
 * one `\n`-separated WebSocket frame, which cuts the per-frame send cost that
 * bounds a chat server's fan-out. `hub_topics.ts` is the Bun counterpart.
 *
 * A socket whose unsent bytes pass `maxBufferedBytes` is reported through
 * `onSlowConsumer` so it cannot grow the server's memory; the others are
 * unaffected. The check runs in a later task than the writes (within one
 * task no write has reached the kernel yet), and a socket is slow when its
 * backlog is over the cap and has not shrunk since the last check: a healthy
 * client drains a burst, a stuck one does not. A backlog over
 * `HARD_BACKLOG_FACTOR` times the cap is slow at once.
 *
 * @module
 */
import type { Metrics } from "./metrics.ts";
import type { ServerFrame } from "./protocol.ts";
import type { SessionId } from "./registry.ts";
import type { Socket } from "./socket.ts";

/** Delivers frames to the sockets of sessions; each runtime adapter picks an implementation. */
export interface Hub {
  /** Registers the socket of a new session. */
  add(id: SessionId, socket: Socket): void;
  /** Forgets a session's socket; anything still queued for it is dropped. */
  remove(id: SessionId): void;
  /** Sends one frame to one session, after what was sent to it before. */
  send(id: SessionId, frame: ServerFrame): void;
  /**
   * Sends one frame to a channel's `members` (or its topic's subscribers),
   * serialized once, but not to `except`, which must be subscribed.
   */
  publish(
    channel: string,
    members: Iterable<SessionId>,
    frame: ServerFrame,
    except?: SessionId,
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
}

/** A backlog this many times `maxBufferedBytes` marks a slow consumer without a second look. */
export const HARD_BACKLOG_FACTOR = 8;

interface Outbox {
  readonly id: SessionId;
  readonly socket: Socket;
  /** Serialized frames waiting for the next flush. */
  pending: string[];
  /** The backlog seen at the last check when it was over the cap; Infinity otherwise. */
  backlogOverCap: number;
}

/** Creates a hub that flushes queued frames from a microtask. */
export function createHub(options: HubOptions): Hub {
  const { metrics } = options;
  const outboxes = new Map<SessionId, Outbox>();
  let dirty = new Set<Outbox>();
  let flushScheduled = false;
  /** Sockets written to since the last backlog check. */
  let written = new Set<Outbox>();
  let checkTimer: ReturnType<typeof setTimeout> | undefined;
  let stopped = false;

  const checkBacklogs = () => {
    const batch = written;
    written = new Set();
    checkTimer = undefined;
    const cap = options.maxBufferedBytes;
    for (const outbox of batch) {
      if (outboxes.get(outbox.id) !== outbox) continue;
      const backlog = outbox.socket.bufferedAmount;
      if (backlog <= cap) outbox.backlogOverCap = Infinity;
      else if (backlog > cap * HARD_BACKLOG_FACTOR || backlog >= outbox.backlogOverCap) {
        options.onSlowConsumer(outbox.id);
      } else outbox.backlogOverCap = backlog;
    }
  };

  const write = (outbox: Outbox) => {
    const { pending } = outbox;
    if (pending.length === 0) return;
    outbox.pending = [];
    outbox.socket.send(pending.length === 1 ? pending[0] : pending.join("\n"));
    metrics.framesOut++;
  };

  const flush = () => {
    // Swap first: what a flush causes (a slow consumer's presence leave) goes in the next batch.
    const batch = dirty;
    dirty = new Set();
    flushScheduled = false;
    for (const outbox of batch) {
      if (outboxes.get(outbox.id) !== outbox) continue; // closed since it was queued
      write(outbox);
      written.add(outbox);
    }
    if (checkTimer === undefined && written.size > 0 && !stopped) {
      checkTimer = setTimeout(checkBacklogs, 0);
    }
  };

  const enqueue = (outbox: Outbox, text: string) => {
    outbox.pending.push(text);
    dirty.add(outbox);
    if (!flushScheduled) {
      flushScheduled = true;
      queueMicrotask(flush);
    }
  };

  return {
    add(id, socket) {
      outboxes.set(id, { id, socket, pending: [], backlogOverCap: Infinity });
    },
    remove(id) {
      const outbox = outboxes.get(id);
      if (outbox === undefined) return;
      outboxes.delete(id);
      dirty.delete(outbox);
    },
    send(id, frame) {
      const outbox = outboxes.get(id);
      if (outbox !== undefined) enqueue(outbox, JSON.stringify(frame));
    },
    publish(_channel, members, frame, except) {
      let text: string | undefined;
      for (const id of members) {
        if (id === except) continue;
        const outbox = outboxes.get(id);
        if (outbox === undefined) continue;
        text ??= JSON.stringify(frame);
        enqueue(outbox, text);
      }
    },
    // Membership lives in the core's channel map, which `publish` is handed.
    subscribe() {},
    unsubscribe() {},
    close(id, code, reason) {
      const outbox = outboxes.get(id);
      if (outbox === undefined) return;
      outboxes.delete(id);
      dirty.delete(outbox);
      // A slow consumer gets no more data: its queue is what made it slow.
      if (outbox.socket.bufferedAmount <= options.maxBufferedBytes) write(outbox);
      outbox.socket.close(code, reason);
    },
    stop() {
      stopped = true;
      clearTimeout(checkTimer);
      checkTimer = undefined;
    },
  };
}
