/** The workers of one `deno serve --parallel` process waiting for each other at shutdown. */
import assert from "node:assert/strict";
import { joinWorkers, type WorkerChannel, type WorkerNote } from "../../lib/runtime/workers.ts";
import { withTimeout } from "../_helpers.ts";

/** In-process channels: each note waits for `deliver`, which hands it to every other channel. */
function bus() {
  const channels = new Set<WorkerChannel>();
  const queue: (() => void)[] = [];
  return {
    channel(): WorkerChannel {
      const channel: WorkerChannel = {
        postMessage(note: WorkerNote) {
          for (const other of channels) {
            if (other !== channel) {
              queue.push(() => other.onmessage?.(new MessageEvent("message", { data: note })));
            }
          }
        },
        onmessage: null,
        close: () => channels.delete(channel),
      };
      channels.add(channel);
      return channel;
    },
    /** Delivers every note in flight, and those they cause, then lets promises settle. */
    async deliver() {
      while (queue.length > 0) queue.shift()!();
      await Promise.resolve();
    },
  };
}

/** Whether `promise` has resolved once the notes in flight have arrived. */
async function settledAfter(net: ReturnType<typeof bus>, promise: Promise<void>): Promise<boolean> {
  let settled = false;
  promise.then(() => settled = true);
  await net.deliver();
  await Promise.resolve();
  return settled;
}

Deno.test("workers: a worker that stopped waits until every sibling has stopped", async () => {
  const net = bus();
  const [a, b, c] = ["a", "b", "c"].map((id) => joinWorkers(id, net.channel()));
  await net.deliver();
  const aStopped = a.stopped();
  assert.equal(await settledAfter(net, aStopped), false, "b and c still run");
  const bStopped = b.stopped();
  assert.equal(await settledAfter(net, aStopped), false, "c still runs");
  assert.equal(await settledAfter(net, bStopped), false, "c still runs");
  const cStopped = c.stopped();
  await net.deliver();
  await withTimeout(Promise.all([aStopped, bStopped, cStopped]), "every worker to see c stop");
  for (const worker of [a, b, c]) worker.close();
});

Deno.test("workers: a worker that joins late learns of those before it", async () => {
  const net = bus();
  const early = joinWorkers("early", net.channel());
  await net.deliver();
  const late = joinWorkers("late", net.channel());
  await net.deliver();
  const lateStopped = late.stopped();
  assert.equal(await settledAfter(net, lateStopped), false, "the early worker still runs");
  const earlyStopped = early.stopped();
  await net.deliver();
  await withTimeout(Promise.all([lateStopped, earlyStopped]), "both to see the other stop");
  early.close();
  late.close();
});

Deno.test("workers: a lone worker stops at once", async () => {
  const lone = joinWorkers("lone", bus().channel());
  await withTimeout(lone.stopped(), "a lone worker to stop");
  lone.close();
});

Deno.test("workers: over a real BroadcastChannel, both stop once both have", async () => {
  const name = `hubbub:workers:test:${crypto.randomUUID()}`;
  const one = joinWorkers("one", new BroadcastChannel(name) as WorkerChannel);
  const two = joinWorkers("two", new BroadcastChannel(name) as WorkerChannel);
  // "here" from two tells one that two exists: wait until one would wait for it.
  const observer = new BroadcastChannel(name);
  const heard = new Promise<void>((resolve) =>
    observer.onmessage = (event) => event.data.t === "here" && resolve()
  );
  await withTimeout(heard, "the workers to meet");
  observer.close();
  const oneStopped = one.stopped();
  await withTimeout(Promise.all([oneStopped, two.stopped()]), "both to stop");
  one.close();
  two.close();
});
