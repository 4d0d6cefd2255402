/**
 * The state every part of the app shares: the core, the sessions, the hub,
 * the cluster, the limits and the counters, built once by `createApp` and
 * handed to each part, so that no part reaches into another's closure.
 *
 * @module
 */
import type { Authorizer } from "../auth/webhook.ts";
import type { JwtVerifier } from "../auth/jwt.ts";
import { createGate, type Gate } from "../auth/gate.ts";
import { type Cluster, createCluster } from "../cluster/cluster.ts";
import { createMemoryEngine, type Engine } from "../cluster/engine.ts";
import type { Config } from "../config.ts";
import type { History } from "./history_types.ts";
import { createChannels, memberCount } from "../core/channels.ts";
import type { Clock } from "../core/clock.ts";
import type { Deadlines } from "../core/deadlines.ts";
import { clientCommandSchemas, CloseCode, type ServerFrame } from "../core/protocol.ts";
import { createRegistry, type SessionId } from "../core/registry.ts";
import type { Core, Origin } from "../core/router.ts";
import type { Session } from "../core/session.ts";
import type { Rate } from "../core/token_bucket.ts";
import { createHub, type Hub, type HubFactory } from "../delivery/hub.ts";
import type { Dialect, DialectContext } from "../dialects/dialect.ts";
import { type Admission, createAdmission } from "../http/admission.ts";
import type { Upgrade } from "../http/http.ts";
import { createLogger, type Logger } from "../log.ts";
import { createMetrics, type Metrics } from "../metrics.ts";
import { authorizerFor, jwtVerifierFor } from "./auth.ts";

/** The dialect name of the native protocol. */
export const NATIVE = "native";

/**
 * The longest an allowed upgrade may take to open its socket (capped further
 * by the login timeout) before its connection slot is given back: the last
 * resort for a socket the runtime never reports on (Deno, when the client
 * resets during the handshake).
 */
const MAX_OPEN_DEADLINE_MS = 10_000;

/**
 * History commits closer together than this mean load: the next one waits for the rest of the
 * gap. In rooms of 10 at 40,000 deliveries a second, a commit held 4.6 messages, and SQLite's
 * fixed cost per commit made a stored message cost 10.5 µs of CPU; with the gap, about ten share
 * one and a message costs about 7 µs. Latency under load grows by at most the gap.
 */
export const BUSY_COMMIT_GAP_MS = 2;

/**
 * How long the history's scheduled commits are put off while the store's lock stays busy before
 * one waits for it (and, past the store's own timeout, fails): the checkpointer holds it for one
 * disk sync; only another process's writer holds it for a second.
 */
export const STORE_BUSY_GIVE_UP_MS = 1000;

/** The history until `createApp` sets the real one; using it is a bug. */
const NO_HISTORY: History = new Proxy({} as History, {
  get() {
    throw new Error("The history is used before createApp set it");
  },
});

/** What the shared state is built from (the part of `AppDeps` it needs). */
export interface ContextDeps {
  /** Time and timers (injected for tests). */
  clock: Clock;
  /** The server version announced in `hello`. */
  version: string;
  /** The hub that suits the runtime; the coalescing hub by default. */
  hub?: HubFactory;
  /**
   * Runs a task once the runtime has handled what one read of its sockets
   * brought (the runtime's `afterIo`); a microtask by default.
   */
  afterIo?: (task: () => void) => void;
  /**
   * Under load, how long after a history commit the next one waits, so that the messages of
   * several reads share it (`BUSY_COMMIT_GAP_MS`, 2 ms, by default).
   */
  commitGapMs?: number;
  /** How long commits are put off while the store's lock is busy (`STORE_BUSY_GIVE_UP_MS`). */
  storeBusyGiveUpMs?: number;
  /** The wire protocols besides the native one that sockets may speak. */
  dialects?: readonly Dialect[];
  /** What this node shares with the others of its cluster; a lone in-memory node by default. */
  engine?: Engine;
  /** This node's id in the cluster; random by default. */
  nodeId?: string;
  /** Where the app logs what operators should see; text lines at info level by default. */
  log?: Logger;
}

