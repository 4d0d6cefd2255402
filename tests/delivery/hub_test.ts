/** The coalescing hub with fake sockets: batching, bounds, order, slow consumers. */
import assert from "node:assert/strict";
import { createHub, HOLD_BYTES, type Hub, MAX_BATCH_FRAMES } from "../../lib/delivery/hub.ts";
import { createMetrics } from "../../lib/metrics.ts";
import type { ServerFrame } from "../../lib/core/protocol.ts";
import type { Socket } from "../../lib/core/socket.ts";
import { withTimeout } from "../_helpers.ts";

/**
 * A socket that records what it is sent and lets a test wait for the next send. Like a
 * runtime's, its backlog grows by what it is sent (its peer reads nothing); a test drains it by
 * lowering `bufferedAmount`.
 */
function fakeSocket() {
  const sent: string[] = [];
  const closes: [number, string][] = [];
  let waiting: (() => void) | undefined;
  const socket: Socket & { bufferedAmount: number } = {
    bufferedAmount: 0,
    send(text) {
      sent.push(text);
      socket.bufferedAmount += text.length;
      waiting?.();
    },
    close(code, reason) {
      closes.push([code, reason]);
    },
  };
  const nextSend = () => new Promise<void>((resolve) => waiting = resolve);
  return { socket, sent, closes, nextSend };
}

const pong = (ref: number): ServerFrame => ({ type: "pong", ref });

/** A frame of about `chars` characters. */
const big = (chars: number): ServerFrame => ({
  type: "error",
  code: "bad_request",
  message: "x".repeat(chars),
});

/** Resolves after the tasks queued so far (a flush, a backlog check) have run. */
const nextTask = () => new Promise<void>((resolve) => setTimeout(resolve, 0));

/** Gives session `id` a backlog of more than `bytes` the way a socket gets one: by being sent it. */
async function fill(hub: Hub, id: number, bytes: number) {
  hub.send(id, big(bytes));
  await nextTask();
}

/** `sent` is a burst of `total` pongs cut into two full batches and the rest, in order. */
function assertBurst(sent: string[], total: number) {
  assert.deepEqual(sent.map((text) => text.split("\n").length), [
    MAX_BATCH_FRAMES,
    MAX_BATCH_FRAMES,
    total - 2 * MAX_BATCH_FRAMES,
  ]);
  const refs = sent.flatMap((text) => text.split("\n").map((line) => JSON.parse(line).ref));
  assert.deepEqual(refs, Array.from({ length: total }, (_, i) => i), "in order");
}

/** Numbers in [0, 1) from a seed, the same every run, so that a failure can be replayed. */
function seededRandom(seed: number): () => number {
  return () => (seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31) / 2 ** 31;
}

function hubWith(onSlowConsumer: (id: number) => void = () => {}, maxBufferedBytes = 1000) {
  return createHub({
    maxBufferedBytes,
    metrics: createMetrics(),
    onSlowConsumer,
    encode: (_dialect, frame) => JSON.stringify(frame),
  });
}

Deno.test("hub: everything queued in one tick goes out as one frame per socket, in order", async () => {
  const hub = hubWith();
  const a = fakeSocket();
  const b = fakeSocket();
  hub.add(1, a.socket, "native");
  hub.add(2, b.socket, "native");
  const written = a.nextSend();
  hub.send(1, pong(1));
  hub.publish("c", [1, 2], pong(2));
  hub.publish("c", [1, 2], pong(3), 1);
  hub.send(1, pong(4));
  await written;
  assert.deepEqual(a.sent, [
    '{"type":"pong","ref":1}\n{"type":"pong","ref":2}\n{"type":"pong","ref":4}',
  ]);
  assert.deepEqual(b.sent, ['{"type":"pong","ref":2}\n{"type":"pong","ref":3}']);
  hub.stop();
});

