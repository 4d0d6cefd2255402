/**
 * KV engines in Web Workers of one process, each opening the same store
 * file itself: how the workers of `deno serve --parallel` share one local
 * store, and how Deno Deploy instances share theirs (no memory in common,
 * one KV). A payload crosses workers to every worker in one order, with and
 * without a `BroadcastChannel` fast path; a name raced from every worker has
 * exactly one winner.
 */
import assert from "node:assert/strict";
import { withTimeout } from "../_helpers.ts";
import { kvDir } from "./_kv.ts";
import type { WorkerCommand, WorkerEvent } from "./_kv_worker.ts";

/** A worker running an engine, and what it reported. */
interface EngineWorker {
  send(command: WorkerCommand): void;
  /** The next event of type `t`, in order of arrival (`ms`: how long to wait for it). */
  next<T extends WorkerEvent["t"]>(t: T, ms?: number): Promise<Extract<WorkerEvent, { t: T }>>;
  /** Stops the engine, closes the store and ends the worker. */
  stop(): Promise<void>;
}

function startWorker(): EngineWorker {
  const worker = new Worker(new URL("./_kv_worker.ts", import.meta.url), { type: "module" });
  const queues = new Map<string, WorkerEvent[]>();
  const waiting = new Map<string, ((event: WorkerEvent) => void)[]>();
  worker.onmessage = ({ data }: MessageEvent<WorkerEvent>) => {
    const waiter = waiting.get(data.t)?.shift();
    if (waiter !== undefined) return waiter(data);
    let queue = queues.get(data.t);
    if (queue === undefined) queues.set(data.t, queue = []);
    queue.push(data);
  };
  const next = <T extends WorkerEvent["t"]>(t: T, ms?: number) => {
    const queued = queues.get(t)?.shift();
    if (queued !== undefined) return Promise.resolve(queued as Extract<WorkerEvent, { t: T }>);
    return withTimeout(
      new Promise<Extract<WorkerEvent, { t: T }>>((resolve) => {
        let list = waiting.get(t);
        if (list === undefined) waiting.set(t, list = []);
        list.push(resolve as (event: WorkerEvent) => void);
      }),
      `a worker's ${t}`,
      ms,
    );
  };
  return {
    send: (command) => worker.postMessage(command),
    next,
    async stop() {
      worker.postMessage({ t: "stop" });
      try {
        await next("stopped");
      } finally {
        worker.terminate();
      }
    },
  };
}

/** `count` workers with engines on one store file, up; stopped and removed at the end. */
async function workers(count: number, fastPath?: string) {
  const dir = await kvDir();
  const started = Array.from({ length: count }, startWorker);
  for (const worker of started) {
    worker.send({ t: "start", path: dir.path(), prefix: "hubbub", fastPath });
  }
  try {
    // A worker's first start type-checks its module: slow on a busy machine.
    for (const worker of started) await worker.next("up", 60_000);
  } catch (error) {
    for (const worker of started) await worker.stop().catch(() => {});
    await dir[Symbol.asyncDispose]();
    throw error;
  }
  return {
    workers: started,
    async [Symbol.asyncDispose]() {
      for (const worker of started) await worker.stop();
      await dir[Symbol.asyncDispose]();
    },
  };
}

/** The next `count` payloads a worker's engine delivered. */
async function payloads(worker: EngineWorker, count: number): Promise<string[]> {
  const found: string[] = [];
  while (found.length < count) found.push((await worker.next("message")).payload);
  return found;
}

for (const fastPath of [undefined, "hubbub-kv-workers-test"]) {
  const how = fastPath === undefined ? "by the watch alone" : "with a BroadcastChannel fast path";
  Deno.test(`kv workers: payloads from every worker reach every worker in one order (${how})`, async () => {
    await using group = await workers(3, fastPath && `${fastPath}-${crypto.randomUUID()}`);
    const each = 100;
    group.workers.forEach((worker, w) =>
      worker.send({ t: "publish", payloads: Array.from({ length: each }, (_, i) => `w${w}:${i}`) })
    );
    const seen = await Promise.all(group.workers.map((worker) => payloads(worker, 3 * each)));
    assert.deepEqual(seen[1], seen[0]);
    assert.deepEqual(seen[2], seen[0]);
    for (let w = 0; w < 3; w++) {
      const mine = seen[0].filter((p) => p.startsWith(`w${w}:`));
      assert.deepEqual(mine, Array.from({ length: each }, (_, i) => `w${w}:${i}`));
    }
  });
}

Deno.test("kv workers: one name raced from three workers: exactly one wins, 100 rounds of 100", async () => {
  await using group = await workers(3);
  for (let round = 0; round < 100; round++) {
    const key = `name${round}`;
    group.workers.forEach((worker, w) =>
      worker.send({ t: "claim", key, owner: `w${w}:1`, leaseMs: 30_000 })
    );
    const outcomes = await Promise.all(group.workers.map((worker) => worker.next("claimed")));
    assert.deepEqual(outcomes.map((o) => o.key), [key, key, key]);
    assert.deepEqual(outcomes.map((o) => o.outcome).sort(), ["claimed", "taken", "taken"]);
  }
});
