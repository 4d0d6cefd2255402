/**
 * The runtime-free server: core state, hub, limits, timers and the HTTP
 * handler put together. Runtime adapters feed it requests and socket
 * events; it never touches a runtime API itself. This file only composes
 * the parts in `lib/app/`: the shared state (context), effects and
 * delivery (effects), command processing (commands), the connection
 * lifecycle (connections), the timers (timers) and the HTTP face (http_face).
 *
 * @module
 */
import type { Config } from "./config.ts";
import type { Socket } from "./core/socket.ts";
import type { HttpHandler, Upgrade } from "./http/http.ts";
import type { Logger } from "./log.ts";
import type { Metrics } from "./metrics.ts";
import { type Connection, idle, openConnection, shutdown, unreserve } from "./app/connections.ts";
import { type ContextDeps, createContext } from "./app/context.ts";
import { end, publishLocal } from "./app/effects.ts";
import { createHttpFace, type HttpFaceDeps } from "./app/http_face.ts";
import { startTimers } from "./app/timers.ts";
import { createLocalHistory } from "./app/history.ts";
import { createSharedHistory } from "./app/history_shared.ts";
import { createMemoryStore } from "./store/memory.ts";
import type { MessageStore, StoreOptions } from "./store/store.ts";

export { MAX_FAILED_LOGINS } from "./app/commands.ts";
export { type Connection, RATE_LIMIT_STRIKES } from "./app/connections.ts";
export { NATIVE } from "./app/context.ts";
export type { ReadinessCheck } from "./app/http_face.ts";

/** What the app needs from its surroundings. */
export interface AppDeps extends ContextDeps, HttpFaceDeps {
  /**
   * Where a lone node keeps channel history (main.ts opens SQLite in
   * `--data-dir`); a new memory store by default. The app closes it on
   * `stop`. A cluster engine with a shared log uses that instead.
   */
  store?: MessageStore;
}

/** The server, minus the runtime. */
export interface App {
  /** Answers an HTTP request, or says it may be upgraded to a WebSocket. */
  fetch: HttpHandler;
  /**
   * Starts a session on a newly opened WebSocket; one whose upgrade was
   * abandoned or timed out (or that opens during shutdown) is closed at once.
   */
  open(socket: Socket, upgrade: Upgrade): Connection;
  /**
   * Gives back what `fetch` reserved for an upgrade whose socket will not
   * open; safe to call more than once, and after `open`.
   */
  abandon(upgrade: Upgrade): void;
  /** Refuses new connections and closes every socket with `code` (no presence storm). */
  shutdown(code: number, reason: string): void;
  /** Resolves once every socket has finished closing. */
  idle(): Promise<void>;
  /** Stops the app's timers and leaves the cluster; call once the server is done. */
  stop(): Promise<void>;
  /**
   * Whether deciding an upgrade waits on the network (an authorizer), so
   * that its client may leave meanwhile; adapters watch for that only then.
   */
  readonly upgradesWait: boolean;
  /** Counters, for adapters to add what only they see. */
  readonly metrics: Metrics;
  /** How many WebSockets are open. */
  readonly connections: number;
  /** The app's logger, for adapters to report what only they see. */
  readonly log: Logger;
}

/** Creates the server for `config`. */
export function createApp(config: Config, deps: AppDeps): App {
  // The hub, the cluster and the dialects call back into the parts once the state exists.
  const ctx = createContext(config, deps, {
    end: (id, code, reason) => end(ctx, id, code, reason),
    publishLocal: (channel, frame, except, origin) =>
      publishLocal(ctx, channel, frame, except, origin),
    reconnected: () => ctx.history.reconnected?.(),
  });
  ctx.history = ctx.cluster !== null && deps.engine?.log !== undefined
    ? createSharedHistory(ctx, deps.engine.log)
    : createLocalHistory(ctx, deps.store ?? createMemoryStore(historyLimits(config, deps.clock)));
  // Whoever changes membership (a command, a dialect, the cluster, a close), what waits to be
  // stored goes out first, to the members it was sent to.
  ctx.core.channels.beforeChange = () => ctx.history.flush();
  const stopTimers = startTimers(ctx);
  const fetch = createHttpFace(ctx, {
    ...deps,
    readiness: [...deps.readiness ?? [], { name: "store", ready: () => ctx.history.ready() }],
  });
  return {
    fetch,
    open: (socket, upgrade) => openConnection(ctx, socket, upgrade),
    abandon(upgrade) {
      if (unreserve(ctx, upgrade, "gone")) {
        ctx.log.debug("an upgrade did not open", { ip: upgrade.ip });
      }
    },
    shutdown: (code, reason) => shutdown(ctx, code, reason),
    idle: () => idle(ctx),
    async stop() {
      stopTimers();
      ctx.history.stop();
      ctx.hub.stop();
      await ctx.cluster?.stop();
    },
    upgradesWait: ctx.authorizer !== null,
    metrics: ctx.metrics,
    get connections() {
      return ctx.sessions.size;
    },
    log: ctx.log,
  };
}

/** The store limits `config` sets: `--history-size` and `--history-ttl`. */
export function historyLimits(config: Config, clock: StoreOptions["clock"]): StoreOptions {
  return { maxPerChannel: config.historySize, maxAgeMs: config.historyTtl * 1000, clock };
}
