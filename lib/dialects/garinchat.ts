/**
 * The GarinChat dialect (qerplunk/GarinChat-Server): a client sends a JWT
 * (`auth`), then joins one room under a username (`join`), then sends
 * `message`s that reach the rest of the room; everyone in the room hears
 * of joins and departures with the room's head count. A room is a core
 * channel, so native clients and other dialects share it. On a server that
 * requires tokens (`--jwt-*`), the username must be the name the token
 * proves, as for a native login.
 *
 * @example
 * ```sh
 * deno task start --dialect garinchat=8080 --garinchat-jwt-secret "$JWT_DECODE_SECRET"
 * ```
 *
 * @module
 */
import { createHash } from "node:crypto";
import * as jose from "jose";
import { memberCount } from "../core/channels.ts";
import { channelMatcher, createJwtVerifier, type JwtVerifier } from "../auth/jwt.ts";
import {
  type Dialect,
  type DialectConfig,
  type DialectContext,
  type DialectResult,
  tokensRequired,
  whenAllowed,
} from "./dialect.ts";
import { checkName, foldName } from "../core/names.ts";
import { CHANNEL_PATTERN, CloseCode, type MessageFrame } from "../core/protocol.ts";
import { claimName, holderOf, releaseName, type SessionId } from "../core/registry.ts";
import { type Effect, enterChannel, exitChannel } from "../core/router.ts";
import type { Session } from "../core/session.ts";
import { exceedsUtf8Bytes } from "../core/utf8.ts";
import { decodeUtf8 } from "./_utf8.ts";

/** The dialect's name in flags, paths and origins. */
const NAME = "garinchat";

/** How long a new connection has to authenticate. */
export const AUTH_TIMEOUT_MS = 2000;

/** How long an authenticated connection has to join a room. */
export const JOIN_TIMEOUT_MS = 2000;

/** The rate limit: this many frames per window, or the connection is closed. */
export const RATE_LIMIT_FRAMES = 1;

/** The rate limit's window; a new one starts with the first frame after it ends. */
export const RATE_WINDOW_MS = 1000;

/** The shortest username and room, in UTF-8 bytes. */
export const MIN_NAME_BYTES = 3;

/** The only algorithms the original's JWT_DECODE_SECRET (our `--garinchat-jwt-secret`) can verify. */
const HMAC_ALGORITHMS = ["HS256", "HS384", "HS512"];

/** Where a connection is in GarinChat's auth → join → chat sequence. */
export type Phase = "auth" | "join" | "room" | "left";

/** One GarinChat connection. */
export interface GarinChatState {
  phase: Phase;
  /** When the running deadline started: the connect for `auth`, the auth for `join`. */
  since: number;
  /** Who its token says it is (`sub:…`, else `name:…`); null before auth or for a token naming nobody. */
  identity: string | null;
  /**
   * On a server that requires tokens, the name its token proves (`name`,
   * else `sub`): the only username it may join under. Null otherwise.
   */
  provenName: string | null;
  /** The username and core channel, once joined. */
  username: string;
  channel: string;
  /** The rate limit's current window and the frames counted in it. */
  windowStart: number;
  windowFrames: number;
}

/** The fields GarinChat reads from a frame; absent or `null` ones are "". */
interface Fields {
  type: string;
  body: string;
  username: string;
  room: string;
}

/** A parsed frame, or why it breaks the protocol. */
type Parsed =
  | { ok: true; fields: Fields; original: Record<string, unknown> }
  | { ok: false; reason: string };

/** What GarinChat sends; empty fields are left out, like Go's `omitempty`. */
interface OutFrame {
  type: "join" | "message" | "userleave";
  body?: string;
  username?: string;
  totalUsers?: number;
}

/**
 * The core channel a GarinChat room is: the room itself when it is a valid
 * channel name (so native clients can join it by name), otherwise
 * `garinchat:` and the unpadded base64url SHA-256 of its UTF-8 bytes.
 */
export function roomChannel(room: string): string {
  if (CHANNEL_PATTERN.test(room)) return room;
  return `${NAME}:${createHash("sha256").update(room).digest("base64url")}`;
}