/** How the hub, the cluster and the dialects call back into the parts (wired by `createApp`). */
export interface ContextHooks {
  /** Ends a session, closing its socket with `code`. */
  end(id: SessionId, code: number, reason: string): void;
  /** Publishes to a channel's members on this node. */
  publishLocal(channel: string, frame: ServerFrame, except?: SessionId, origin?: Origin): number;
  /** The cluster's engine is connected again. */
  reconnected(): void;
}

/** The app's shared state. Fields that change are marked as such; the rest are set once. */
export interface AppContext {
  readonly config: Config;
  readonly clock: Clock;
  readonly version: string;
  readonly log: Logger;
  readonly metrics: Metrics;
  readonly core: Core;
  readonly sessions: Map<SessionId, Session>;
  /** The dialects by name. */
  readonly dialects: Map<string, Dialect>;
  /** Each dialect's sessions, so its timers cost nothing for anyone else. */
  readonly sessionsByDialect: Map<string, Map<SessionId, Session>>;
  readonly dialectStates: Map<SessionId, unknown>;
  readonly dialectContext: DialectContext;
  /** When the dialect frame being read arrived; its dialect's clock says this meanwhile. */
  frameArrivedAt: number | undefined;
  readonly schemas: ReturnType<typeof clientCommandSchemas>;
  readonly commandRate: Rate;
  readonly admission: Admission;
  readonly jwt: JwtVerifier | null;
  readonly authorizer: Authorizer | null;
  readonly gate: Gate;
  /** Connections that must log in, by when they started waiting. */
  readonly awaitingLogin: Deadlines;
  /** Logged-in connections by last activity; only kept when --idle-timeout is on. */
  readonly lastActive: Deadlines;
  /** Upgrades allowed whose socket has not opened (nor been abandoned) yet, by when. */
  readonly upgrading: Map<Upgrade, number>;
  readonly openDeadlineMs: number;
  readonly cluster: Cluster | null;
  /** This node's id in the cluster. */
  readonly nodeId: string;
  readonly hub: Hub;
  /** Runs a task once the runtime has handled what one read of its sockets brought. */
  readonly afterIo: (task: () => void) => void;
  /** Under load, how long after a history commit the next one waits. */
  readonly commitGapMs: number;
  /** How long commits are put off while the store's lock is busy, before one waits for it. */
  readonly storeBusyGiveUpMs: number;
  /**
   * Where channel messages are stored and numbered; set once by `createApp`
   * right after the context (it needs the parts the context wires).
   */
  history: History;
  /**
   * Joins waiting for a history read (shared logs only), by channel: what
   * was published to the channel meanwhile, per joining session, sent after
   * its `joined`.
   */
  readonly joining: Map<string, Map<SessionId, ServerFrame[]>>;
  /** Resolved once no socket is open. */
  readonly idleWaiters: (() => void)[];
  /** Changes: the id the next session gets. */
  nextSessionId: SessionId;
  /** Changes: set once by shutdown. */
  shuttingDown: boolean;
  /** Changes: sockets whose close event has not arrived yet (ended sessions included). */
  openSockets: number;
}

