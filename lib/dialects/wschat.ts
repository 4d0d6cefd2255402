/**
 * The wschat dialect: the protocol of the `wschat` crate (seed 000). Every
 * socket is a nameless listener of one global room, the core channel
 * `--compat-channel`; a client sends `{"usr","msg"}` (plus `"jwt"` when
 * `JWT_SECRET` is set) and every socket, the sender included, gets the
 * object back with the server's `"tim"`. See `docs/dialects/wschat.md`.
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
import type { Dialect, DialectContext } from "../dialect.ts";
import { checkName } from "../names.ts";
import type { MessageFrame } from "../protocol.ts";
import type { Effect } from "../router.ts";

const NAME = "wschat";

/** The only algorithm the original verifies tokens with. */
const JWT_ALGORITHMS = ["HS256"];

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

  receive(ctx, _session, state, text) {
    const parsed = parseMessage(text, ctx.config.maxTextLength);
    if (parsed === null) return []; // dropped: wschat has no error frames
    const secret = ctx.config.jwtSecret;
    if (secret === null) return [publish(ctx, state, parsed)];
    if (typeof parsed.jwt !== "string") return [];
    return signedWith(parsed.jwt, secret).then((valid) =>
      valid ? [publish(ctx, state, parsed)] : []
    );
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

/** Whether `token` is a compact JWS signed with HS256 and `secret`; its claims (`exp` too) are not read. */
async function signedWith(token: string, secret: string): Promise<boolean> {
  try {
    await jose.compactVerify(token, new TextEncoder().encode(secret), {
      algorithms: JWT_ALGORITHMS,
    });
    return true;
  } catch (error) {
    if (error instanceof jose.errors.JOSEError) return false;
    throw error;
  }
}

/** The `tim` of a message stamped `ts` (an ISO time with milliseconds). */
function timOf(ts: string): string {
  const ms = Date.parse(ts);
  // Every core stamp parses; should one not, a time-shaped string beats a crash.
  return Number.isNaN(ms) ? ts : formatTim(ms);
}