Deno.test("hub: a burst to one socket is cut into bounded batches", async () => {
  const hub = hubWith();
  const a = fakeSocket();
  hub.add(1, a.socket, "native");
  const total = MAX_BATCH_FRAMES * 2 + 10;
  const last = a.nextSend();
  for (let i = 0; i < total; i++) hub.send(1, pong(i));
  assert.equal(a.sent.length, 2, "two full batches went out at once");
  await last;
  assertBurst(a.sent, total);
  hub.stop();
});

Deno.test("hub: closing writes what is queued first; a slow consumer's backlog is not added to", () => {
  const hub = hubWith();
  const fine = fakeSocket();
  const slow = fakeSocket();
  hub.add(1, fine.socket, "native");
  hub.add(2, slow.socket, "native");
  hub.send(1, pong(1));
  hub.close(1, 1000, "bye");
  assert.deepEqual(fine.sent, ['{"type":"pong","ref":1}']);
  assert.deepEqual(fine.closes, [[1000, "bye"]]);
  slow.socket.bufferedAmount = 5000;
  hub.send(2, pong(2));
  hub.close(2, 1013, "Slow consumer");
  assert.deepEqual(slow.sent, []);
  hub.stop();
});

Deno.test("hub: a backlog over the cap that does not shrink is a slow consumer; one that drains is not", async () => {
  const reported: number[] = [];
  let onReport = () => {};
  const hub = hubWith((id) => {
    reported.push(id);
    onReport();
  });
  const stuck = fakeSocket();
  const draining = fakeSocket();
  hub.add(1, stuck.socket, "native");
  hub.add(2, draining.socket, "native");
  // Over the cap of 1000 (the backlog check runs in the task after the flush).
  await fill(hub, 1, 1500);
  await fill(hub, 2, 1500);
  assert.ok(stuck.socket.bufferedAmount > 1500 && draining.socket.bufferedAmount > 1500);
  assert.deepEqual(reported, [], "one look over the cap is not enough");
  const round = async () => {
    const sent = stuck.nextSend();
    hub.publish("c", [1, 2], pong(0));
    await sent;
    await nextTask();
  };
  draining.socket.bufferedAmount = 1200;
  const reportedNow = new Promise<void>((resolve) => onReport = resolve);
  await round();
  await reportedNow;
  assert.deepEqual(reported, [1]);
  hub.stop();
});

Deno.test("hub: a healthy socket's backlog is read from the runtime once its bound could reach HOLD_BYTES, not at every write", async () => {
  const hub = hubWith(() => {}, 64 * HOLD_BYTES);
  let reads = 0;
  let written = 0;
  const socket: Socket = {
    // A peer that reads everything at once: nothing stays unsent.
    get bufferedAmount() {
      reads++;
      return 0;
    },
    send(text) {
      written += text.length;
    },
    close() {},
  };
  hub.add(1, socket, "native");
  const frame = big(1000);
  const size = JSON.stringify(frame).length;
  // Up to the write whose bound (3 bytes a code unit, and a header) reaches HOLD_BYTES.
  const quiet = Math.floor(HOLD_BYTES / (3 * (size + 1) + 14));
  for (let i = 0; i < quiet; i++) {
    hub.send(1, frame);
    await nextTask();
  }
  assert.equal(written, quiet * size, "every frame was written");
  assert.equal(reads, 1, "read once, when it was added");
  for (let i = 0; i < 3 * quiet; i++) {
    hub.send(1, frame);
    await nextTask();
  }
  assert.ok(reads >= 3 && reads <= 5, `read once per ${quiet} writes or so: ${reads}`);
  hub.stop();
});

