/**
 * The wschat dialect: the protocol of the `wschat` crate (seed 000). Every
 * socket is a nameless listener of one global room, the core channel
 * `--compat-channel`; a client sends `{"usr","msg"}` (plus `"jwt"` when
 * `JWT_SECRET` is set) and every socket, the sender included, gets the
 * object back with the server's `"tim"`. On a server that requires tokens
 * a `usr` must be the name its `jwt` proves, or is shown as `~usr`. See
 * `docs/dialects/wschat.md`.
 *
 * @example
 * ```sh
 * deno task start --dialect wschat=8080
 * ```
 *
 * @module
 */
import * as jose from "jose";
import { type GlobalRoomState, openGlobalRoom } from "./_global_room.ts";
import { channelMatcher } from "../auth/jwt.ts";
import {
  type Dialect,
  type DialectContext,
  type DialectResult,
  tokensRequired,
  whenAllowed,
} from "./dialect.ts";
import { checkName, foldName, unprovenName } from "../core/names.ts";
import type { MessageFrame } from "../core/protocol.ts";
import type { Effect } from "../core/router.ts";
import type { Session } from "../core/session.ts";

const NAME = "wschat";

/** The only algorithm the original verifies tokens with. */
const JWT_ALGORITHM = "HS256";

/** The core channel a connection listens on, fixed when it opens. */
export type WschatState = GlobalRoomState;

/** A message as the client sent it, minus `jwt` and `tim`, and the token it carried. */
interface Parsed {
  /** The client's fields in their order; `usr` and `msg` are strings. */
  fields: Record<string, unknown> & { usr: string; msg: string };
  jwt: unknown;
}

/**
 * A time as wschat writes it: UTC RFC 3339 with nine fractional digits and
 * `Z`. Our clock has milliseconds, so the last six digits are zeros.
 */
export function formatTim(ms: number): string {
  return `${new Date(ms).toISOString().slice(0, -1)}000000Z`;
}

/** The wschat dialect. */
export const wschat: Dialect<WschatState> = {
  name: NAME,
  // The README names no port and the source could not be read; 8080 is the usual guess.
  defaultPort: 8080,
  path: null,

  open(ctx, session) {
    // Nameless: wschat has no login, so a listener holds no name and announces nothing.
    return openGlobalRoom(ctx, session);
  },

  receive(ctx, session, state, text) {
    const parsed = parseMessage(text, ctx.config.maxTextLength);
    if (parsed === null) return []; // dropped: wschat has no error frames
    if (!tokensRequired(ctx)) return send(ctx, session, state, parsed);
    return checkSender(ctx, session, state, parsed);
  },

  encode(frame, origin) {
    if (frame.type !== "message") return null; // wschat has no presence or other frames
    const tim = timOf(frame.ts);
    if (origin?.dialect === NAME && origin.original !== undefined) {
      return JSON.stringify({ ...origin.original, tim });
    }
    return JSON.stringify({ usr: frame.from, msg: frame.text, tim });
  },
};

/**
 * Reads a client message: a JSON object whose `usr` follows the name rules
 * and whose `msg` is a string no longer than `maxLength`; null for anything
 * else. `usr` comes back in the form every protocol shows (NFKC).
 */
function parseMessage(text: string, maxLength: number): Parsed | null {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return null;
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) return null;
  const { usr, msg, jwt } = value as Record<string, unknown>;
  if (typeof usr !== "string" || typeof msg !== "string") return null;
  // Native clients get these as a name and a text, so they keep to the native limits.
  if (usr.length > maxLength || msg.length > maxLength) return null;
  // It becomes a native `from`: the same rules as every other name, so none is invisible or spoofs.
  const name = checkName(usr);
  if (!name.ok) return null;
  // The token stays here; a client-sent `tim` is replaced by the server's, at the end.
  const fields = Object.fromEntries(
    Object.entries(value).filter(([key]) => key !== "jwt" && key !== "tim"),
  ) as Parsed["fields"];
  fields.usr = name.name;
  return { fields, jwt };
}

/** Publishes a message once the authorizer (if any) allows it; refused, it is dropped. */
function send(
  ctx: DialectContext,
  session: Session,
  state: WschatState,
  parsed: Parsed,
): DialectResult {
  const { usr, msg } = parsed.fields;
  const question = {
    command: "broadcast",
    args: { channel: state.channel, text: msg },
    name: usr,
  } as const;
  return whenAllowed(ctx, session, NAME, question, () => [publish(ctx, state, parsed)], () => []);
}

/** Publishes a message to the room, sender included, stamped now. */
function publish(ctx: DialectContext, state: WschatState, { fields }: Parsed): Effect {
  const frame: MessageFrame = {
    type: "message",
    channel: state.channel,
    from: fields.usr,
    text: fields.msg,
    id: ctx.messageId(),
    ts: new Date(ctx.now()).toISOString(),
  };
  return {
    kind: "publish",
    channel: state.channel,
    frame,
    origin: { dialect: NAME, original: fields },
  };
}

/**
 * A message on a server that requires tokens, where a `usr` others see must
 * be proven. It goes out under its `usr` when its `jwt` is a token a native
 * login would take (key, `exp`, issuer, audience; HS256 only with
 * `--jwt-secret`, as the original) whose name is `usr` and whose `channels`
 * claim, if any, allows the room. Without a `jwt` it is dropped with
 * `--jwt-secret` (the original's JWT mode), and goes out under `~usr` with
 * a public key or key set (modes the original never had). Anything else is
 * dropped, as the original drops a bad token.
 */
function checkSender(
  ctx: DialectContext,
  session: Session,
  state: WschatState,
  parsed: Parsed,
): DialectResult {
  const { jwt } = parsed;
  const secretMode = ctx.config.jwtSecret !== null;
  if (jwt === undefined || jwt === null) {
    if (secretMode) return [];
    parsed.fields.usr = unprovenName(parsed.fields.usr);
    return send(ctx, session, state, parsed);
  }
  if (typeof jwt !== "string" || (secretMode && !isHs256(jwt))) return [];
  return ctx.jwt!.verify(jwt, ctx.now()).then((verified) => {
    if (!verified.ok) return [];
    const { name, channels } = verified.identity;
    // The token proves one user: a message under another `usr` would speak for someone else.
    if (foldName(name) !== foldName(parsed.fields.usr)) return [];
    if (channels !== null && !channelMatcher(channels)(state.channel)) return [];
    return send(ctx, session, state, parsed);
  });
}

/** Whether a compact JWS's header names HS256, the one algorithm the original verifies. */
function isHs256(token: string): boolean {
  try {
    return jose.decodeProtectedHeader(token).alg === JWT_ALGORITHM;
  } catch {
    return false;
  }
}

/** The `tim` of a message stamped `ts` (an ISO time with milliseconds). */
function timOf(ts: string): string {
  const ms = Date.parse(ts);
  // Every core stamp parses; should one not, a time-shaped string beats a crash.
  return Number.isNaN(ms) ? ts : formatTim(ms);
}
