/**
 * The Deno KV engine's bus, measured: engines in Web Workers of one process
 * on one local KV file (as `deno serve --parallel` runs them), each opening
 * the store itself.
 *
 * - Throughput: every worker publishes its payloads as fast as it can; the
 *   time until every worker has delivered every payload (its own too), for 1
 *   and 2 workers in the same run.
 * - Latency: one worker publishes a payload every few milliseconds; the time
 *   from `publish` to delivery in the other worker, p50 and p99, by the
 *   watch alone and with a `BroadcastChannel` fast path.
 *
 *   deno run -A bench/kv_bus.ts [--quick]
 *
 * On a 2-core machine the workers, SQLite and the rest share the cores:
 * read the figures as an order of magnitude.
 *
 * @module
 */
import type { BenchCommand, BenchEvent } from "./kv_bus_worker.ts";

const QUICK = Deno.args.includes("--quick");
const SIZE = 200;

interface BenchWorker {
  send(command: BenchCommand): void;
  next(t: BenchEvent["t"]): Promise<BenchEvent>;
  stop(): Promise<void>;
}

function spawn(): BenchWorker {
  const worker = new Worker(new URL("./kv_bus_worker.ts", import.meta.url), { type: "module" });
  const queued: BenchEvent[] = [];
  const waiting: [string, (event: BenchEvent) => void][] = [];
  worker.onmessage = ({ data }: MessageEvent<BenchEvent>) => {
    const at = waiting.findIndex(([t]) => t === data.t);
    if (at >= 0) waiting.splice(at, 1)[0][1](data);
    else queued.push(data);
  };
  const next = (t: string) => {
    const at = queued.findIndex((event) => event.t === t);
    if (at >= 0) return Promise.resolve(queued.splice(at, 1)[0]);
    return new Promise<BenchEvent>((resolve) => waiting.push([t, resolve]));
  };
  return {
    send: (command) => worker.postMessage(command),
    next,
    async stop() {
      worker.postMessage({ t: "stop" });
      await next("stopped");
      worker.terminate();
    },
  };
}

async function group(count: number, fastPath?: string) {
  const dir = await Deno.makeTempDir({ prefix: "hubbub-kv-bench-" });
  const workers = Array.from({ length: count }, spawn);
  workers.forEach((worker, id) => worker.send({ t: "start", path: `${dir}/bus.kv`, fastPath, id }));
  for (const worker of workers) await worker.next("up");
  return {
    workers,
    async close() {
      for (const worker of workers) await worker.stop();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

const quantile = (sorted: number[], q: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];

async function throughput(count: number, fastPath?: string) {
  const each = QUICK ? 2000 : 10_000;
  const g = await group(count, fastPath);
  const started = performance.now();
  for (const worker of g.workers) {
    worker.send({ t: "run", count: each, everyMs: 0, expect: each * count, size: SIZE });
  }
  const done = await Promise.all(g.workers.map((worker) => worker.next("done")));
  const ms = performance.now() - started;
  await g.close();
  const total = each * count;
  return { workers: count, payloads: total, ms, perSecond: total / (ms / 1000), done };
}

async function latency(fastPath?: string) {
  const count = QUICK ? 500 : 3000;
  const g = await group(2, fastPath);
  const [sender, receiver] = g.workers;
  receiver.send({ t: "run", count: 0, everyMs: 0, expect: count, size: SIZE });
  sender.send({ t: "run", count, everyMs: 2, expect: count, size: SIZE });
  const done = await receiver.next("done") as Extract<BenchEvent, { t: "done" }>;
  const sent = await sender.next("done") as Extract<BenchEvent, { t: "done" }>;
  await g.close();
  const sorted = [...done.latenciesUs].sort((a, b) => a - b);
  const own = [...sent.ownUs].sort((a, b) => a - b);
  return {
    samples: sorted.length,
    p50Us: quantile(sorted, 0.5),
    p99Us: quantile(sorted, 0.99),
    ownP50Us: quantile(own, 0.5),
    ownP99Us: quantile(own, 0.99),
  };
}

const fast = `hubbub-kv-bench-${crypto.randomUUID()}`;
const rows = [
  { what: "throughput, 1 worker", ...(await throughput(1)) },
  { what: "throughput, 2 workers", ...(await throughput(2)) },
  { what: "throughput, 2 workers + BroadcastChannel", ...(await throughput(2, fast)) },
];
for (const row of rows) {
  console.log(
    `${row.what}: ${row.payloads} payloads delivered to every worker in ${row.ms.toFixed(0)} ms = ${
      Math.round(row.perSecond)
    } payloads/s`,
  );
}
for (const [what, fastPath] of [["watch only", undefined], ["BroadcastChannel", fast]]) {
  const result = await latency(fastPath);
  console.log(
    `latency between 2 workers (${what}, 1 payload / 2 ms): p50 ${
      (result.p50Us / 1000).toFixed(2)
    } ms, p99 ${(result.p99Us / 1000).toFixed(2)} ms (${result.samples} samples); ` +
      `to the sender itself (the commit): p50 ${(result.ownP50Us / 1000).toFixed(2)} ms, p99 ${
        (result.ownP99Us / 1000).toFixed(2)
      } ms`,
  );
}
