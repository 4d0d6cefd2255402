/**
 * The one start-up every entry point shares: configuration, logger, engine
 * and history, app, listeners, shutdown on SIGINT/SIGTERM, and the summary
 * line. `main.ts` runs it with listeners of its own; `serve.ts` runs it in
 * every worker of `deno serve`, whose listener is deno serve's.
 *
 * @module
 */
import { type App, createApp, historyLimits } from "../app.ts";
import { chosenEngine, type Config, type EngineChoice, parseConfig } from "../config.ts";
import { createRedisEngine } from "../cluster/engine_redis.ts";
import type { Engine } from "../cluster/engine.ts";
import { systemClock } from "../core/clock.ts";
import { CloseCode } from "../core/protocol.ts";
import { DIALECTS } from "../dialects/index.ts";
import { probeReadiness } from "../http/healthcheck.ts";
import { createLogger, type LogFormat, type Logger, type LoggerOptions } from "../log.ts";
import { listenFailure, startupFields } from "../startup.ts";
import { createMemoryStore } from "../store/memory.ts";
import { openDataDir } from "../store/open.ts";
import type { MessageStore } from "../store/store.ts";
import { VERSION } from "../version.ts";
import type { RunningServer, Runtime } from "./types.ts";
import { joinWorkers, type WorkerChannel, type Workers } from "./workers.ts";

/** How long shutdown may take in all, close handshakes included (Deno Deploy kills at 5 s). */
export const SHUTDOWN_GRACE_MS = 3000;

/** The part of the grace period kept for the listeners and the cluster to stop. */
const STOP_MS = 1000;

/** How long the listeners may take to finish their open HTTP requests at shutdown. */
const DRAIN_MS = 500;

/** How hubbub is started. */
export interface StartOptions {
  /**
   * `main`: hubbub opens its listeners (`--port`, `--dialect`); `serve`: it
   * runs in a worker of `deno serve`, whose listener calls the app and
   * whose `--port` and `--host` say where.
   */
  entry: "main" | "serve";
  /** Where log lines of `format` go; the console when it answers undefined (or is absent). */
  write?: (format: LogFormat) => LoggerOptions["write"] | undefined;
  /**
   * Under `deno serve --parallel`: the name of a `BroadcastChannel` that
   * only this process's workers share, over which each waits for the
   * others at shutdown.
   */
  workers?: string;
}

/** A started hubbub. */
export interface Started {
  readonly app: App;
  readonly config: Config;
  readonly log: Logger;
  /** This node's id: the `node` of `hello` when nodes share an engine. */
  readonly node: string;
  /** Under `deno serve`: logs the line that says the server is ready (deno serve's `onListen`). */
  listening(address: { hostname: string; port: number }): void;
}

/**
 * Reads the configuration from `runtime`, builds the app and its engine,
 * opens the listeners (entry `main`) and handles the shutdown signals; ends
 * the process on `--help`, `--version`, `--healthcheck` and on a
 * configuration that cannot start.
 */
