/**
 * The runtime-free server: core state, hub, limits, timers and the HTTP
 * handler put together. Runtime adapters feed it requests and socket
 * events; it never touches a runtime API itself.
 *
 * @module
 */
import { createAdmission } from "./http/admission.ts";
import { ASSETS } from "./http/assets.ts";
import {
  audience,
  createChannels,
  listChannels,
  memberCount,
  memberNames,
} from "./core/channels.ts";
import type { Clock } from "./core/clock.ts";
import type { Config } from "./config.ts";
import { type Deadlines, expired, touch } from "./core/deadlines.ts";
import { createApi } from "./http/api.ts";
import { createJwtVerifier, type JwtVerifier } from "./auth/jwt.ts";
import { createAuthorizer, headerLists, queryLists } from "./auth/webhook.ts";
import { createGate, type GateResult, type TokenGrant } from "./auth/gate.ts";
import { createHttpHandler, type HttpHandler, type Upgrade } from "./http/http.ts";
import { createHub, type HubFactory } from "./delivery/hub.ts";
import { type Cluster, createCluster } from "./cluster/cluster.ts";
import { type ClaimOutcome, createMemoryEngine, type Engine } from "./cluster/engine.ts";
import { bump, closeLabel, createMetrics, type Metrics, renderMetrics } from "./metrics.ts";
import { parseClientFrame } from "./core/parse.ts";
import {
  clientCommandSchemas,
  CloseCode,
  PROTOCOL_VERSION,
  type ServerFrame,
} from "./core/protocol.ts";
import { checkName, nameKey } from "./core/names.ts";
import { createRegistry, holderOf, ownerOf, type SessionId } from "./core/registry.ts";
import {
  type Core,
  disconnect,
  type Effect,
  error,
  messageFrame,
  type Origin,
  route,
  type RoutedCommand,
} from "./core/router.ts";
import { createLogger, type Logger } from "./log.ts";
import { createSession, type Session } from "./core/session.ts";
import type { InboundFrame, Socket } from "./core/socket.ts";
import type { Dialect, DialectContext } from "./dialects/dialect.ts";
import { createBucket, type Rate, take } from "./core/token_bucket.ts";
import { exceedsUtf8Bytes } from "./core/utf8.ts";

/** Refused commands in a row after which a flooding client is disconnected (4429). */
export const RATE_LIMIT_STRIKES = 10;

/** How often deadlines are checked. */
const SWEEP_INTERVAL_MS = 1000;

/** Logins refused in a row after which the connection is closed (4401). */
export const MAX_FAILED_LOGINS = 5;

/** Frames a session may have waiting behind a token check or authorizer call. */
const MAX_BACKLOG = 256;

/** How often dialect timers run. */
const DIALECT_TICK_MS = 250;

/** The dialect name of the native protocol. */
export const NATIVE = "native";

/** How often idle per-IP records are forgotten. */
const ADMISSION_SWEEP_MS = 60_000;

/**
 * The longest an allowed upgrade may take to open its socket (capped further
 * by the login timeout) before its connection slot is given back: the last
 * resort for a socket the runtime never reports on (Deno, when the client
 * resets during the handshake).
 */
const MAX_OPEN_DEADLINE_MS = 10_000;

/** What the app needs from its surroundings. */
export interface AppDeps {
  /** Time and timers (injected for tests). */
  clock: Clock;
  /** The server version announced in `hello`. */
  version: string;
  /** The runtime's name ("deno" or "bun"), for `hubbub_build_info`. */
  runtime?: string;
  /** The process's resident memory, for /metrics, when the runtime can tell. */
  residentBytes?(): number;
  /** The hub that suits the runtime; the coalescing hub by default. */
  hub?: HubFactory;
  /** The wire protocols besides the native one that sockets may speak. */
  dialects?: readonly Dialect[];
  /** What this node shares with the others of its cluster; a lone in-memory node by default. */
  engine?: Engine;
  /** This node's id in the cluster; random by default. */
  nodeId?: string;
  /** Where the app logs what operators should see; text lines at info level by default. */
  log?: Logger;
  /** Readiness checks besides shutdown and cluster, e.g. whether the store can be written. */
  readiness?: readonly ReadinessCheck[];
}