/** The GarinChat dialect. */
export const garinchat: Dialect<GarinChatState> = {
  name: NAME,
  // The original has no default (PORT is required); its README runs it on 8080.
  defaultPort: 8080,
  path: null,

  open(ctx) {
    const now = ctx.now();
    return {
      state: {
        phase: "auth",
        since: now,
        identity: null,
        provenName: null,
        username: "",
        channel: "",
        windowStart: now,
        windowFrames: 0,
      },
      effects: [],
    };
  },

  receive(ctx, session, state, text) {
    const now = ctx.now();
    const late = overdue(state, now);
    if (late !== null) return late;
    if (!countFrame(state, now)) return [close(CloseCode.TooManyRequests, "Rate limit exceeded")];
    const parsed = parseFrame(text);
    if (!parsed.ok) return violation(parsed.reason);
    const { fields, original } = parsed;
    switch (fields.type) {
      case "auth":
        return authenticate(ctx, session, state, fields.body);
      case "join":
        return joinAllowed(ctx, session, state, fields);
      case "message":
        return messageAllowed(ctx, session, state, fields.body, original);
      case "userleave":
        return leave(ctx, session, state);
      default:
        return violation(fields.type === "" ? 'Missing "type"' : "Unknown type");
    }
  },

  receiveBinary(ctx, session, state, bytes) {
    // The original parses a binary frame's JSON like a text frame's. Bytes that are not UTF-8
    // go through the same checks as "" (deadlines, rate limit), which is invalid JSON too.
    return garinchat.receive(ctx, session, state, decodeUtf8(bytes) ?? "");
  },

  tick(ctx, sessions) {
    const now = ctx.now();
    const due: [SessionId, Effect[]][] = [];
    for (const [session, state] of sessions) {
      // The app may still list sessions that have ended (and lost their state).
      if (ctx.sessions.get(session.id) !== session) continue;
      // A frame that came in time may be waiting (behind a token check or the authorizer):
      // its own arrival is judged when it is read.
      if (session.busy || session.backlog.length > 0) continue;
      const late = overdue(state, now);
      if (late !== null) due.push([session.id, late]);
    }
    return due;
  },

  encode(frame, _origin, ctx) {
    switch (frame.type) {
      case "message":
        return encodeFrame({ type: "message", body: frame.text, username: frame.from });
      case "presence":
        return encodeFrame({
          type: frame.event === "join" ? "join" : "userleave",
          username: frame.name,
          totalUsers: ctx.memberCount(frame.channel),
        });
      default:
        return null;
    }
  },
};

/**
 * `auth`: verifies the token; the connection then has `JOIN_TIMEOUT_MS` to
 * join. On a server that requires tokens, the token proves a name as a
 * native login's does (an `exp`, a `name` or `sub` that follows the name
 * rules), the connection is closed when it expires, and its `channels`
 * claim limits the rooms, as for a native session.
 */
function authenticate(
  ctx: DialectContext,
  session: Session,
  state: GarinChatState,
  token: string,
): DialectResult {
  if (state.phase !== "auth") return violation("Already authenticated");
  // GarinChat's own secret when set; otherwise the tokens native logins take, so one identity
  // provider can serve both. Never the other way round: the secret is GarinChat's alone.
  const secret = ctx.config.garinchatJwtSecret;
  const { jwt } = ctx;
  if (secret === null && jwt === null) {
    return [close(CloseCode.Unauthorized, "No JWT secret is configured")];
  }
  if (token === "") return [close(CloseCode.Unauthorized, "Missing token")];
  // Where tokens prove native names, GarinChat's prove names by the same rules, whichever key.
  const checked = !tokensRequired(ctx)
    ? verifyWithSecret(token, secret!, ctx.now())
    : verifyLikeLogin(token, secret === null ? jwt! : proofVerifier(ctx.config, secret), ctx.now());
  return checked.then((verified) => {
    const now = ctx.now();
    // The token must be accepted, not merely sent, within the auth deadline.
    const late = overdue(state, now);
    if (late !== null) return late;
    if (!verified.ok) return [close(CloseCode.Unauthorized, verified.reason)];
    state.phase = "join";
    state.since = now;
    state.identity = verified.identity;
    if (verified.proof !== null) {
      const { name, expiresAt, channels } = verified.proof;
      state.provenName = name;
      session.tokenExpiresAt = expiresAt;
      session.channelFilter = channels === null ? null : channelMatcher(channels);
    }
    resetWindow(state, now);
    return [];
  });
}

