/**
 * A Web Worker running one whole hubbub instance, as each worker of `deno
 * serve --parallel` (or each Deno Deploy instance) runs one: it opens the KV
 * store the parent names with `openDenoKvEngine` (its own handle and
 * `BroadcastChannel`, as `main.ts` and `serve.ts` do), builds the app on it
 * and serves it on a free port of 127.0.0.1. Used by `kv_instances_test.ts`.
 *
 * Besides serving, it tells the parent what its engine tells its node (up,
 * down) and carries the parent's markers: published behind the instance's
 * own writes, swallowed before they reach the node, reported when
 * delivered, so the parent can await "every instance has seen everything
 * written so far" as an event (see `_engines.ts`).
 *
 * @module
 */
import { createApp } from "../../lib/app.ts";
import type { Engine } from "../../lib/cluster/engine.ts";
import type { Config } from "../../lib/config.ts";
import { systemClock } from "../../lib/core/clock.ts";
import { DIALECTS } from "../../lib/dialects/index.ts";
import { silentLogger } from "../../lib/log.ts";
import { openDenoKvEngine, serveDeno } from "../../lib/runtime/deno.ts";
import { TEST_CONFIG } from "../_helpers.ts";

/** What the parent asks. */
export type InstanceCommand =
  | { t: "start"; path: string; node: string; overrides: Partial<Config> }
  | { t: "mark"; id: string }
  | { t: "stop" };

/** What the instance tells the parent. */
export type InstanceEvent =
  | { t: "ready"; port: number }
  | { t: "failed"; message: string }
  | { t: "up" }
  | { t: "down"; reason: string }
  | { t: "marked"; id: string }
  | { t: "stopped" };

/** Prefix of the parent's markers on the bus: never a cluster message (those are JSON objects). */
const MARKER = "\u0000marker:";

const port = self as unknown as {
  postMessage(event: InstanceEvent): void;
  onmessage: ((event: MessageEvent<InstanceCommand>) => void) | null;
};

let engine: Engine | undefined;
let stop: (() => Promise<void>) | undefined;

/** The engine, with its events and the markers it delivers told to the parent. */
function reporting(inner: Engine): Engine {
  return {
    ...inner,
    start(listener) {
      inner.start({
        message(payload) {
          if (!payload.startsWith(MARKER)) return listener.message(payload);
          port.postMessage({ t: "marked", id: payload.slice(MARKER.length) });
        },
        up() {
          listener.up();
          port.postMessage({ t: "up" });
        },
        down(reason) {
          listener.down(reason);
          port.postMessage({ t: "down", reason });
        },
      });
    },
  };
}

port.onmessage = async ({ data }) => {
  switch (data.t) {
    case "start": {
      const config: Config = { ...TEST_CONFIG, ...data.overrides };
      const log = Deno.env.get("DEBUG_LOG") ? undefined : silentLogger;
      const opened = await openDenoKvEngine({
        path: data.path,
        prefix: config.redisPrefix,
        history: { maxPerChannel: config.historySize, ttlMs: config.historyTtl * 1000 },
        log: log ?? silentLogger,
      });
      if (!("engine" in opened)) return port.postMessage({ t: "failed", message: opened.message });
      engine = reporting(opened.engine);
      const app = createApp(config, {
        clock: systemClock,
        version: "test",
        dialects: DIALECTS,
        engine,
        nodeId: data.node,
        log,
      });
      const abort = new AbortController();
      const server = serveDeno(app, {
        port: 0,
        hostname: "127.0.0.1",
        pingTimeout: config.pingTimeout,
        signal: abort.signal,
      });
      stop = async () => {
        abort.abort();
        await server.finished;
        await app.stop(); // says goodbye, releases its names, closes the store
      };
      port.postMessage({ t: "ready", port: server.port });
      break;
    }
    case "mark":
      engine?.publish(`${MARKER}${data.id}`);
      break;
    case "stop":
      await stop?.();
      port.postMessage({ t: "stopped" });
  }
};
