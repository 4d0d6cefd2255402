/**
 * The hub delivers frames to sockets. Each frame is serialized once per
 * audience, never per recipient, and everything queued for one socket in
 * the same tick goes out as one `\n`-separated WebSocket frame, which cuts
 * the per-frame send cost that bounds a chat server's fan-out.
 *
 * @module
 */
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
  /** Sends what is queued for `id` now, then closes its socket. */
  close(id: SessionId, code: number, reason: string): void;
  /** Every registered session. */
  ids(): IterableIterator<SessionId>;
  /** How many sockets are registered. */
  readonly size: number;
}

interface Outbox {
  readonly socket: Socket;
  /** Serialized frames waiting for the next flush. */
  pending: string[];
}

/** Creates a hub that flushes queued frames from a microtask. */
export function createHub(): Hub {
  const outboxes = new Map<SessionId, Outbox>();
  const dirty = new Set<Outbox>();
  let flushScheduled = false;

  const flush = () => {
    flushScheduled = false;
    for (const outbox of dirty) write(outbox);
    dirty.clear();
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
      outboxes.set(id, { socket, pending: [] });
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
      return count;
    },
    close(id, code, reason) {
      const outbox = outboxes.get(id);
      if (outbox === undefined) return;
      write(outbox);
      dirty.delete(outbox);
      outbox.socket.close(code, reason);
    },
    ids: () => outboxes.keys(),
    get size() {
      return outboxes.size;
    },
  };
}

/** Sends everything queued for one socket as a single frame. */
function write(outbox: Outbox): void {
  const { pending } = outbox;
  if (pending.length === 0) return;
  outbox.pending = [];
  outbox.socket.send(pending.length === 1 ? pending[0] : pending.join("\n"));
}
