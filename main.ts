/**
 * hubbub: a WebSocket chat server. Reads the configuration, starts the
 * runtime adapter, and shuts down cleanly on SIGINT/SIGTERM.
 *
 * @example
 * ```sh
 * deno run --allow-net --allow-env main.ts --port 8000
 * ```
 *
 * @module
 */
import { createApp, historyLimits } from "./lib/app.ts";
import { createMemoryStore } from "./lib/store/memory.ts";
import { openDataDir } from "./lib/store/open.ts";
import type { MessageStore } from "./lib/store/store.ts";
import { systemClock } from "./lib/core/clock.ts";
import { parseConfig } from "./lib/config.ts";
import { DIALECTS } from "./lib/dialects/index.ts";
import { createRedisEngine } from "./lib/cluster/engine_redis.ts";
import { createLogger } from "./lib/log.ts";
import { probeReadiness } from "./lib/http/healthcheck.ts";
import { CloseCode } from "./lib/core/protocol.ts";
import { bunRuntime } from "./lib/runtime/bun.ts";
import { denoRuntime } from "./lib/runtime/deno.ts";
import type { RunningServer, Runtime } from "./lib/runtime/types.ts";
import { listenFailure, startupFields } from "./lib/startup.ts";
import { VERSION } from "./lib/version.ts";

/** How long shutdown may take in all, close handshakes included (Deno Deploy kills at 5 s). */
const SHUTDOWN_GRACE_MS = 3000;

/** The part of the grace period kept for the listeners and the cluster to stop. */
const STOP_MS = 1000;

/** How long the listeners may take to finish their open HTTP requests at shutdown. */
const DRAIN_MS = 500;

/** The adapter for the runtime we run on, by feature detection (Bun first: it may shim Deno). */
function pickRuntime(): Runtime {
  if ("Bun" in globalThis) return bunRuntime;
  if ("Deno" in globalThis) return denoRuntime;
  console.error("hubbub: unsupported runtime; run it with Deno or Bun");
  throw new Error("Unsupported runtime");
}

const runtime: Runtime = pickRuntime();
const result = parseConfig(runtime.args(), runtime.env(), DIALECTS);
if (result.kind === "help") {
  console.log(result.text);
  runtime.exit(0);
} else if (result.kind === "version") {
  console.log(`hubbub ${VERSION}`);
  runtime.exit(0);
} else if (result.kind === "healthcheck") {
  // The container's health check: probe the server this configuration describes, then exit.
  const { ok, line } = await probeReadiness(result.config);
  if (ok) console.log(`hubbub: ${line}`);
  else console.error(`hubbub: ${line}`);
  runtime.exit(ok ? 0 : 1);
} else if (result.kind === "error") {
  // One line: a supervisor's log shows the whole reason.
  console.error(`hubbub: ${result.message} (run with --help to see every option)`);
  runtime.exit(2);
}
const config = result.config;
const log = createLogger({ format: config.logFormat, level: config.logLevel });
for (const warning of result.warnings) log.warn(warning);

const history = openHistory();
const app = createApp(config, {
  store: history.store,
  clock: systemClock,
  version: VERSION,
  runtime: runtime.name,
  residentBytes: runtime.residentBytes,
  hub: runtime.hub,
  dialects: DIALECTS,
  log,
  engine: config.redisUrl === null ? undefined : createRedisEngine({
    url: config.redisUrl,
    prefix: config.redisPrefix,
    history: { maxPerChannel: config.historySize, ttlMs: config.historyTtl * 1000 },
  }),
});
/**
 * The history store `--data-dir` names; memory when it says `none` or
 * cannot be written (said at error level: messages will not survive a
 * restart). A cluster keeps its history in Redis instead.
 */
