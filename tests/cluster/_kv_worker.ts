/**
 * A Web Worker running one KV engine on a store file the parent names, as
 * each worker of `deno serve --parallel` (or each Deno Deploy instance) runs
 * its own: it opens the store itself, and tells the parent what its engine
 * tells it. Used by `kv_workers_test.ts`.
 *
 * @module
 */
import { createKvEngine } from "../../lib/cluster/engine_kv.ts";
import { again } from "../../lib/cluster/kv.ts";
import type { Engine } from "../../lib/cluster/engine.ts";

/** What the parent asks. */
export type WorkerCommand =
  | { t: "start"; path: string; prefix: string; fastPath?: string }
  | { t: "publish"; payloads: string[] }
  | { t: "claim"; key: string; owner: string; leaseMs: number }
  | { t: "stop" };

/** What the worker tells the parent. */
export type WorkerEvent =
  | { t: "up" }
  | { t: "down"; reason: string }
  | { t: "message"; payload: string }
  | { t: "claimed"; key: string; outcome: string }
  | { t: "stopped" };

const port = self as unknown as {
  postMessage(event: WorkerEvent): void;
  onmessage: ((event: MessageEvent<WorkerCommand>) => void) | null;
};

let engine: Engine | undefined;
let kv: Deno.Kv | undefined;

port.onmessage = async ({ data }) => {
  switch (data.t) {
    case "start": {
      // (Workers opening one file at once may refuse each other: "database is locked".)
      kv = await again(() => Deno.openKv(data.path));
      engine = createKvEngine({
        kv,
        prefix: data.prefix,
        ...(data.fastPath && { fastPath: new BroadcastChannel(data.fastPath) }),
      });
      engine.start({
        message: (payload) => port.postMessage({ t: "message", payload }),
        up: () => port.postMessage({ t: "up" }),
        down: (reason) => port.postMessage({ t: "down", reason }),
      });
      break;
    }
    case "publish":
      for (const payload of data.payloads) engine!.publish(payload);
      break;
    case "claim": {
      const outcome = await engine!.claim({ key: data.key, owner: data.owner }, data.leaseMs);
      port.postMessage({ t: "claimed", key: data.key, outcome });
      break;
    }
    case "stop":
      await engine?.stop();
      kv?.close();
      port.postMessage({ t: "stopped" });
  }
};