Deno.test("hub: a socket with HOLD_BYTES unsent is held; once drained it gets all it missed, in order, in one frame", async () => {
  const hub = hubWith(() => {}, 4 * HOLD_BYTES);
  const busy = fakeSocket();
  const idle = fakeSocket();
  hub.add(1, busy.socket, "native");
  hub.add(2, idle.socket, "native");
  await fill(hub, 1, HOLD_BYTES);
  for (let ref = 1; ref <= 3; ref++) {
    hub.publish("c", [1, 2], pong(ref));
    await nextTask();
  }
  assert.equal(busy.sent.length, 1, "nothing more while its buffer is full");
  assert.equal(idle.sent.length, 3, "the other member is not held back");
  const drained = busy.nextSend();
  busy.socket.bufferedAmount = 0;
  await drained;
  assert.deepEqual(busy.sent.slice(1), [
    '{"type":"pong","ref":1}\n{"type":"pong","ref":2}\n{"type":"pong","ref":3}',
  ]);
  hub.stop();
});

Deno.test("hub: a held socket that never drains is a slow consumer", async () => {
  let reported: (id: number) => void = () => {};
  const slow = new Promise<number>((resolve) => reported = resolve);
  const hub = hubWith((id) => reported(id), 2 * HOLD_BYTES);
  const stuck = fakeSocket();
  hub.add(1, stuck.socket, "native");
  await fill(hub, 1, HOLD_BYTES);
  // Held frames count toward the backlog, so it grows past the cap while nothing drains.
  for (let i = 0; i < 100; i++) hub.send(1, big(1000));
  assert.equal(await slow, 1);
  assert.equal(stuck.sent.length, 1, "nothing after the frame that filled its buffer");
  hub.stop();
});

Deno.test("hub: a burst to a held socket waits in bounded pieces and goes out in order once it drains", async () => {
  const hub = hubWith(() => {}, 64 * HOLD_BYTES);
  const a = fakeSocket();
  hub.add(1, a.socket, "native");
  await fill(hub, 1, HOLD_BYTES);
  a.sent.length = 0;
  const total = MAX_BATCH_FRAMES * 2 + 10;
  for (let i = 0; i < total; i++) hub.send(1, pong(i));
  await nextTask();
  assert.equal(a.sent.length, 0, "nothing is written while the socket is busy");
  let sends = 0;
  const allSent = new Promise<void>((resolve) => {
    a.socket.send = (text) => {
      a.sent.push(text);
      if (++sends === 3) resolve();
    };
  });
  a.socket.bufferedAmount = 0;
  await allSent;
  assertBurst(a.sent, total);
  hub.stop();
});

Deno.test("hub: sockets held and released at random get every frame, in order, without piling up timers", async () => {
  const random = seededRandom(42);
  const hub = hubWith(() => {}, Number.MAX_SAFE_INTEGER);
  const received: number[][] = [];
  const sockets = Array.from({ length: 30 }, (_, i) => {
    received.push([]);
    const socket: Socket & { bufferedAmount: number } = {
      bufferedAmount: 0,
      send(text) {
        for (const line of text.split("\n")) received[i].push(JSON.parse(line).ref);
      },
      close() {},
    };
    hub.add(i + 1, socket, "native");
    return socket;
  });
  const ids = sockets.map((_, i) => i + 1);
  let ref = 0;
  // A poll timer that multiplied itself once made each round twice as slow as the last: count
  // the timers waiting at once instead of timing the rounds.
  const timers = countTimers();
  try {
    await withTimeout(
      (async () => {
        for (let round = 0; round < 100; round++) {
          for (const socket of sockets) socket.bufferedAmount = random() < 0.5 ? HOLD_BYTES : 0;
          const burst = Math.floor(random() * MAX_BATCH_FRAMES * 2.5);
          for (let k = 0; k < burst; k++) hub.publish("c", ids, pong(ref++));
          // Either this task or one after the hub's 1 ms poll: different interleavings.
          await new Promise((resolve) => setTimeout(resolve, random() < 0.5 ? 0 : 2));
          assertFewTimers(timers.peak);
        }
        for (const socket of sockets) socket.bufferedAmount = 0;
        while (received.some((frames) => frames.length < ref)) await nextTask();
      })(),
      "every frame to every socket",
      60_000,
    );
  } finally {
    timers.restore();
  }
  const expected = Array.from({ length: ref }, (_, i) => i);
  for (const frames of received) assert.deepEqual(frames, expected);
  assertFewTimers(timers.peak);
  hub.stop();
});