function openHistory(): { store?: MessageStore; label: string } {
  if (config.redisUrl !== null) return { label: "redis" };
  const limits = historyLimits(config, systemClock);
  if (config.dataDir === null) return { store: createMemoryStore(limits), label: "memory" };
  const opened = openDataDir(config.dataDir, limits);
  if (opened.ok) return { store: opened.store, label: `sqlite:${opened.path}` };
  log.error("history: cannot use the data directory; keeping history in memory only", {
    data_dir: config.dataDir,
    reason: opened.message,
  });
  return { store: createMemoryStore(limits), label: "memory" };
}

/** Starts one listener, or ends the process with one line naming the option and the port. */
const serve = (port: number, option: string, listener?: string): RunningServer => {
  const started = runtime.serve(app, {
    port,
    hostname: config.hostname,
    pingTimeout: config.pingTimeout,
    limits: config,
    listener,
  });
  if (!("listenError" in started)) return started;
  log.error(listenFailure(started, { hostname: config.hostname, port, option }), {
    option,
    port,
    hostname: config.hostname,
    error: started.listenError,
  });
  return runtime.exit(2);
};
const server = serve(config.port, "--port");
const dialectServers = [...config.dialects].map(([name, port]) =>
  [name, serve(port, `--dialect ${name}=${port}`, name)] as const
);
const servers = [server, ...dialectServers.map(([, listener]) => listener)];
const urlOf = (listener: RunningServer) =>
  `http://${formatHost(listener.hostname)}:${listener.port}/`;
// Before the line that says the server is ready: a supervisor may signal as soon as it reads it.
runtime.onShutdownSignal(async (signal) => {
  log.info(`${signal}: closing ${app.connections} connections`, {
    signal,
    connections: app.connections,
  });
  // The process ends within the grace period whatever still waits: a peer that never answers
  // its close, a listener that never drains, Redis that does not answer.
  const watchdog = setTimeout(() => {
    log.warn("the shutdown grace period ran out; exiting anyway", {
      grace_ms: SHUTDOWN_GRACE_MS,
      connections: app.connections,
    });
    runtime.exit(0);
  }, SHUTDOWN_GRACE_MS);
  app.shutdown(CloseCode.ServiceRestart, "Server restarting");
  // Let the close handshakes finish (shutting the listener first would send 1001), keeping
  // some of the grace period for the listeners and the cluster to stop.
  let timer: ReturnType<typeof setTimeout> | undefined;
  const handshakes = new Promise<void>((resolve) =>
    timer = setTimeout(resolve, SHUTDOWN_GRACE_MS - STOP_MS)
  );
  await Promise.race([app.idle(), handshakes]);
  clearTimeout(timer);
  // A listener waits for its open requests: an authorizer call, or on Deno an upgrade whose
  // client reset mid-handshake, which never ends.
  const drained = await within(
    Promise.all(servers.map((listener) => listener.shutdown())),
    DRAIN_MS,
  );
  if (!drained) log.warn("HTTP requests still open; not waiting for them", { waited_ms: DRAIN_MS });
  await app.stop();
  clearTimeout(watchdog);
  log.info("stopped");
  runtime.exit(0);
});

// Logged once every listener is up: the first line is the one that says the server is ready.
log.info(`hubbub ${VERSION} (${runtime.name}) listening on ${urlOf(server)}`, {
  runtime: runtime.name,
  version: VERSION,
  url: urlOf(server),
  dialects: dialectServers.map(([name, listener]) => `${name}=${urlOf(listener)}`).join(",") ||
    undefined,
  ...startupFields(config),
  store: history.label,
});
for (const [name, listener] of dialectServers) {
  log.info(`${name} clients on ${urlOf(listener)}`, { dialect: name, url: urlOf(listener) });
}

/** Whether `promise` settles within `ms`. */
async function within(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<false>((resolve) => timer = setTimeout(() => resolve(false), ms));
  try {
    return await Promise.race([promise.then(() => true), late]);
  } finally {
    clearTimeout(timer);
  }
}

function formatHost(hostname: string): string {
  return hostname.includes(":") ? `[${hostname}]` : hostname;
}