/** Builds the shared state for `config`; `hooks` are only called once it is built. */
export function createContext(
  config: Config,
  deps: ContextDeps,
  hooks: ContextHooks,
): AppContext {
  const { clock } = deps;
  const log = deps.log ?? createLogger({ format: "text", level: "info", now: clock.now });
  const metrics = createMetrics();
  const admission = createAdmission({
    maxConnections: config.maxConnections,
    maxConnectionsPerIp: config.maxConnectionsPerIp,
    connectRate: { perSecond: config.connectRate, burst: config.connectRate * 2 },
  });
  const sessions = new Map<SessionId, Session>();
  const served = servedDialects(config, deps.dialects ?? []);
  const dialects = new Map(served.map((dialect) => [dialect.name, dialect as Dialect]));
  const dialectStates = new Map<SessionId, unknown>();
  const jwt = jwtVerifierFor(config);
  const authorizer = authorizerFor(config, log);
  const gate = createGate({ jwt, authorizer, downCloseCode: CloseCode.TryAgainLater });
  const bootId = Math.floor(Math.random() * 36 ** 6).toString(36).padStart(6, "0");
  let messageSeq = 0;

  const core: Core = {
    registry: createRegistry(),
    channels: createChannels(),
    messageId: () => `${bootId}-${(++messageSeq).toString(36)}`,
    now: clock.now,
    limits: config,
    tokensRequired: jwt !== null,
  };

  const engine = deps.engine ?? createMemoryEngine();
  const nodeId = deps.nodeId ?? `${bootId}${Math.floor(Math.random() * 36 ** 4).toString(36)}`;
  const cluster: Cluster | null = !engine.shared ? null : createCluster({
    engine,
    clock,
    nodeId,
    leaseMs: config.nameLease * 1000,
    channels: core.channels,
    metrics,
    deliver: (channel, frame, origin, except) => hooks.publishLocal(channel, frame, except, origin),
    nameLost: (id) => hooks.end(id, CloseCode.Conflict, "Your name is held on another node now"),
    kick(key) {
      const id = core.registry.owners.get(key);
      if (id !== undefined) hooks.end(id, CloseCode.Kicked, "Removed by an operator");
    },
    log,
    reconnected: () => hooks.reconnected(),
    // As a slow consumer is: the client reconnects and rejoins with `since`, which tells the gap.
    missed(channel) {
      for (const id of [...core.channels.members.get(channel)?.keys() ?? []]) {
        if (id > 0) hooks.end(id, CloseCode.TryAgainLater, "Messages were lost on the way here");
      }
    },
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
      hooks.end(id, CloseCode.TryAgainLater, "Slow consumer");
    },
    encode(dialect, frame, origin) {
      if (dialect === NATIVE) return JSON.stringify(frame);
      return dialects.get(dialect)?.encode(frame, origin, encodeContext) ?? null;
    },
  });
  const encodeContext = { memberCount: (channel: string) => memberCount(core.channels, channel) };
  const ctx: AppContext = {
    config,
    clock,
    version: deps.version,
    log,
    metrics,
    core,
    sessions,
    dialects,
    sessionsByDialect: new Map(),
    dialectStates,
    frameArrivedAt: undefined,
    dialectContext: {
      config,
      registry: core.registry,
      channels: core.channels,
      sessions,
      now: () => ctx.frameArrivedAt ?? clock.now(),
      messageId: core.messageId,
      jwt,
      authorizer,
      stateOf: (id) => dialectStates.get(id),
      end: (id, code, reason) => hooks.end(id, code, reason),
      shuttingDown: () => ctx.shuttingDown,
    },
    schemas: clientCommandSchemas(config.maxTextLength, config.historyLimit),
    commandRate: { perSecond: config.rateLimit, burst: config.rateBurst },
    admission,
    jwt,
    authorizer,
    gate,
    awaitingLogin: new Map(),
    lastActive: new Map(),
    upgrading: new Map(),
    openDeadlineMs: Math.min(config.loginTimeout * 1000, MAX_OPEN_DEADLINE_MS),
    cluster,
    nodeId,
    hub,
    afterIo: deps.afterIo ?? queueMicrotask,
    commitGapMs: deps.commitGapMs ?? BUSY_COMMIT_GAP_MS,
    storeBusyGiveUpMs: deps.storeBusyGiveUpMs ?? STORE_BUSY_GIVE_UP_MS,
    history: NO_HISTORY,
    joining: new Map(),
    idleWaiters: [],
    nextSessionId: 1,
    shuttingDown: false,
    openSockets: 0,
  };
  return ctx;
}

/**
 * The dialects this server speaks: all it was built with, except on a server that controls
 * access (tokens or an authorizer), where only those `--dialect` names are. Most dialects carry
 * no token hubbub could check, so serving one the operator did not ask for would let anyone
 * around the server's own rules.
 */
export function servedDialects(
  config: Pick<Config, "jwtSecret" | "jwtPublicKey" | "jwksUrl" | "authorizerUrl" | "dialects">,
  dialects: readonly Dialect[],
): readonly Dialect[] {
  const controlled = config.jwtSecret !== null || config.jwtPublicKey !== null ||
    config.jwksUrl !== null || config.authorizerUrl !== null;
  return controlled ? dialects.filter((dialect) => config.dialects.has(dialect.name)) : dialects;
}