/** What a token proves on a server that requires tokens: a name, until when, and where. */
interface Proof {
  name: string;
  expiresAt: number;
  channels: string[] | null;
}

/** A checked token: why it fails, or whom it names and (where tokens are required) what it proves. */
type Verified =
  | { ok: false; reason: string }
  | { ok: true; identity: string | null; proof: Proof | null };

const INVALID: Verified = { ok: false, reason: "Invalid token" };

/** Checks an HS256/384/512 JWT signed with `secret` whose `exp`/`nbf` (if any) hold, as the original. */
async function verifyWithSecret(token: string, secret: string, now: number): Promise<Verified> {
  try {
    const { payload } = await jose.jwtVerify(token, new TextEncoder().encode(secret), {
      algorithms: HMAC_ALGORITHMS,
      currentDate: new Date(now),
    });
    return { ok: true, identity: identityOf(payload), proof: null };
  } catch (error) {
    if (error instanceof jose.errors.JOSEError) return INVALID;
    throw error;
  }
}

/**
 * Checks a token as a native login would (with `jwt`: key, issuer,
 * audience, an `exp`, a `name` or `sub` that follows the name rules).
 */
async function verifyLikeLogin(token: string, jwt: JwtVerifier, now: number): Promise<Verified> {
  const result = await jwt.verify(token, now);
  if (!result.ok) return INVALID;
  const { identity } = result;
  const checked = checkName(identity.name);
  if (!checked.ok) return { ok: false, reason: "Token name refused" };
  // Verified, so its claims can be read as they are.
  return {
    ok: true,
    identity: identityOf(jose.decodeJwt(token)),
    proof: { name: checked.name, expiresAt: identity.expiresAt, channels: identity.channels },
  };
}

/** GarinChat's secret checked by native login rules, built once per configuration. */
const proofVerifiers = new WeakMap<DialectConfig, JwtVerifier>();

/**
 * A verifier for GarinChat's own secret with the rules of a native login
 * (HS256/384/512, an `exp`, a `name` or `sub`); hubbub's `--jwt-issuer` and
 * `--jwt-audience` describe hubbub's identity provider, not GarinChat's, so
 * they do not apply.
 */
function proofVerifier(config: DialectConfig, secret: string): JwtVerifier {
  let verifier = proofVerifiers.get(config);
  if (verifier === undefined) {
    verifier = createJwtVerifier({
      source: { kind: "secret", secret },
      clockSkewSeconds: config.jwtClockSkew,
    });
    proofVerifiers.set(config, verifier);
  }
  return verifier;
}

/**
 * Whom a verified token names: its `sub` (unique at its issuer), else its
 * `name`; null when it has neither. Tagged so that a `sub` never equals a `name`.
 */
function identityOf(payload: jose.JWTPayload): string | null {
  if (typeof payload.sub === "string" && payload.sub !== "") return `sub:${payload.sub}`;
  if (typeof payload.name === "string" && payload.name !== "") return `name:${payload.name}`;
  return null;
}

