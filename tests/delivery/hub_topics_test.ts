/** The topic hub (Bun) with fake topic sockets and a manual clock: fan-out counts, backlog sweeps. */
import assert from "node:assert/strict";
import { createManualClock } from "../../lib/core/clock.ts";
import { createTopicHub, FULL_SWEEP_EVERY, WATCH_SWEEP_MS } from "../../lib/delivery/hub_topics.ts";
import { createMetrics } from "../../lib/metrics.ts";
import type { TopicSocket } from "../../lib/core/socket.ts";

const CAP = 1600;

/** A topic socket whose backlog a test sets, counting how often the hub reads it. */
function fakeSocket() {
  const state = { backlog: 0, reads: 0, published: [] as string[] };
  const socket: TopicSocket = {
    send() {},
    close() {},
    get bufferedAmount() {
      state.reads++;
      return state.backlog;
    },
    subscribe() {},
    unsubscribe() {},
    publish(topic) {
      state.published.push(topic);
    },
  };
  return { socket, state };
}

function topicHub() {
  const clock = createManualClock();
  const metrics = createMetrics();
  const slow: number[] = [];
  const published: string[] = [];
  const hub = createTopicHub(
    {
      maxBufferedBytes: CAP,
      metrics,
      onSlowConsumer: (id) => slow.push(id),
      encode: (_dialect, frame) => JSON.stringify(frame),
    },
    (topic) => published.push(topic),
    clock,
  );
  return { hub, clock, metrics, slow, published };
}

Deno.test("topic hub: a publication counts one frame per subscriber, the excluded sender not", () => {
  const { hub, metrics, published } = topicHub();
  const sockets = [1, 2, 3].map((id) => {
    const fake = fakeSocket();
    hub.add(id, fake.socket, "native");
    hub.subscribe(id, "lobby");
    return fake;
  });
  hub.publish("lobby", [], { type: "pong" });
  assert.deepEqual(published, ["native:lobby"]);
  assert.equal(metrics.framesOut, 3);
  hub.publish("lobby", [], { type: "pong" }, 1);
  assert.deepEqual(sockets[0].state.published, ["native:lobby"]);
  assert.equal(metrics.framesOut, 5);
  hub.stop();
});

Deno.test("topic hub: idle sockets are read once a second, a growing backlog ten times a second", () => {
  const { hub, clock, slow } = topicHub();
  const idle = Array.from({ length: 100 }, (_, i) => {
    const fake = fakeSocket();
    hub.add(i + 1, fake.socket, "native");
    return fake;
  });
  const stuck = fakeSocket();
  hub.add(1000, stuck.socket, "native");
  clock.advance(WATCH_SWEEP_MS * FULL_SWEEP_EVERY);
  assert.ok(idle.every((fake) => fake.state.reads === 1), "one read each per second");

  // Over the cap: seen at the next full sweep, then watched every 100 ms; not shrinking → slow.
  stuck.state.backlog = CAP * 2;
  clock.advance(WATCH_SWEEP_MS * (FULL_SWEEP_EVERY - 1));
  assert.deepEqual(slow, [], "not seen before the next full sweep");
  clock.advance(WATCH_SWEEP_MS);
  assert.deepEqual(slow, [], "over the cap once is not yet slow");
  const readsBefore = stuck.state.reads;
  clock.advance(WATCH_SWEEP_MS);
  assert.equal(stuck.state.reads, readsBefore + 1, "watched between full sweeps");
  assert.deepEqual(slow, [1000], "over the cap and not shrinking");
  assert.ok(idle.every((fake) => fake.state.reads === 2), "idle sockets were not watched");
  hub.stop();
});

Deno.test("topic hub: a watched backlog that drains is dropped from the watch; a huge one is slow at once", () => {
  const { hub, clock, slow } = topicHub();
  const draining = fakeSocket();
  const flooded = fakeSocket();
  hub.add(1, draining.socket, "native");
  hub.add(2, flooded.socket, "native");
  draining.state.backlog = CAP * 2;
  clock.advance(WATCH_SWEEP_MS * FULL_SWEEP_EVERY);
  for (const backlog of [CAP * 1.5, CAP, 0]) {
    draining.state.backlog = backlog;
    clock.advance(WATCH_SWEEP_MS);
  }
  const reads = draining.state.reads;
  clock.advance(WATCH_SWEEP_MS * 3);
  assert.equal(draining.state.reads, reads, "no longer watched once drained");
  flooded.state.backlog = CAP * 9;
  clock.advance(WATCH_SWEEP_MS * FULL_SWEEP_EVERY);
  assert.deepEqual(slow, [2]);
  hub.stop();
});