Deno.test("hub: members with different frames queued before share nothing they should not: each gets its own sequence", async () => {
  // Members of one publication mostly share what they were queued before (the hub then finds
  // their batch without a lookup); here they often do not.
  const random = seededRandom(7);
  const hub = hubWith(() => {}, Number.MAX_SAFE_INTEGER);
  const sockets = Array.from({ length: 12 }, () => fakeSocket());
  sockets.forEach((s, i) => hub.add(i + 1, s.socket, "native"));
  const expected: number[][] = sockets.map(() => []);
  let ref = 0;
  for (let tick = 0; tick < 200; tick++) {
    for (let k = Math.floor(random() * 6); k > 0; k--) {
      const members = sockets.map((_, i) => i + 1).filter(() => random() < 0.6);
      // Sometimes the same members again, in another order: the same batches, reached anew.
      if (random() < 0.3) members.reverse();
      const except = random() < 0.2 ? members[0] : undefined;
      if (random() < 0.2) {
        const id = 1 + Math.floor(random() * sockets.length);
        hub.send(id, pong(ref));
        expected[id - 1].push(ref++);
      } else {
        hub.publish("c", members, pong(ref), except);
        for (const id of members) if (id !== except) expected[id - 1].push(ref);
        ref++;
      }
    }
    await nextTask();
  }
  await nextTask();
  sockets.forEach((s, i) => {
    const got = s.sent.flatMap((text) => text.split("\n").map((line) => JSON.parse(line).ref));
    assert.deepEqual(got, expected[i], `socket ${i + 1}`);
  });
  hub.stop();
});

Deno.test("hub: a session removed after frames were queued to it gets none of them; a new one with its id gets only its own", async () => {
  const hub = hubWith();
  const old = fakeSocket();
  const other = fakeSocket();
  hub.add(1, old.socket, "native");
  hub.add(2, other.socket, "native");
  hub.publish("c", [1, 2], pong(1));
  hub.remove(1);
  const fresh = fakeSocket();
  hub.add(1, fresh.socket, "native");
  hub.publish("c", [1, 2], pong(2));
  await nextTask();
  assert.deepEqual(old.sent, []);
  assert.deepEqual(fresh.sent, ['{"type":"pong","ref":2}']);
  assert.deepEqual(other.sent, ['{"type":"pong","ref":1}\n{"type":"pong","ref":2}']);
  hub.stop();
});

/** One of each at most: the hub's flush, held-poll and backlog-check timers, the test's pause and
 * withTimeout's bound. */
function assertFewTimers(peak: number) {
  assert.ok(peak <= 5, `${peak} timers waiting at once`);
}

/** Counts the timers waiting at once (set, neither fired nor cleared) until `restore()`. */
function countTimers() {
  const { setTimeout: set, clearTimeout: clear } = globalThis;
  const waiting = new Set<ReturnType<typeof setTimeout>>();
  const counter = { peak: 0, restore };
  globalThis.setTimeout = ((callback: () => void, ms?: number) => {
    const id = set(() => {
      waiting.delete(id);
      callback();
    }, ms);
    waiting.add(id);
    counter.peak = Math.max(counter.peak, waiting.size);
    return id;
  }) as typeof setTimeout;
  globalThis.clearTimeout = ((id?: ReturnType<typeof setTimeout>) => {
    if (id !== undefined) waiting.delete(id);
    clear(id);
  }) as typeof clearTimeout;
  function restore() {
    globalThis.setTimeout = set;
    globalThis.clearTimeout = clear;
  }
  return counter;
}
