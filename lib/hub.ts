/**
 * The hub delivers frames to sockets. Each frame is serialized once per
 * audience, never per recipient, and everything queued for one socket in
 * the same tick goes out as one `\n`-separated WebSocket frame, which cuts
 * the per-frame send cost that bounds a chat server's fan-out.
 *
 * A socket whose unsent bytes pass `maxBufferedBytes` is reported through
 * `onSlowConsumer` so it cannot grow the server's memory; the others are
 * unaffected.
 *
 * @module
 */
import type { Metrics } from "./metrics.ts";
import type { ServerFrame } from "./protocol.ts";
import type { SessionId } from "./registry.ts";
import type { Socket } from "./socket.ts";

/** Delivers frames to the sockets of sessions. */
export interface Hub {
  /** Registers the socket of a new session. */
  add(id: SessionId, socket: Socket): void;
  /** Forgets a session's socket; anything still queued for it is dropped. */
  remove(id: SessionId): void;
  /** Queues one frame for one session. */
  send(id: SessionId, frame: ServerFrame): void;
  /** Queues one frame for many sessions, serialized once; returns how many got it. */
  sendAll(ids: Iterable<SessionId>, frame: ServerFrame, except?: SessionId): number;
  /** Sends what is queued for `id` now, then closes its socket and forgets it. */
  close(id: SessionId, code: number, reason: string): void;
  /** Every registered session. */
  ids(): IterableIterator<SessionId>;
  /** How many sockets are registered. */
  readonly size: number;
}

/** How the hub is set up. */
export interface HubOptions {
  maxBufferedBytes: number;
  metrics: Metrics;
  /** Called during a flush, after the write, for a socket over `maxBufferedBytes`. */
  onSlowConsumer(id: SessionId): void;
}

interface Outbox {
  readonly id: SessionId;
  readonly socket: Socket;
  /** Serialized frames waiting for the next flush. */
  pending: string[];
}

/** Creates a hub that flushes queued frames from a microtask. */
export function createHub(options: HubOptions): Hub {
  const { metrics } = options;
  const outboxes = new Map<SessionId, Outbox>();
  let dirty = new Set<Outbox>();
  let flushScheduled = false;

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
      if (outbox.socket.bufferedAmount > options.maxBufferedBytes) {
        options.onSlowConsumer(outbox.id);
      }
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
      outboxes.set(id, { id, socket, pending: [] });
    },
    remove(id) {
      const outbox = outboxes.get(id);
      if (outbox === undefined) return;
      outboxes.delete(id);
      dirty.delete(outbox);
    },
    send(id, frame) {
      const outbox = outboxes.get(id);
      if (outbox === undefined) return;
      enqueue(outbox, JSON.stringify(frame));
      metrics.deliveries++;
    },
    sendAll(ids, frame, except) {
      let text: string | undefined;
      let count = 0;
      for (const id of ids) {
        if (id === except) continue;
        const outbox = outboxes.get(id);
        if (outbox === undefined) continue;
        text ??= JSON.stringify(frame);
        enqueue(outbox, text);
        count++;
      }
      metrics.deliveries += count;
      return count;
    },
    close(id, code, reason) {
      const outbox = outboxes.get(id);
      if (outbox === undefined) return;
      outboxes.delete(id);
      dirty.delete(outbox);
      // A slow consumer gets no more data: its queue is what made it slow.
      if (outbox.socket.bufferedAmount <= options.maxBufferedBytes) write(outbox);
      outbox.socket.close(code, reason);
    },
    ids: () => outboxes.keys(),
    get size() {
      return outboxes.size;
    },
  };
}
