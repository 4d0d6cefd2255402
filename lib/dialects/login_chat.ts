/**
 * The login-chat dialect: the protocol of gonzofish/ws-chat-server (seed
 * 004). Every socket listens to one global room, the core channel
 * `--compat-channel`; a client logs in under a name (unique server-wide,
 * shared with every protocol), then its `chat` frames reach every socket,
 * the sender included. Replies are `{"type","username","value"}` objects.
 * See `docs/dialects/login-chat.md`.
 *
 * @example
 * ```sh
 * deno task start --dialect login-chat=4567
 * ```
 *
 * @module
 */
import { type GlobalRoomState, openGlobalRoom } from "./_global_room.ts";
import {
  type Dialect,
  type DialectContext,
  type DialectResult,
  unprovenShown,
  whenAllowed,
} from "./dialect.ts";
import type { MessageFrame } from "../core/protocol.ts";
import { checkName, foldName } from "../core/names.ts";
import { claimName, releaseName } from "../core/registry.ts";
import { type Effect, enterChannel, exitChannel } from "../core/router.ts";
import type { Session } from "../core/session.ts";

const NAME = "login-chat";

/** The `value` of each `error` frame, by cause. */
export const ERRORS = {
  invalidJson: "Invalid JSON",
  notAnObject: "Expected a JSON object",
  numberOutOfRange: "Number out of range",
  unknownType: "Unknown message type",
  notLoggedIn: "Log in before chatting",
  tooLong: "Message too long",
  forbidden: "Not allowed",
} as const;

/** The core channel a connection listens on, fixed when it opens. */
export type LoginChatState = GlobalRoomState;

/** A client frame: its fields as sent (any JSON), or why it cannot be read. */
type Parsed =
  | { ok: true; frame: Record<string, unknown> }
  | { ok: false; reason: string };

/** The login-chat dialect. */
export const loginChat: Dialect<LoginChatState> = {
  name: NAME,
  defaultPort: 4567,
  path: null,

  open(ctx, session) {
    // Nameless until it logs in: every socket hears every chat, logged in or not.
    return openGlobalRoom(ctx, session);
  },

  receive(ctx, session, state, text) {
    const parsed = parseFrame(text);
    if (!parsed.ok) return [reply("error", null, parsed.reason)];
    const { frame } = parsed;
    const username = frame.username;
    switch (frame.type) {
      case "login":
        return login(ctx, session, state, username);
      case "logout":
        return logout(ctx, session, state, username);
      case "chat":
        return chat(ctx, session, state, username, frame);
      default:
        return [reply("error", username, ERRORS.unknownType)];
    }
  },

  encode(frame, origin) {
    if (frame.type !== "message") return null; // the original has no presence frames
    // A login-chat value may be any JSON; the other protocols carry text.
    const value = origin?.dialect === NAME && origin.original !== undefined
      ? origin.original.value ?? null
      : frame.text;
    return encodeFrame("chat", frame.from, value);
  },
};

/**
 * `login`: claims the name server-wide, once the authorizer (if any) allows it; a connection
 * holds one name, so a new one replaces it.
 */
function login(
  ctx: DialectContext,
  session: Session,
  state: LoginChatState,
  username: unknown,
): DialectResult {
  const failure = [reply("login_failure", username)];
  if (typeof username !== "string") return failure;
  // The original takes any string; names reach every protocol, so they keep to the native rules.
  const checked = checkName(username);
  if (!checked.ok) return failure;
  // No token proves it: where tokens prove native names, others see it as `~name`.
  const name = unprovenShown(ctx, checked.name);
  const previous = session.name;
  // Like the original, a name is taken even when it is this connection's own.
  if (previous !== null && foldName(previous) === foldName(name)) return failure;
  const question = { command: "login", args: { name }, name: previous } as const;
  return whenAllowed(ctx, session, NAME, question, () => {
    // (The connection's name cannot have changed meanwhile: its frames wait their turn.)
    releaseName(ctx.registry, session.id);
    if (!claimName(ctx.registry, name, session.id)) {
      // Synchronous, so nobody can have taken the old name meanwhile.
      if (previous !== null) claimName(ctx.registry, previous, session.id);
      return failure;
    }
    session.name = name;
    return [...rename(ctx, session, state, name), reply("logged_in", username)];
  }, () => failure);
}

/** `logout`: frees the connection's own name only; the answer is the same either way. */
function logout(
  ctx: DialectContext,
  session: Session,
  state: LoginChatState,
  username: unknown,
): Effect[] {
  const effects: Effect[] = [];
  if (
    session.name !== null && typeof username === "string" &&
    foldName(unprovenShown(ctx, username)) === foldName(session.name)
  ) {
    releaseName(ctx.registry, session.id);
    session.name = null;
    effects.push(...rename(ctx, session, state, ""));
  }
  effects.push(reply("logged_out", username, true));
  return effects;
}

/**
 * `chat`: to every socket of the room, the sender included, under the connection's own name,
 * once the authorizer (if any) allows it.
 */
function chat(
  ctx: DialectContext,
  session: Session,
  state: LoginChatState,
  username: unknown,
  original: Record<string, unknown>,
): DialectResult {
  const from = session.name;
  if (from === null) return [reply("error", username, ERRORS.notLoggedIn)];
  const { value } = original;
  const text = typeof value === "string" ? value : value == null ? "" : JSON.stringify(value);
  if (text.length > ctx.config.maxTextLength) return [reply("error", username, ERRORS.tooLong)];
  const question = {
    command: "broadcast",
    args: { channel: state.channel, text },
    name: from,
  } as const;
  return whenAllowed(ctx, session, NAME, question, () => {
    const frame: MessageFrame = {
      type: "message",
      channel: state.channel,
      from,
      text,
      id: ctx.messageId(),
      ts: new Date(ctx.now()).toISOString(),
    };
    return [{
      kind: "publish",
      channel: state.channel,
      frame,
      origin: { dialect: NAME, original: { value } },
    }];
  }, () => [reply("error", username, ERRORS.forbidden)]);
}

/**
 * Re-enters the room under `name` ("" for nameless), so native members see
 * a login as a presence join and list the name, and a logout as a leave.
 */
function rename(
  ctx: DialectContext,
  session: Session,
  state: LoginChatState,
  name: string,
): Effect[] {
  return [
    ...exitChannel(ctx.channels, session, state.channel),
    ...enterChannel(ctx.channels, session, name, state.channel),
  ];
}

/**
 * Reads a frame: a JSON object holding only finite numbers (the original
 * dies on a number beyond double range, which it cannot write back out).
 */
function parseFrame(text: string): Parsed {
  let overflow = false;
  let value: unknown;
  try {
    value = JSON.parse(text, (_key, field) => {
      if (typeof field === "number" && !Number.isFinite(field)) overflow = true;
      return field;
    });
  } catch {
    return { ok: false, reason: ERRORS.invalidJson };
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    return { ok: false, reason: ERRORS.notAnObject };
  }
  if (overflow) return { ok: false, reason: ERRORS.numberOutOfRange };
  return { ok: true, frame: value as Record<string, unknown> };
}

/** A reply to the sender only. */
function reply(type: string, username: unknown, value?: unknown): Effect {
  return { kind: "raw", text: encodeFrame(type, username, value) };
}

/** A frame with keys in the order `type, username, value`; an absent username is `null`, an absent value left out. */
function encodeFrame(type: string, username: unknown, value?: unknown): string {
  const frame: Record<string, unknown> = { type, username: username ?? null };
  if (value !== undefined) frame.value = value;
  return JSON.stringify(frame);
}
