/**
 * The runtime-free server: core state, hub, limits, timers and the HTTP
 * handler put together. Runtime adapters feed it requests and socket
 * events; it never touches a runtime API itself.
 *
 * @module
 */
import { createAdmission } from "./admission.ts";
import { ASSETS } from "./assets.ts";
import { audience, createChannels } from "./channels.ts";
import type { Clock } from "./clock.ts";
import type { Config } from "./config.ts";
import { type Deadlines, expired, touch } from "./deadlines.ts";
import { createHttpHandler, type HttpHandler, type Upgrade } from "./http.ts";
import { createHub } from "./hub.ts";
import { bump, createMetrics, type Metrics, renderMetrics } from "./metrics.ts";
import { parseClientFrame } from "./parse.ts";
import { clientCommandSchemas, CloseCode, PROTOCOL_VERSION } from "./protocol.ts";
import { createRegistry, type SessionId } from "./registry.ts";
import { type Core, disconnect, type Effect, error, messageFrame, route } from "./router.ts";
import { createSession, type Session } from "./session.ts";
import type { InboundFrame, Socket } from "./socket.ts";
import { createBucket, type Rate, take } from "./token_bucket.ts";
import { exceedsUtf8Bytes } from "./utf8.ts";

/** Refused commands in a row after which a flooding client is disconnected (4429). */
export const RATE_LIMIT_STRIKES = 10;

/** How often deadlines are checked. */
const SWEEP_INTERVAL_MS = 1000;

/** How often idle per-IP records are forgotten. */
const ADMISSION_SWEEP_MS = 60_000;

/** What the app needs from its surroundings. */
export interface AppDeps {
  /** Time and timers (injected for tests). */
  clock: Clock;
  /** The server version announced in `hello`. */
  version: string;
  /** The process's resident memory, for /metrics, when the runtime can tell. */
  residentBytes?(): number;
}

/** The events of one open connection, called by a runtime adapter. */
export interface Connection {
  /** One inbound WebSocket message. */
  message(frame: InboundFrame): void;
  /** The socket has closed, with the code the close event carried. */
  closed(code: number): void;
}

/** The server, minus the runtime. */
export interface App {
  /** Answers an HTTP request, or says it may be upgraded to a WebSocket. */
  fetch: HttpHandler;
  /** Starts a session on a newly opened WebSocket. */
  open(socket: Socket, upgrade: Upgrade): Connection;
  /** Refuses new connections and closes every socket with `code` (no presence storm). */
  shutdown(code: number, reason: string): void;
  /** Resolves once every socket has finished closing. */
  idle(): Promise<void>;
  /** Stops the app's timers; call once the server is done. */
  stop(): void;
  /** Counters, for adapters to add what only they see. */
  readonly metrics: Metrics;
  /** How many WebSockets are open. */
  readonly connections: number;
}

