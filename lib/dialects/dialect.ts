/**
 * The seam for wire protocols other than the native one. A dialect is a
 * codec plus a few policies over the same core: it turns its clients'
 * frames into effects on the shared channels and login registry, and
 * encodes what the core publishes into its clients' format. The core does
 * not know any dialect by name; adding one touches only `lib/dialects/`.
 *
 * @module
 */
import type { JwtVerifier } from "../auth/jwt.ts";
import type { Authorizer } from "../auth/webhook.ts";
import type { Channels } from "../core/channels.ts";
import { CloseCode, type ServerFrame } from "../core/protocol.ts";
import type { Registry, SessionId } from "../core/registry.ts";
import type { Effect, Origin } from "../core/router.ts";
import type { Session } from "../core/session.ts";
import { unprovenName } from "../core/names.ts";

/** Where and how a dialect's connection came in. */
export interface DialectRequest {
  /** The request path, e.g. `/api/chat/room1` (after any `/compat/<name>` prefix). */
  path: string;
  /** The query string with its `?`, or "". */
  search: string;
}

/**
 * The settings dialects read: a slice of the server's configuration, so that
 * the seam depends on no more of it than it uses (and the configuration does
 * not depend on the seam).
 */
export interface DialectConfig {
  readonly maxMessageBytes: number;
  readonly maxTextLength: number;
  readonly maxChannelsPerConnection: number;
  readonly maxChannelMembers: number;
  /** Set when native logins require HS256/384/512 tokens. */
  readonly jwtSecret: string | null;
  /** Seconds of clock difference tolerated on `exp` and `nbf`. */
  readonly jwtClockSkew: number;
  /** The channel that the single global room of wschat and login-chat clients is. */
  readonly compatChannel: string;
  /** The key of wsify's `POST /broadcast?key=`; null: that endpoint is off. */
  readonly broadcastingKey: string | null;
  /** HS256/384/512 secret of GarinChat's `auth` tokens; null: GarinChat uses hubbub's JWT settings. */
  readonly garinchatJwtSecret: string | null;
}

/** What a dialect may read and change of the core, and the shared services. */
export interface DialectContext {
  readonly config: DialectConfig;
  readonly registry: Registry;
  readonly channels: Channels;
  readonly sessions: ReadonlyMap<SessionId, Session>;
  /** The current time in milliseconds since the epoch. */
  now(): number;
  /** A new, unique message id. */
  messageId(): string;
  /** Verifies tokens as configured for the native protocol (`--jwt-*`); null without JWT. */
  readonly jwt: JwtVerifier | null;
  /** The authorizer webhook (`--authorizer-url`); null without one. */
  readonly authorizer: Authorizer | null;
  /** The dialect state of session `id` (check its `dialect` first); undefined once it has ended. */
  stateOf(id: SessionId): unknown;
  /**
   * Ends another session at once: its socket closes with `code` and
   * `reason`, and it leaves its channels (with presence) and frees its name.
   */
  end(id: SessionId, code: number, reason: string): void;
  /** Whether the server is shutting down (an HTTP route that publishes refuses with 503 then). */
  shuttingDown(): boolean;
}

/** The outcome of one inbound frame: effects now, or later (after a token check or webhook). */
export type DialectResult = Effect[] | Promise<Effect[]>;

/** One wire protocol. */
export interface Dialect<State = unknown> {
  /** The name used in flags (`--dialect NAME=PORT`), paths (`/compat/NAME/`) and topics. */
  readonly name: string;
  /** The port the original server listened on by default. */
  readonly defaultPort: number;
  /**
   * Which paths of its own listener are WebSocket endpoints; null: any path.
   * (`/compat/NAME/…` on the main port is always one.)
   */
  readonly path: string | null;
  /**
   * Whether the handshake answers with the first WebSocket subprotocol the
   * client offers, as the original did (its clients fail without one);
   * otherwise hubbub chooses none.
   */
  readonly echoesSubprotocol?: boolean;
  /** Per-connection state, created on open. */
  open(
    ctx: DialectContext,
    session: Session,
    request: DialectRequest,
  ): { state: State; effects: Effect[] };
  /** One inbound text frame. Never throws on bad input: ignores it, answers it, or closes. */
  receive(ctx: DialectContext, session: Session, state: State, text: string): DialectResult;
  /** One inbound binary frame; default: ignored. */
  receiveBinary?(
    ctx: DialectContext,
    session: Session,
    state: State,
    bytes: Uint8Array,
  ): DialectResult;
  /** Called about every 250 ms with the sessions of this dialect only, for its timers. */
  tick?(ctx: DialectContext, sessions: [Session, State][]): [SessionId, Effect[]][];
  /**
   * Encodes what the core publishes for this dialect's clients; null: they
   * do not get it. Called once per publication per dialect, not per recipient.
   */
  encode(frame: ServerFrame, origin: Origin | undefined, ctx: EncodeContext): string | null;
  /**
   * Plain HTTP on the dialect's own listener or under `/compat/NAME/` (e.g.
   * wsify's `POST /broadcast`); null: not one of its routes. `publish` runs
   * publish effects as if a client had sent them.
   */
  http?(
    ctx: DialectContext,
    request: Request,
    path: string,
    publish: (effects: Effect[]) => void,
  ): Promise<Response | null>;
}

/** What an encoder may know beyond the frame. */
export interface EncodeContext {
  /** Members of a channel right now. */
  memberCount(channel: string): number;
}

/**
 * Whether the server requires tokens (`--jwt-secret`, `--jwt-public-key`
 * or `--jwks-url`): native names are then proven by tokens, so a name a
 * dialect shows must be proven the same way or marked as unproven.
 */
export function tokensRequired(ctx: DialectContext): boolean {
  return ctx.jwt !== null;
}

/**
 * The name others see for `name` (one that passed `checkName`) when no
 * token proves it: `name` itself on a server that requires no tokens,
 * else marked (`~alice`), so it never passes for a token-holding user.
 */
export function unprovenShown(ctx: DialectContext, name: string): string {
  return tokensRequired(ctx) ? unprovenName(name) : name;
}

/** A dialect's action, put to the authorizer as the native command that does the same would be. */
export interface Question {
  command: "login" | "join" | "broadcast";
  args: Record<string, unknown>;
  /** Who asks: the name others see it under, or null when nameless. */
  name: string | null;
}

/**
 * `allowed()` once the authorizer (`--authorizer-url`), if there is one, allows `question`,
 * asked in the native body's shape with the dialect named: the same rules for every protocol.
 * A refusal gives `refused()`; an authorizer that is down closes the connection with 1013, as
 * for a native client, so that it comes back later.
 */
export function whenAllowed(
  ctx: DialectContext,
  session: Session,
  dialect: string,
  question: Question,
  allowed: () => DialectResult,
  refused: () => Effect[],
): DialectResult {
  const { authorizer } = ctx;
  if (authorizer === null) return allowed();
  return authorizer.decide({ ...question, dialect }, session.ip).then((decision) => {
    // Closed while we waited: acting now would leave a ghost member or name behind.
    if (!ctx.sessions.has(session.id)) return [];
    if (decision === "allow") return allowed();
    if (decision === "deny") return refused();
    return [{ kind: "close", code: CloseCode.TryAgainLater, reason: "Authorizer unavailable" }];
  });
}
