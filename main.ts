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
import { createApp } from "./lib/app.ts";
import { systemClock } from "./lib/clock.ts";
import { parseConfig } from "./lib/config.ts";
import { DIALECTS } from "./lib/dialects/index.ts";
import { createRedisEngine } from "./lib/engine_redis.ts";
import { createLogger } from "./lib/log.ts";
import { probeReadiness } from "./lib/healthcheck.ts";
import { CloseCode } from "./lib/protocol.ts";
import { bunRuntime } from "./lib/runtime/bun.ts";
import { denoRuntime } from "./lib/runtime/deno.ts";
import type { RunningServer, Runtime } from "./lib/runtime/types.ts";
import { listenFailure, startupFields } from "./lib/startup.ts";
import { VERSION } from "./lib/version.ts";

/** How long shutdown waits for close handshakes (Deno Deploy kills at 5 s). */
const SHUTDOWN_GRACE_MS = 3000;

/** The adapter for the runtime we run on, by feature detection (Bun first: it may shim Deno). */
function pickRuntime(): Runtime {
  if ("Bun" in globalThis) return bunRuntime;
  if ("Deno" in globalThis) return denoRuntime;
  console.error("hubbub: unsupported runtime; run it with Deno or Bun");
  throw new Error("Unsupported runtime");
}

const runtime: Runtime = pickRuntime();
const result = parseConfig(runtime.args(), runtime.env());
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

const app = createApp(config, {
  clock: systemClock,
  version: VERSION,
  runtime: runtime.name,
  residentBytes: runtime.residentBytes,
  hub: runtime.hub,
  dialects: DIALECTS,
  log,
  engine: config.redisUrl === null
    ? undefined
    : createRedisEngine({ url: config.redisUrl, prefix: config.redisPrefix }),
});
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
// Logged once every listener is up: the first line is the one that says the server is ready.
log.info(`hubbub ${VERSION} (${runtime.name}) listening on ${urlOf(server)}`, {
  runtime: runtime.name,
  version: VERSION,
  url: urlOf(server),
  dialects: dialectServers.map(([name, listener]) => `${name}=${urlOf(listener)}`).join(",") ||
    undefined,
  ...startupFields(config),
});
for (const [name, listener] of dialectServers) {
  log.info(`${name} clients on ${urlOf(listener)}`, { dialect: name, url: urlOf(listener) });
}

runtime.onShutdownSignal(async (signal) => {
  log.info(`${signal}: closing ${app.connections} connections`, {
    signal,
    connections: app.connections,
  });
  app.shutdown(CloseCode.ServiceRestart, "Server restarting");
  // Let the close handshakes finish (shutting the listener first would send 1001),
  // but never wait on a peer that does not answer past the grace period.
  let timer: ReturnType<typeof setTimeout> | undefined;
  const grace = new Promise<void>((resolve) => timer = setTimeout(resolve, SHUTDOWN_GRACE_MS));
  await Promise.race([app.idle(), grace]);
  clearTimeout(timer);
  await Promise.all(servers.map((listener) => listener.shutdown()));
  await app.stop();
  log.info("stopped");
  runtime.exit(0);
});

function formatHost(hostname: string): string {
  return hostname.includes(":") ? `[${hostname}]` : hostname;
}