/** One check of `GET /readyz`: the server should get no traffic while it fails. */
export interface ReadinessCheck {
  /** Named in the 503 body, e.g. "store". */
  readonly name: string;
  ready(): boolean;
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
  /** Counters, for adapters to add what only they see. */
  readonly metrics: Metrics;
  /** How many WebSockets are open. */
  readonly connections: number;
  /** The app's logger, for adapters to report what only they see. */
  readonly log: Logger;
}

/** Creates the server for `config`. */
export function createApp(config: Config, deps: AppDeps): App {
  const { clock } = deps;
  const log = deps.log ?? createLogger({ format: "text", level: "info", now: clock.now });
  const metrics = createMetrics();
  const schemas = clientCommandSchemas(config.maxTextLength);
  const commandRate: Rate = { perSecond: config.rateLimit, burst: config.rateBurst };
  const admission = createAdmission({
    maxConnections: config.maxConnections,
    maxConnectionsPerIp: config.maxConnectionsPerIp,
    connectRate: { perSecond: config.connectRate, burst: config.connectRate * 2 },
  });
  const sessions = new Map<SessionId, Session>();
  const dialects = new Map(
    (deps.dialects ?? []).map((dialect) => [dialect.name, dialect as Dialect]),
  );
  /** Each dialect's sessions, so its timers cost nothing for anyone else. */
  const sessionsByDialect = new Map<string, Map<SessionId, Session>>();
  const dialectStates = new Map<SessionId, unknown>();
  const jwt = jwtVerifierFor(config);
  const authorizer = config.authorizerUrl === null ? null : createAuthorizer({
    url: config.authorizerUrl,
    timeoutMs: config.authorizerTimeoutMs,
    maxConcurrent: config.authorizerConcurrency,
    maxQueued: config.authorizerConcurrency * 16,
    // One address never holds every slot, and a flood from it waits behind its own calls.
    maxConcurrentPerKey: Math.ceil(config.authorizerConcurrency / 2),
    maxPerKey: config.authorizerConcurrency,
    onDown: (reason) =>
      log.limited("warn", "authorizer:down", "authorizer down; refusing what needs it", { reason }),
    onShed: (ip) =>
      log.limited("warn", "authorizer:shed", "authorizer calls from one address over its share", {
        ip,
      }),
  });
  const gate = createGate({ jwt, authorizer, downCloseCode: CloseCode.TryAgainLater });
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
  /** Upgrades allowed whose socket has not opened (nor been abandoned) yet, by when. */
  const upgrading = new Map<Upgrade, number>();
  const openDeadlineMs = Math.min(config.loginTimeout * 1000, MAX_OPEN_DEADLINE_MS);

  const core: Core = {
    registry: createRegistry(),
    channels: createChannels(),
    messageId: () => `${bootId}-${(++messageSeq).toString(36)}`,
    now: clock.now,
    limits: config,
    tokensRequired: jwt !== null,
  };

  const engine = deps.engine ?? createMemoryEngine();
  const cluster: Cluster | null = !engine.shared ? null : createCluster({
    engine,
    clock,
    nodeId: deps.nodeId ?? `${bootId}${Math.floor(Math.random() * 36 ** 4).toString(36)}`,
    leaseMs: config.nameLease * 1000,
    channels: core.channels,
    metrics,
    deliver: (channel, frame, origin) => publishLocal(channel, frame, undefined, origin),
    nameLost: (id) => end(id, CloseCode.Conflict, "Your name is held on another node now"),
    kick(key) {
      const id = core.registry.owners.get(key);
      if (id !== undefined) end(id, CloseCode.Kicked, "Removed by an operator");
    },
    log,
  });
  if (cluster !== null) {
    core.registry.watcher = {
      claimed: (key, id) => cluster.claimed(key, id),
      released: (key, id) => cluster.released(key, id),
    };
  }

  const hub = (deps.hub ?? createHub)({
    maxBufferedBytes: config.maxBufferedBytes,
    metrics,
    onSlowConsumer(id) {
      metrics.slowConsumers++;
      end(id, CloseCode.TryAgainLater, "Slow consumer");
    },
    encode(dialect, frame, origin) {
      if (dialect === NATIVE) return JSON.stringify(frame);
      return dialects.get(dialect)?.encode(frame, origin, encodeContext) ?? null;
    },
  });
  const encodeContext = { memberCount: (channel: string) => memberCount(core.channels, channel) };
  const dialectContext: DialectContext = {
    config,
    registry: core.registry,
    channels: core.channels,
    sessions,
    now: clock.now,
    messageId: core.messageId,
    jwt,
    authorizer,
    stateOf: (id) => dialectStates.get(id),
    end: (id, code, reason) => end(id, code, reason),
    shuttingDown: () => shuttingDown,
  };

  /** Publishes to a channel's members on this node and counts the deliveries; returns how many. */
  const publishLocal = (
    channel: string,
    frame: ServerFrame,
    except?: SessionId,
    origin?: Origin,
  ) => {
    const recipients = memberCount(core.channels, channel) -
      (cluster?.remoteMembers(channel) ?? 0) - (except === undefined ? 0 : 1);
    if (recipients <= 0) return 0;
    hub.publish(channel, audience(core.channels, channel), frame, except, origin);
    metrics.deliveries += recipients;
    return recipients;
  };

  /** Publishes to a channel's members on every node; returns how many it reaches. */
  const publish = (channel: string, frame: ServerFrame, except?: SessionId, origin?: Origin) => {
    const local = publishLocal(channel, frame, except, origin);
    if (cluster === null) return local;
    // Always on the bus: a member that joined elsewhere a moment ago may not be counted here yet.
    cluster.published(channel, frame, origin);
    return local + cluster.remoteMembers(channel);
  };

  const run = (effects: Effect[], sender: SessionId) => {
    for (const effect of effects) {
      switch (effect.kind) {
        case "reply":
          if (effect.frame.type === "error") bump(metrics.errors, effect.frame.code);
          // Dialect clients would not understand native frames (e.g. a rate_limited error).
          if (sessions.get(sender)?.dialect !== NATIVE) break;
          hub.send(sender, effect.frame);
          metrics.deliveries++;
          break;
        case "raw":
          hub.sendText(sender, effect.text);
          metrics.deliveries++;
          break;
        case "close":
          end(sender, effect.code, effect.reason);
          break;
        case "publish":
          if (effect.frame.type === "message") metrics.messagesIn++;
          publish(effect.channel, effect.frame, effect.except, effect.origin);
          break;
        case "subscribe":
          hub.subscribe(sender, effect.channel);
          cluster?.joined(
            effect.channel,
            sender,
            core.channels.members.get(effect.channel)?.get(sender) ?? "",
          );
          break;
        case "unsubscribe":
          hub.unsubscribe(sender, effect.channel);
          cluster?.left(effect.channel, sender);
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
      bump(metrics.closes, closeLabel(code));
      hub.close(id, code, reason);
      if (!shuttingDown) logClose(session, code, reason);
    }
    awaitingLogin.delete(id);
    lastActive.delete(id);
    dialectStates.delete(id);
    sessionsByDialect.get(session.dialect)?.delete(id);
    admission.closed(session.ip);
    if (!shuttingDown) run(disconnect(core, session), id);
  };

  /** Logs a close the server chose: those an operator must see rate-limited at warn, the rest at debug. */
  const logClose = (session: Session, code: number, reason: string) => {
    const fields = {
      conn: session.id,
      ip: session.ip,
      name: session.name ?? undefined,
      code,
      reason,
    };
    if (OPERATOR_CLOSES.has(code)) {
      log.limited("warn", `close:${code}:${reason}`, "closed a connection", fields);
    } else log.debug("closed a connection", fields);
  };

  /** Counts a refused login; too many in a row end the connection. */
  const loginFailed = (session: Session) => {
    if (++session.failedLogins >= MAX_FAILED_LOGINS) {
      end(session.id, CloseCode.Unauthorized, "Too many failed logins");
    }
  };

  /** Routes one command and keeps deadlines and token state in step with its login state. */
  const apply = (
    session: Session,
    command: RoutedCommand,
    grant: TokenGrant | undefined,
    now: number,
  ) => {
    const wasLoggedIn = session.name !== null;
    run(route(core, session, command), session.id);
    const isLoggedIn = session.name !== null;
    if (isLoggedIn && !wasLoggedIn) {
      awaitingLogin.delete(session.id);
      session.failedLogins = 0;
      if (grant) {
        session.tokenExpiresAt = grant.expiresAt;
        session.channelFilter = grant.channelFilter;
      }
    } else if (!isLoggedIn && wasLoggedIn) {
      lastActive.delete(session.id);
      session.tokenExpiresAt = null;
      session.channelFilter = null;
      touch(awaitingLogin, session.id, now);
    } else if (!isLoggedIn && command.type === "login") {
      loginFailed(session);
    }
    if (isLoggedIn && config.idleTimeout > 0) touch(lastActive, session.id, now);
  };

  /**
   * Applies a routed command; in a cluster, a login first claims its name
   * cluster-wide, and frames that arrive meanwhile wait their turn.
   */
  const admit = (
    session: Session,
    command: RoutedCommand,
    grant: TokenGrant | undefined,
    now: number,
  ) => {
    const key = cluster === null ? null : clusterKeyOf(session, command);
    if (key === null) return apply(session, command, grant, now);
    const outcome = cluster!.claim(key, session.id);
    if (typeof outcome === "string") return claimSettled(session, command, grant, now, outcome);
    session.busy = true;
    outcome.then((settled) => {
      if (!sessions.has(session.id)) {
        cluster!.released(key, session.id);
        return;
      }
      session.busy = false;
      claimSettled(session, command, grant, now, settled);
      drain(session);
    });
  };

  /** The name's key a login must claim cluster-wide, or null when the router answers it alone. */
  const clusterKeyOf = (session: Session, command: RoutedCommand): string | null => {
    if (command.type !== "login" || command.name === undefined || session.name !== null) {
      return null;
    }
    const checked = checkName(command.name);
    if (!checked.ok) return null; // invalid_name
    // name_taken, here; a look-alike held on another node is only caught by its primary key.
    return holderOf(core.registry, checked.name) === undefined ? nameKey(checked.name) : null;
  };

  const claimSettled = (
    session: Session,
    command: RoutedCommand,
    grant: TokenGrant | undefined,
    now: number,
    outcome: ClaimOutcome,
  ) => {
    if (outcome === "claimed") return apply(session, command, grant, now);
    const name = (command as { name: string }).name.normalize("NFKC");
    if (outcome === "taken") {
      run([error("name_taken", `Name "${name}" is taken`, command.ref)], session.id);
      return loginFailed(session);
    }
    run([
      error(
        "unavailable",
        "Names cannot be claimed right now (the cluster store is down or recovering); try again",
        command.ref,
      ),
    ], session.id);
  };

  /** Handles one text or binary frame, in arrival order, after size and rate checks. */
  const process = (session: Session, frame: InboundFrame) => {
    if (session.dialect !== NATIVE) return processDialect(session, frame);
    if (typeof frame !== "string") {
      return run(
        [error("bad_request", "Binary frames are not supported; send JSON text")],
        session.id,
      );
    }
    const parsed = parseClientFrame(frame, schemas);
    if (!parsed.ok) return run([error(parsed.code, parsed.message, parsed.ref)], session.id);
    const { command } = parsed;
    const now = clock.now();
    // A refresh only ever goes through the gate: the router has no token state to change.
    if (command.type !== "refresh" && !gate.needsCheck(command)) {
      return admit(session, command, undefined, now);
    }
    // Frames arriving meanwhile wait, so every client's commands take effect in order.
    session.busy = true;
    gate.check(session, command, now).then(
      (result) => settle(session, result),
      (failure) => {
        metrics.internalErrors++;
        log.error("a gate check failed", { conn: session.id, error: describeError(failure) });
        end(session.id, CloseCode.InternalError, "Internal error");
      },
    );
  };

  /** A dialect frame: its effects now, or once its promise settles, in arrival order. */
  const processDialect = (session: Session, frame: InboundFrame) => {
    const dialect = dialects.get(session.dialect)!;
    const state = dialectStates.get(session.id);
    const result = typeof frame === "string"
      ? dialect.receive(dialectContext, session, state, frame)
      : dialect.receiveBinary?.(dialectContext, session, state, frame.bytes) ?? [];
    if (Array.isArray(result)) return run(result, session.id);
    session.busy = true;
    result.then(
      (effects) => {
        if (!sessions.has(session.id)) {
          // It closed while we waited: undo whatever the dialect did to the core meanwhile
          // (joined a channel, claimed a name), without telling anyone of it.
          disconnect(core, session);
          return;
        }
        session.busy = false;
        run(effects, session.id);
        drain(session);
      },
      (failure) => {
        metrics.internalErrors++;
        log.error("a dialect failed", {
          conn: session.id,
          dialect: session.dialect,
          error: describeError(failure),
        });
        end(session.id, CloseCode.InternalError, "Internal error");
      },
    );
  };

  /** Processes what waited behind an asynchronous check, until the next one. */
  const drain = (session: Session) => {
    while (!session.busy && session.backlog.length > 0 && sessions.has(session.id)) {
      process(session, session.backlog.shift()!);
    }
  };

  const settle = (session: Session, result: GateResult) => {
    if (!sessions.has(session.id)) return;
    session.busy = false;
    const now = clock.now();
    if (result.kind === "route") admit(session, result.command, result.token, now);
    else if (result.kind === "close") return end(session.id, result.code, result.reason);
    else {
      run(result.effects, session.id);
      if (result.failedLogin) loginFailed(session);
    }
    drain(session);
  };

  /** Runs the dialects' timers, each over its own sessions only. */
  const tickDialects = () => {
    for (const [name, dialect] of dialects) {
      if (dialect.tick === undefined) continue;
      const own = sessionsByDialect.get(name);
      if (own === undefined || own.size === 0) continue;
      const states = [...own.values()].map((session) =>
        [session, dialectStates.get(session.id)] as [Session, unknown]
      );
      for (const [id, effects] of dialect.tick(dialectContext, states)) run(effects, id);
    }
  };

  /** Gives back the slot of an upgrade whose socket will not open; false if it was given already. */
  const unreserve = (upgrade: Upgrade, reason: "gone" | "deadline") => {
    if (!upgrading.delete(upgrade)) return false;
    admission.closed(upgrade.ip);
    bump(metrics.abandoned, reason);
    return true;
  };

  const sweep = () => {
    const now = clock.now();
    log.flush();
    // In the order they were allowed: the first one still in time ends the search.
    for (const [upgrade, since] of upgrading) {
      if (now - since < openDeadlineMs) break;
      unreserve(upgrade, "deadline");
      log.limited("warn", "upgrade:never_opened", "an upgrade never opened; its slot is free", {
        ip: upgrade.ip,
        dialect: upgrade.dialect,
      });
    }
    for (const id of expired(awaitingLogin, now, config.loginTimeout * 1000)) {
      end(id, CloseCode.LoginTimeout, "Login timeout");
    }
    if (config.idleTimeout > 0) {
      for (const id of expired(lastActive, now, config.idleTimeout * 1000)) {
        end(id, CloseCode.IdleTimeout, "Idle timeout");
      }
    }
    if (jwt !== null) {
      const deadline = now - config.jwtClockSkew * 1000;
      for (const session of sessions.values()) {
        if (session.tokenExpiresAt !== null && session.tokenExpiresAt <= deadline) {
          end(session.id, CloseCode.Unauthorized, "Token expired");
        }
      }
    }
  };
  const stopSweep = clock.every(SWEEP_INTERVAL_MS, sweep);
  const stopDialectTicks = [...dialects.values()].some((dialect) => dialect.tick)
    ? clock.every(DIALECT_TICK_MS, tickDialects)
    : () => {};
  const stopAdmissionSweep = clock.every(ADMISSION_SWEEP_MS, () => admission.sweep(clock.now()));

  const readinessChecks: ReadinessCheck[] = [
    { name: "shutdown", ready: () => !shuttingDown },
    // Down, or back but not every node's names are in the store again: logins are refused.
    { name: "cluster", ready: () => cluster === null || cluster.admitting },
    ...deps.readiness ?? [],
  ];
  const build = {
    version: deps.version,
    runtime: deps.runtime ?? "unknown",
    // The web-standard start of this process (not of the app), as Prometheus expects.
    startTimeSeconds: Math.round(performance.timeOrigin) / 1000,
  };
  const handleHttp = createHttpHandler({
    config,
    log,
    assets: ASSETS,
    admit(ip) {
      const refusal = admission.admit(ip, clock.now());
      if (refusal) bump(metrics.refused, refusal.reason);
      return refusal;
    },
    release: (ip) => admission.closed(ip),
    authorizeUpgrade: authorizer === null ? undefined : (request, ip) => {
      const url = new URL(request.url);
      return authorizer.decide({
        command: "connect",
        args: { headers: headerLists(request.headers), query: queryLists(url) },
      }, ip);
    },
    dialects,
    async dialectHttp(name, request, path) {
      const dialect = dialects.get(name);
      if (dialect?.http === undefined) return null;
      const answer = await dialect.http(
        dialectContext,
        request,
        path,
        (effects) => run(effects, 0),
      );
      // A dialect's keyed endpoints (wsify's POST /broadcast?key=) answer a wrong key this way.
      if (answer?.status === 401 || answer?.status === 403) {
        log.limited("warn", `dialect-http:${name}`, "request refused: wrong or missing key", {
          dialect: name,
          status: answer.status,
          path: path.slice(0, 200),
        });
      }
      return answer;
    },
    api: createApi({
      apiKey: config.apiKey,
      maxBodyBytes: config.maxMessageBytes,
      maxTextLength: config.maxTextLength,
      broadcast(channel, from, text) {
        metrics.messagesIn++;
        return publish(channel, messageFrame(core, channel, from, text));
      },
      kick(name) {
        const id = ownerOf(core.registry, name);
        if (id !== undefined) {
          end(id, CloseCode.Kicked, "Removed by an operator");
          return true;
        }
        // Held on another node, maybe: that node removes it. The answer counts this node only.
        cluster?.kick(nameKey(name));
        return false;
      },
      channels: () => listChannels(core.channels),
      members: (channel) =>
        core.channels.members.has(channel) ? memberNames(core.channels, channel) : null,
      shuttingDown: () => shuttingDown,
    }),
    notReady: () => readinessChecks.filter((check) => !check.ready()).map((check) => check.name),
    metricsText: () =>
      renderMetrics(metrics, {
        connections: sessions.size,
        slots: admission.total,
        users: core.registry.owners.size,
        channels: core.channels.members.size,
        residentBytes: deps.residentBytes?.(),
        clusterUp: cluster === null ? undefined : cluster.up ? 1 : 0,
        clusterNodes: cluster?.nodes,
      }, build),
  });

  /** Remembers each upgrade it allows, so one whose socket never opens cannot keep its slot. */
  const fetch: HttpHandler = async (request, info) => {
    const answer = await handleHttp(request, info);
    if (!(answer instanceof Response)) upgrading.set(answer, clock.now());
    return answer;
  };

  return {
    fetch,
    open(socket, upgrade) {
      const reserved = upgrading.delete(upgrade);
      if (!reserved || shuttingDown) {
        // Too late: its slot went back at the deadline (counting it again could pass the caps),
        // or the server is stopping.
        if (reserved) admission.closed(upgrade.ip);
        if (shuttingDown) socket.close(CloseCode.ServiceRestart, "Server restarting");
        else socket.close(CloseCode.TryAgainLater, "The connection took too long to open");
        return { message() {}, closed() {} };
      }
      const now = clock.now();
      const dialectName = upgrade.dialect ?? NATIVE;
      const session = createSession(
        nextSessionId++,
        upgrade.ip,
        createBucket(commandRate, now),
        dialectName,
      );
      const { id } = session;
      sessions.set(id, session);
      metrics.connectionsOpened++;
      log.debug("connection opened", { conn: id, ip: upgrade.ip, dialect: dialectName });
      hub.add(id, socket, dialectName);
      openSockets++;
      let socketOpen = true;
      const dialect = dialects.get(dialectName);
      if (dialect !== undefined) {
        let own = sessionsByDialect.get(dialectName);
        if (own === undefined) sessionsByDialect.set(dialectName, own = new Map());
        own.set(id, session);
        const opened = dialect.open(dialectContext, session, {
          path: upgrade.path,
          search: upgrade.search,
        });
        dialectStates.set(id, opened.state);
        run(opened.effects, id);
      } else {
        touch(awaitingLogin, id, now);
      }
      if (dialect === undefined) {
        run([{
          kind: "reply",
          frame: {
            type: "hello",
            protocol: PROTOCOL_VERSION,
            server: "hubbub",
            version: deps.version,
          },
        }], id);
      }
      return {
        message(frame) {
          if (!sessions.has(id)) return;
          metrics.framesIn++;
          const now = clock.now();
          const tooBig = typeof frame === "string"
            ? exceedsUtf8Bytes(frame, config.maxMessageBytes)
            : frame.bytes.byteLength > config.maxMessageBytes;
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
          if (!session.busy) return process(session, frame);
          if (session.backlog.length >= MAX_BACKLOG) {
            return run([error("rate_limited", "Too many commands waiting; dropped")], id);
          }
          session.backlog.push(frame);
        },
        closed(code) {
          if (!socketOpen) return;
          socketOpen = false;
          if (sessions.has(id)) {
            bump(metrics.closes, closeLabel(code));
            log.debug("the client closed its connection", { conn: id, code });
            end(id);
          }
          if (--openSockets === 0) { for (const resolve of idleWaiters.splice(0)) resolve(); }
        },
      };
    },
    abandon(upgrade) {
      if (unreserve(upgrade, "gone")) log.debug("an upgrade did not open", { ip: upgrade.ip });
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
    async stop() {
      stopSweep();
      stopDialectTicks();
      stopAdmissionSweep();
      hub.stop();
      await cluster?.stop();
    },
    metrics,
    get connections() {
      return sessions.size;
    },
    log,
  };
}

/**
 * Closes that say something is wrong (a flood, a slow reader, a token run
 * out, failed logins, a bug): logged at warn, rate-limited per code and reason.
 */
const OPERATOR_CLOSES: ReadonlySet<number> = new Set([
  CloseCode.TooManyRequests,
  CloseCode.TryAgainLater,
  CloseCode.Unauthorized,
  CloseCode.InternalError,
]);

/** An error for the log: its stack when it has one (never a request's content). */
function describeError(error: unknown): string {
  return error instanceof Error ? error.stack ?? error.message : String(error);
}

/** The token verifier the configuration asks for, if any. */
function jwtVerifierFor(config: Config): JwtVerifier | null {
  const options = {
    issuer: config.jwtIssuer ?? undefined,
    audience: config.jwtAudience ?? undefined,
    clockSkewSeconds: config.jwtClockSkew,
  };
  if (config.jwtSecret !== null) {
    return createJwtVerifier({ ...options, source: { kind: "secret", secret: config.jwtSecret } });
  }
  if (config.jwtPublicKey !== null) {
    return createJwtVerifier({
      ...options,
      source: { kind: "publicKey", pem: config.jwtPublicKey },
    });
  }
  if (config.jwksUrl !== null) {
    return createJwtVerifier({ ...options, source: { kind: "jwks", url: config.jwksUrl } });
  }
  return null;
}
