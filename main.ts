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
import { probeReadiness } from "./lib/healthcheck.ts";
import { CloseCode } from "./lib/protocol.ts";
import { bunRuntime } from "./lib/runtime/bun.ts";
import { denoRuntime } from "./lib/runtime/deno.ts";
import type { Runtime } from "./lib/runtime/types.ts";
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
  console.error(`hubbub: ${result.message}\nRun with --help to see every option.`);
  runtime.exit(2);
}
const config = result.config;

const app = createApp(config, {
  clock: systemClock,
  version: VERSION,
  runtime: runtime.name,
  residentBytes: runtime.residentBytes,
  hub: runtime.hub,
  dialects: DIALECTS,
  engine: config.redisUrl === null
    ? undefined
    : createRedisEngine({ url: config.redisUrl, prefix: config.redisPrefix }),
});
const serve = (port: number, listener?: string) =>
  runtime.serve(app, {
    port,
    hostname: config.hostname,
    pingTimeout: config.pingTimeout,
    limits: config,
    listener,
  });
const server = serve(config.port);
const servers = [server];
console.log(
  `hubbub ${VERSION} (${runtime.name}) listening on http://${
    formatHost(server.hostname)
  }:${server.port}/`,
);
for (const [name, port] of config.dialects) {
  const listener = serve(port, name);
  servers.push(listener);
  console.log(
    `hubbub: ${name} clients on http://${formatHost(listener.hostname)}:${listener.port}/`,
  );
}

runtime.onShutdownSignal(async (signal) => {
  console.log(`hubbub: ${signal}, closing ${app.connections} connections`);
  app.shutdown(CloseCode.ServiceRestart, "Server restarting");
  // Let the close handshakes finish (shutting the listener first would send 1001),
  // but never wait on a peer that does not answer past the grace period.
  let timer: ReturnType<typeof setTimeout> | undefined;
  const grace = new Promise<void>((resolve) => timer = setTimeout(resolve, SHUTDOWN_GRACE_MS));
  await Promise.race([app.idle(), grace]);
  clearTimeout(timer);
  await Promise.all(servers.map((listener) => listener.shutdown()));
  await app.stop();
  runtime.exit(0);
});

function formatHost(hostname: string): string {
  return hostname.includes(":") ? `[${hostname}]` : hostname;
}