/** Creates the server for `config`. */
export function createApp(config: Config, deps: AppDeps): App {
  const { clock } = deps;
  const metrics = createMetrics();
  const schemas = clientCommandSchemas(config.maxTextLength);
  const commandRate: Rate = { perSecond: config.rateLimit, burst: config.rateBurst };
  const admission = createAdmission({
    maxConnections: config.maxConnections,
    maxConnectionsPerIp: config.maxConnectionsPerIp,
    connectRate: { perSecond: config.connectRate, burst: config.connectRate * 2 },
  });
  const sessions = new Map<SessionId, Session>();
  /** Connections that must log in, by when they started waiting. */
  const awaitingLogin: Deadlines = new Map();
  /** Logged-in connections by last activity; only kept when --idle-timeout is on. */
  const lastActive: Deadlines = new Map();
  const idleWaiters: (() => void)[] = [];
  const bootId = Math.floor(Math.random() * 36 ** 6).toString(36).padStart(6, "0");
  let messageSeq = 0;
  let nextSessionId: SessionId = 1;
  let shuttingDown = false;
  /** Sockets whose close event has not arrived yet (ended sessions included). */
  let openSockets = 0;

  const core: Core = {
    registry: createRegistry(),
    channels: createChannels(),
    messageId: () => `${bootId}-${(++messageSeq).toString(36)}`,
    now: clock.now,
    limits: config,
  };

  const hub = createHub({
    maxBufferedBytes: config.maxBufferedBytes,
    metrics,
    onSlowConsumer(id) {
      metrics.slowConsumers++;
      end(id, CloseCode.TryAgainLater, "Slow consumer");
    },
  });

  const run = (effects: Effect[], sender: SessionId) => {
    for (const effect of effects) {
      const { frame } = effect;
      if (effect.kind === "reply") {
        if (frame.type === "error") bump(metrics.errors, frame.code);
        hub.send(sender, frame);
      } else {
        if (frame.type === "message") metrics.messagesIn++;
        hub.sendAll(audience(core.channels, effect.channel), frame, effect.except);
      }
    }
  };

  /** Ends a session; with a code, the server closes its socket. Safe to call twice. */
  const end = (id: SessionId, code?: number, reason = "") => {
    const session = sessions.get(id);
    if (session === undefined) return;
    sessions.delete(id);
    if (code === undefined) hub.remove(id);
    else {
      bump(metrics.closes, code);
      hub.close(id, code, reason);
    }
    awaitingLogin.delete(id);
    lastActive.delete(id);
    admission.closed(session.ip);
    if (!shuttingDown) run(disconnect(core, session), id);
  };

  /** Moves a session between the login and idle deadlines when a command logs it in or out. */
  const trackLogin = (session: Session, wasLoggedIn: boolean, now: number) => {
    const isLoggedIn = session.name !== null;
    if (isLoggedIn && !wasLoggedIn) awaitingLogin.delete(session.id);
    if (!isLoggedIn && wasLoggedIn) {
      lastActive.delete(session.id);
      touch(awaitingLogin, session.id, now);
    }
    if (isLoggedIn && config.idleTimeout > 0) touch(lastActive, session.id, now);
  };

  const sweep = () => {
    const now = clock.now();
    for (const id of expired(awaitingLogin, now, config.loginTimeout * 1000)) {
      end(id, CloseCode.LoginTimeout, "Login timeout");
    }
    if (config.idleTimeout > 0) {
      for (const id of expired(lastActive, now, config.idleTimeout * 1000)) {
        end(id, CloseCode.IdleTimeout, "Idle timeout");
      }
    }
  };
  const stopSweep = clock.every(SWEEP_INTERVAL_MS, sweep);
  const stopAdmissionSweep = clock.every(ADMISSION_SWEEP_MS, () => admission.sweep(clock.now()));

  const fetch = createHttpHandler({
    config,
    assets: ASSETS,
    admit(ip) {
      const refusal = admission.admit(ip, clock.now());
      if (refusal) bump(metrics.refused, refusal.reason);
      return refusal;
    },
    broadcast(channel, from, text) {
      metrics.messagesIn++;
      return hub.sendAll(audience(core.channels, channel), messageFrame(core, channel, from, text));
    },
    metricsText: () =>
      renderMetrics(metrics, {
        connections: sessions.size,
        users: core.registry.owners.size,
        channels: core.channels.members.size,
        residentBytes: deps.residentBytes?.(),
      }),
  });

  return {
    fetch,
    open(socket, upgrade) {
      const now = clock.now();
      const session = createSession(nextSessionId++, upgrade.ip, createBucket(commandRate, now));
      const { id } = session;
      sessions.set(id, session);
      admission.opened(session.ip);
      metrics.connectionsOpened++;
      hub.add(id, socket);
      openSockets++;
      let socketOpen = true;
      touch(awaitingLogin, id, now);
      hub.send(id, {
        type: "hello",
        protocol: PROTOCOL_VERSION,
        server: "hubbub",
        version: deps.version,
      });
      return {
        message(frame) {
          if (!sessions.has(id)) return;
          metrics.framesIn++;
          const now = clock.now();
          const tooBig = typeof frame === "string"
            ? exceedsUtf8Bytes(frame, config.maxMessageBytes)
            : frame.byteLength > config.maxMessageBytes;
          if (tooBig) {
            return end(id, CloseCode.MessageTooBig, `Message over ${config.maxMessageBytes} bytes`);
          }
          if (!take(session.bucket, commandRate, now)) {
            metrics.rateLimited++;
            if (++session.strikes >= RATE_LIMIT_STRIKES) {
              return end(id, CloseCode.TooManyRequests, "Rate limit");
            }
            return run([
              error("rate_limited", `Over ${config.rateLimit} commands a second; dropped`),
            ], id);
          }
          session.strikes = 0;
          if (typeof frame !== "string") {
            return run(
              [error("bad_request", "Binary frames are not supported; send JSON text")],
              id,
            );
          }
          const parsed = parseClientFrame(frame, schemas);
          if (!parsed.ok) return run([error(parsed.code, parsed.message, parsed.ref)], id);
          const wasLoggedIn = session.name !== null;
          run(route(core, session, parsed.command), id);
          trackLogin(session, wasLoggedIn, now);
        },
        closed(code) {
          if (!socketOpen) return;
          socketOpen = false;
          if (sessions.has(id)) {
            bump(metrics.closes, code);
            end(id);
          }
          if (--openSockets === 0) { for (const resolve of idleWaiters.splice(0)) resolve(); }
        },
      };
    },
    shutdown(code, reason) {
      shuttingDown = true;
      admission.drain();
      for (const id of [...sessions.keys()]) end(id, code, reason);
    },
    idle() {
      if (openSockets === 0) return Promise.resolve();
      return new Promise((resolve) => idleWaiters.push(resolve));
    },
    stop() {
      stopSweep();
      stopAdmissionSweep();
      hub.stop();
    },
    metrics,
    get connections() {
      return sessions.size;
    },
  };
}