/** `join`: claims the username, enters the room's channel and announces it to all, joiner included. */
function join(
  ctx: DialectContext,
  session: Session,
  state: GarinChatState,
  fields: Fields,
  now: number,
): Effect[] {
  if (state.phase === "auth") return violation("Authenticate first");
  if (state.phase !== "join") return violation("Already joined");
  const { room } = fields;
  if (
    !exceedsUtf8Bytes(fields.username, MIN_NAME_BYTES - 1) ||
    !exceedsUtf8Bytes(room, MIN_NAME_BYTES - 1)
  ) {
    return violation(`Username and room need at least ${MIN_NAME_BYTES} bytes`);
  }
  // The original takes any string; names reach every protocol, so they keep to the native rules.
  const checked = checkName(fields.username);
  if (!checked.ok) return violation(`Invalid username: ${checked.reason}`);
  const username = checked.name;
  // Where tokens prove names, a token proves one: joining under another would pose as someone.
  if (state.provenName !== null && foldName(username) !== foldName(state.provenName)) {
    return [close(CloseCode.Unauthorized, "Username is not the token's name")];
  }
  const channel = roomChannel(room);
  if (session.channelFilter?.(channel) === false) {
    return [close(CloseCode.Unauthorized, "Room not allowed by the token")];
  }
  const replaced = earlierSelf(ctx, session, state, username);
  const leaving = replaced !== undefined && ctx.sessions.get(replaced)!.channels.has(channel)
    ? 1
    : 0;
  if (memberCount(ctx.channels, channel) - leaving >= ctx.config.maxChannelMembers) {
    return [close(CloseCode.TryAgainLater, "Room is full")];
  }
  // Its room hears the old connection leave, then the new one join.
  if (replaced !== undefined) ctx.end(replaced, CloseCode.Conflict, "Logged in elsewhere");
  // One registry for every protocol, so nobody chats under a name someone else holds.
  if (!claimName(ctx.registry, username, session.id)) {
    return [close(CloseCode.Conflict, "Username is taken")];
  }
  session.name = username;
  state.phase = "room";
  state.username = username;
  state.channel = channel;
  resetWindow(state, now);
  const effects = enterChannel(ctx.channels, session, username, channel);
  // The presence goes to the others; the joiner hears of itself here.
  const totalUsers = memberCount(ctx.channels, channel);
  effects.push({ kind: "raw", text: encodeFrame({ type: "join", username, totalUsers }) });
  return effects;
}

/**
 * The GarinChat connection holding `username` (or a name colliding with it)
 * under the same verified identity as this one, if any: the same user back
 * from the browser's back/forward cache, whose old page still holds its
 * socket open. The newer connection takes the name over. A name no token
 * proves, or another identity's, stays first come, first served. In a
 * cluster only a holder on this node can be replaced; one on another node
 * keeps the name (see docs/dialects/garinchat.md).
 */
function earlierSelf(
  ctx: DialectContext,
  session: Session,
  state: GarinChatState,
  username: string,
): SessionId | undefined {
  if (state.identity === null) return undefined;
  const holder = holderOf(ctx.registry, username);
  if (holder === undefined || holder === session.id) return undefined;
  if (ctx.sessions.get(holder)?.dialect !== NAME) return undefined;
  const held = ctx.stateOf(holder) as GarinChatState | undefined;
  return held?.identity === state.identity ? holder : undefined;
}

/**
 * `join`, once the authorizer (if any) allows its login and then its join, as it would a native
 * client's; refused, the connection closes with 1008. A join that fails its own checks is
 * answered without asking.
 */
function joinAllowed(
  ctx: DialectContext,
  session: Session,
  state: GarinChatState,
  fields: Fields,
): DialectResult {
  // When the join arrived: its rate window starts then, however long the authorizer takes.
  const now = ctx.now();
  const checked = checkName(fields.username);
  if (state.phase !== "join" || !checked.ok) return join(ctx, session, state, fields, now);
  const name = checked.name;
  const refused = (command: string) => () => [
    close(CloseCode.PolicyViolation, `The authorizer refused this ${command}`),
  ];
  const login = { command: "login", args: { name }, name: null } as const;
  const entry = { command: "join", args: { channel: roomChannel(fields.room) }, name } as const;
  return whenAllowed(ctx, session, NAME, login, () =>
    whenAllowed(
      ctx,
      session,
      NAME,
      entry,
      () => join(ctx, session, state, fields, now),
      refused("join"),
    ), refused("login"));
}

/** `message`, once the authorizer (if any) allows it; refused, it is dropped, as over limits. */
function messageAllowed(
  ctx: DialectContext,
  session: Session,
  state: GarinChatState,
  body: string,
  original: Record<string, unknown>,
): DialectResult {
  if (state.phase !== "room" || body === "" || body.length > ctx.config.maxTextLength) {
    return message(ctx, session, state, body, original);
  }
  const question = {
    command: "broadcast",
    args: { channel: state.channel, text: body },
    name: state.username,
  } as const;
  return whenAllowed(
    ctx,
    session,
    NAME,
    question,
    () => message(ctx, session, state, body, original),
    () => [],
  );
}