export async function startHubbub(runtime: Runtime, options: StartOptions): Promise<Started> {
  const { entry } = options;
  const env = runtime.env();
  const args = runtime.args();
  const result = parseConfig(args, env, DIALECTS);
  if (result.kind === "help") {
    console.log(result.text);
    return runtime.exit(0);
  }
  if (result.kind === "version") {
    console.log(`hubbub ${VERSION}`);
    return runtime.exit(0);
  }
  if (result.kind === "healthcheck") {
    // The container's health check: probe the server this configuration describes, then exit.
    const { ok, line } = await probeReadiness(result.config);
    if (ok) console.log(`hubbub: ${line}`);
    else console.error(`hubbub: ${line}`);
    return runtime.exit(ok ? 0 : 1);
  }
  const problem = result.kind === "error"
    ? result.message
    : entry === "serve"
    ? servedRefusal(result.config, args, env)
    : null;
  if (result.kind === "error" || problem !== null) {
    // One line: a supervisor's log shows the whole reason.
    console.error(`hubbub: ${problem} (run with --help to see every option)`);
    return runtime.exit(2);
  }
  const config = result.config;
  const log = createLogger({
    format: config.logFormat,
    level: config.logLevel,
    write: options.write?.(config.logFormat),
  });
  for (const warning of result.warnings) log.warn(warning);

  const onDeploy = env.DENO_DEPLOYMENT_ID !== undefined;
  // Under deno serve the workers are isolates that share no memory, as Deploy's instances are.
  const choice = chosenEngine(config, onDeploy || entry === "serve");
  if (choice === "memory" && entry === "serve") {
    log.warn(
      "--engine memory under deno serve: each worker keeps its own users, rooms and history in memory; use --engine kv to share them",
    );
  }
  const engine = await openEngine(runtime, config, choice, log);
  const history = openHistory(config, engine, entry, log);
  const node = randomNodeId();
  const app = createApp(config, {
    store: history.store,
    clock: systemClock,
    version: VERSION,
    runtime: runtime.name,
    residentBytes: runtime.residentBytes,
    hub: runtime.hub,
    afterIo: runtime.afterIo,
    dialects: DIALECTS,
    log,
    engine,
    nodeId: node,
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
  const server = entry === "main" ? serve(config.port, "--port") : null;
  const dialectServers = [...config.dialects].map(([name, port]) =>
    [name, serve(port, `--dialect ${name}=${port}`, name)] as const
  );
  const servers = [...server === null ? [] : [server], ...dialectServers.map(([, l]) => l)];
  // Deno.exit in one worker ends every worker: each waits for the others to close their sockets.
  const workers = options.workers === undefined
    ? null
    : joinWorkers(node, new BroadcastChannel(options.workers) as WorkerChannel);
  // Before the line that says the server is ready: a supervisor may signal as soon as it reads it.
  runtime.onShutdownSignal((signal) => shutDown(signal, { runtime, app, log, servers, workers }));

  const fields = {
    ...startupFields(config, choice),
    store: history.label,
    kv: choice === "kv" ? config.kvPath ?? "default" : undefined,
  };
  if (server !== null) {
    // Logged once every listener is up: the first line is the one that says the server is ready.
    log.info(`hubbub ${VERSION} (${runtime.name}) listening on ${urlOf(server)}`, {
      runtime: runtime.name,
      version: VERSION,
      url: urlOf(server),
      dialects: dialectServers.map(([name, listener]) => `${name}=${urlOf(listener)}`).join(",") ||
        undefined,
      ...fields,
    });
  } else {
    log.info(`hubbub ${VERSION} (deno serve) worker ${node} ready`, {
      runtime: runtime.name,
      version: VERSION,
      node,
      ...fields,
    });
  }
  for (const [name, listener] of dialectServers) {
    log.info(`${name} clients on ${urlOf(listener)}`, { dialect: name, url: urlOf(listener) });
  }
  return {
    app,
    config,
    log,
    node,
    listening(address) {
      const url = urlOf(address);
      log.info(`hubbub ${VERSION} (deno serve) listening on ${url}`, {
        runtime: runtime.name,
        version: VERSION,
        url,
        ...fields,
      });
    },
  };
}

/**
 * Why this configuration cannot run under `deno serve`, or null: the
 * listener, its port and its address are deno serve's, and its workers
 * share one port.
 */
function servedRefusal(
  config: Config,
  args: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
): string | null {
  for (
    const [flag, own, variable] of [["--port", "--port", "HUBBUB_PORT"], [
      "--hostname",
      "--host",
      "HUBBUB_HOSTNAME",
    ]]
  ) {
    const given = args.some((arg) => arg === flag || arg.startsWith(`${flag}=`))
      ? flag
      : env[variable] !== undefined
      ? variable
      : null;
    if (given !== null) {
      return `Under deno serve, ${given} is not read: give deno serve its ${own} before the module (deno serve ${own} … serve.ts)`;
    }
  }
  if (config.dialects.size > 0) {
    return "Under deno serve, --dialect cannot be served: its workers share deno serve's one port; run main.ts (deno task start) to serve dialects on ports of their own";
  }
  return null;
}

/** The engine `choice` names, connected on `start`; none for a lone node in memory. */
async function openEngine(
  runtime: Runtime,
  config: Config,
  choice: Exclude<EngineChoice, "auto">,
  log: Logger,
): Promise<Engine | undefined> {
  const history = { maxPerChannel: config.historySize, ttlMs: config.historyTtl * 1000 };
  if (choice === "redis") {
    return createRedisEngine({ url: config.redisUrl!, prefix: config.redisPrefix, history });
  }
  if (choice !== "kv") return undefined;
  if (runtime.openKvEngine === undefined) {
    log.error(`--engine kv needs Deno KV, which ${runtime.name} does not have: use --engine redis`);
    return runtime.exit(2);
  }
  const opened = await runtime.openKvEngine({
    path: config.kvPath,
    prefix: config.redisPrefix,
    history,
    log,
  });
  if ("engine" in opened) return opened.engine;
  log.error(opened.message, { kv_path: config.kvPath ?? undefined });
  return runtime.exit(2);
}

/**
 * Where history lives: in the engine's shared log when it has one (no data
 * directory is opened at all: Deno Deploy has no disk to keep it), else the
 * SQLite database `--data-dir` names, else memory (`none`, or a directory
 * that cannot be written, said at error level: messages will not survive a
 * restart).
 */
function openHistory(
  config: Config,
  engine: Engine | undefined,
  entry: StartOptions["entry"],
  log: Logger,
): { store?: MessageStore; label: string } {
  if (engine?.log !== undefined) return { label: engine.kind };
  const limits = historyLimits(config, systemClock);
  // Workers each numbering one SQLite file's channels would give two messages one seq.
  if (config.dataDir === null || entry === "serve") {
    return { store: createMemoryStore(limits), label: "memory" };
  }
  const opened = openDataDir(config.dataDir, limits);
  if (opened.ok) return { store: opened.store, label: `sqlite:${opened.path}` };
  log.error("history: cannot use the data directory; keeping history in memory only", {
    data_dir: config.dataDir,
    reason: opened.message,
  });
  return { store: createMemoryStore(limits), label: "memory" };
}

/** What the shutdown needs. */
interface Running {
  runtime: Runtime;
  app: App;
  log: Logger;
  servers: RunningServer[];
  workers: Workers | null;
}

/**
 * Closes every socket with 1012, lets the close handshakes finish, stops
 * the listeners and the engine, then exits; the process ends within the
 * grace period whatever still waits.
 */
async function shutDown(signal: string, running: Running): Promise<void> {
  const { runtime, app, log, servers, workers } = running;
  log.info(`${signal}: closing ${app.connections} connections`, {
    signal,
    connections: app.connections,
  });
  // The process ends within the grace period whatever still waits: a peer that never answers
  // its close, a listener that never drains, Redis that does not answer, a worker that hangs.
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
  if (workers !== null) {
    log.info("stopped; waiting for the other workers");
    await workers.stopped();
  }
  clearTimeout(watchdog);
  log.info("stopped");
  runtime.exit(0);
}

/** A node id: random, so that workers and instances started together never share one. */
function randomNodeId(): string {
  return Math.floor(Math.random() * 36 ** 10).toString(36).padStart(10, "0");
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

/** `http://host:port/` of a listener. */
function urlOf(listener: { hostname: string; port: number }): string {
  const host = listener.hostname.includes(":") ? `[${listener.hostname}]` : listener.hostname;
  return `http://${host}:${listener.port}/`;
}
