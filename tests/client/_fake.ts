/**
 * A scripted server for client tests: an in-memory WebSocket class whose
 * sockets the test opens, feeds frames and drops, and timers the test fires
 * by hand, so no test waits on real time.
 *
 * @module
 */
import assert from "node:assert/strict";
import type { Timers, WebSocketLike } from "../../client/mod.ts";

type Frame = Record<string, unknown>;

/** One client socket, driven from the server's side. */
export class FakeSocket implements WebSocketLike {
  onopen: ((event: unknown) => void) | null = null;
  onmessage: ((event: { data: unknown }) => void) | null = null;
  onclose: ((event: { code: number; reason: string }) => void) | null = null;
  onerror: ((event: unknown) => void) | null = null;
  /** What the client sent, parsed. */
  readonly sent: Frame[] = [];
  /** The code the client closed with, once it did. */
  closedWith: number | undefined;

  constructor(readonly url: string) {}

  send(data: string): void {
    if (this.closedWith !== undefined) throw new Error("The socket is closed");
    this.sent.push(JSON.parse(data));
  }

  close(code = 1000): void {
    this.closedWith ??= code;
  }

  /** The server accepts the connection. */
  open(): void {
    this.onopen?.({});
  }

  /** The server sends `frames` in one WebSocket message, separated by `\n` as hubbub coalesces them. */
  push(...frames: Frame[]): void {
    this.onmessage?.({ data: frames.map((frame) => JSON.stringify(frame)).join("\n") });
  }

  /** The connection ends with `code`. */
  drop(code = 1006, reason = ""): void {
    this.closedWith ??= code;
    this.onclose?.({ code, reason });
  }

  /** The frames of `type` the client sent. */
  sentOf(type: string): Frame[] {
    return this.sent.filter((frame) => frame.type === type);
  }

  /** The last frame of `type` the client sent; fails when there is none. */
  lastOf(type: string): Frame {
    const frames = this.sentOf(type);
    assert.ok(frames.length > 0, `The client sent no "${type}"`);
    return frames[frames.length - 1];
  }

  /** The next frame of `type` the client sends, waiting for microtasks (a token function's answer), not time. */
  async next(type: string): Promise<Frame> {
    const before = this.sentOf(type).length;
    for (let turn = 0; turn < 100 && this.sentOf(type).length === before; turn++) {
      await Promise.resolve();
    }
    return this.lastOf(type);
  }

  /** Opens, answers the login with a welcome (with a hello before it, in one message). */
  welcome(name = "alice"): void {
    this.open();
    const login = this.lastOf("login");
    this.push({ type: "hello", protocol: 1, server: "hubbub", version: "0.1.0" }, {
      type: "welcome",
      name,
      ref: login.ref,
    });
  }
}

/** A WebSocket class whose instances the test can reach. */
export function fakeWebSocket(): {
  WebSocket: typeof FakeSocket;
  sockets: FakeSocket[];
  last(): FakeSocket;
} {
  const sockets: FakeSocket[] = [];
  class Recorded extends FakeSocket {
    constructor(url: string) {
      super(url);
      sockets.push(this);
    }
  }
  return {
    WebSocket: Recorded,
    sockets,
    last() {
      assert.ok(sockets.length > 0, "The client opened no socket");
      return sockets[sockets.length - 1];
    },
  };
}

/** Timers that fire only when the test says so. */
export interface FakeTimers extends Timers {
  /** The delays of the timers set and not yet fired or cleared, in the order they were set. */
  delays(): number[];
  /** Fires the earliest-set timer; returns its delay. */
  fire(): number;
}

/** Creates {@linkcode FakeTimers}. */
export function fakeTimers(): FakeTimers {
  const scheduled = new Map<number, { callback: () => void; ms: number }>();
  let next = 1;
  return {
    setTimeout(callback, ms) {
      scheduled.set(next, { callback, ms });
      return next++;
    },
    clearTimeout(handle) {
      scheduled.delete(handle as number);
    },
    delays: () => [...scheduled.values()].map((timer) => timer.ms),
    fire() {
      const first = scheduled.entries().next();
      assert.ok(!first.done, "No timer is set");
      const [handle, timer] = first.value;
      scheduled.delete(handle);
      timer.callback();
      return timer.ms;
    },
  };
}

/** A stored message of `channel` with `seq`. */
export function msg(
  channel: string,
  seq: number | undefined,
  text = `m${seq}`,
  from = "bob",
): Frame {
  const frame: Frame = {
    type: "message",
    channel,
    from,
    text,
    id: `id-${text}`,
    ts: "2026-01-01T00:00:00.000Z",
  };
  if (seq !== undefined) frame.seq = seq;
  return frame;
}