/** `message`: to everyone in the room but the sender; an empty body is ignored. */
function message(
  ctx: DialectContext,
  session: Session,
  state: GarinChatState,
  body: string,
  original: Record<string, unknown>,
): Effect[] {
  if (state.phase === "left") return violation("Not in a room");
  if (state.phase !== "room") return violation("Join a room first");
  if (body === "") return [];
  const max = ctx.config.maxTextLength;
  if (body.length > max) return [close(CloseCode.MessageTooBig, `Message over ${max} characters`)];
  const frame: MessageFrame = {
    type: "message",
    channel: state.channel,
    from: state.username,
    text: body,
    id: ctx.messageId(),
    ts: new Date(ctx.now()).toISOString(),
  };
  return [{
    kind: "publish",
    channel: state.channel,
    frame,
    except: session.id,
    origin: { dialect: NAME, original },
  }];
}

/** `userleave`: leaves the room and frees the username; the socket stays open. */
function leave(ctx: DialectContext, session: Session, state: GarinChatState): Effect[] {
  // Outside a room the original only logs it.
  if (state.phase !== "room") return [];
  state.phase = "left";
  const effects = exitChannel(ctx.channels, session, state.channel);
  releaseName(ctx.registry, session.id);
  session.name = null;
  return effects;
}

/** The close for a missed auth or join deadline, or null. */
function overdue(state: GarinChatState, now: number): Effect[] | null {
  if (state.phase === "auth" && now - state.since >= AUTH_TIMEOUT_MS) {
    return [close(CloseCode.LoginTimeout, "Auth timeout")];
  }
  if (state.phase === "join" && now - state.since >= JOIN_TIMEOUT_MS) {
    return [close(CloseCode.LoginTimeout, "Join timeout")];
  }
  return null;
}

/** Counts a frame against the rate limit; false when it is one too many. */
function countFrame(state: GarinChatState, now: number): boolean {
  if (now - state.windowStart > RATE_WINDOW_MS) resetWindow(state, now);
  return ++state.windowFrames <= RATE_LIMIT_FRAMES;
}

/** Starts a fresh rate-limit window, so the auth and join frames do not count against chat. */
function resetWindow(state: GarinChatState, now: number): void {
  state.windowStart = now;
  state.windowFrames = 0;
}

/**
 * Reads a frame as Go's `json.Unmarshal` into the original's struct does:
 * key names match case-insensitively (the last match wins), other keys are
 * ignored, `null` leaves a field empty, any other non-string value is an error.
 */
function parseFrame(text: string): Parsed {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return { ok: false, reason: "Invalid JSON" };
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    return { ok: false, reason: "Expected a JSON object" };
  }
  const fields: Fields = { type: "", body: "", username: "", room: "" };
  for (const [key, field] of Object.entries(value)) {
    const name = foldKey(key);
    if (!Object.hasOwn(fields, name) || field === null) continue;
    if (typeof field !== "string") return { ok: false, reason: `Field "${name}" must be a string` };
    fields[name as keyof Fields] = field;
  }
  return { ok: true, fields, original: value as Record<string, unknown> };
}

/** A key folded as Go matches struct fields: case-insensitively, `ſ` being an `s`. */
function foldKey(key: string): string {
  return key.toLowerCase().replaceAll("ſ", "s");
}

/** A GarinChat frame: keys in the order `type, body, username, totalUsers`, empty ones left out. */
function encodeFrame(frame: OutFrame): string {
  const out: Record<string, unknown> = { type: frame.type };
  if (frame.body) out.body = frame.body;
  if (frame.username) out.username = frame.username;
  if (frame.totalUsers) out.totalUsers = frame.totalUsers;
  return JSON.stringify(out);
}

/** A protocol violation: the original drops the connection, we close it with a reason. */
function violation(reason: string): Effect[] {
  return [close(CloseCode.PolicyViolation, reason)];
}

function close(code: number, reason: string): Effect {
  return { kind: "close", code, reason };
}
