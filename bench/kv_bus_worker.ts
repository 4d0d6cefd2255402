/**
 * One worker of `kv_bus.ts`: a KV engine on the store file it is told,
 * publishing on command and timing what it receives from the others.
 *
 * @module
 */
import { createKvEngine } from "../lib/cluster/engine_kv.ts";
import type { Engine } from "../lib/cluster/engine.ts";

/** What the bench asks a worker. */
export type BenchCommand =
  | { t: "start"; path: string; fastPath?: string; id: number }
  | { t: "run"; count: number; everyMs: number; expect: number; size: number }
  | { t: "stop" };

/** What a worker answers. */
export type BenchEvent =
  | { t: "up" }
  | { t: "done"; received: number; latenciesUs: number[]; ownUs: number[]; ms: number }
  | { t: "stopped" };

const port = self as unknown as {
  postMessage(event: BenchEvent): void;
  onmessage: ((event: MessageEvent<BenchCommand>) => void) | null;
};

/** Microseconds on a clock every worker of the process shares. */
const nowUs = () => Math.round((performance.timeOrigin + performance.now()) * 1000);

let engine: Engine | undefined;
let kv: Deno.Kv | undefined;
let id = 0;
let expect = 0;
let received = 0;
let started = 0;
let latencies: number[] = [];
/** Publish to delivery of this worker's own payloads: the commit, mostly. */
let own: number[] = [];

port.onmessage = async ({ data }) => {
  switch (data.t) {
    case "start":
      id = data.id;
      kv = await Deno.openKv(data.path);
      engine = createKvEngine({
        kv,
        prefix: "bench",
        ...(data.fastPath && { fastPath: new BroadcastChannel(data.fastPath) }),
      });
      engine.start({
        message(payload) {
          const { w, s } = JSON.parse(payload) as { w: number; s: number };
          (w === id ? own : latencies).push(nowUs() - s);
          if (++received === expect) {
            port.postMessage({
              t: "done",
              received,
              latenciesUs: latencies,
              ownUs: own,
              ms: performance.now() - started,
            });
          }
        },
        up: () => port.postMessage({ t: "up" }),
        down() {},
      });
      break;
    case "run": {
      expect = data.expect;
      received = 0;
      latencies = [];
      own = [];
      started = performance.now();
      const pad = "x".repeat(data.size);
      for (let i = 0; i < data.count; i++) {
        engine!.publish(JSON.stringify({ w: id, s: nowUs(), i, pad }));
        if (data.everyMs > 0) await new Promise((resolve) => setTimeout(resolve, data.everyMs));
      }
      break;
    }
    case "stop":
      await engine?.stop();
      kv?.close();
      port.postMessage({ t: "stopped" });
  }
};
