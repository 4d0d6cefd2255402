/**
 * The channel-path dialect: the protocol of TylerCorkill/ws-chat-server
 * (seed 001). The request path names the channel; a connection may take an
 * identity unique within its channel, which it keeps only while it answers
 * the server's 1 s heartbeats. See `docs/dialects/channel-path.md`.
 *
 * @module
 */
import { Buffer } from "node:buffer";
import { createHash } from "node:crypto";
import { holdLocalName, memberCount } from "../core/channels.ts";
import {
  type Dialect,
  type DialectContext,
  type DialectResult,
  unprovenShown,
  whenAllowed,
} from "./dialect.ts";
import { CloseCode, type MessageFrame } from "../core/protocol.ts";
import { checkName, nameKeys } from "../core/names.ts";
import { type Effect, enterChannel, exitChannel } from "../core/router.ts";
import type { Session } from "../core/session.ts";
import { decodeUtf8 } from "./_utf8.ts";

const NAME = "channel-path";

/** How often the server sends a heartbeat. */
export const HEARTBEAT_MS = 1000;

/** How long an identity lasts without a client heartbeat. */
export const IDENTITY_TTL_MS = 5000;

/** A connection's channel and identity. */
export interface ChannelPathState {
  /** The channel id as the original derives it from the request. */
  readonly id: string;
  /** The core channel that id maps to. */
  readonly channel: string;
  /** The identity; "" while there is none. */
  user: string;
  /** When the client last showed it is alive (a heartbeat or an identity). */
  aliveAt: number;
  /** When the next server heartbeat is due. */
  beatAt: number;
}

/** The channel id of a request, as the original computes it from `req.url`. */
export function channelIdOf(path: string, search: string): string {
  return `${path}${search}`.split("/").slice(3).join("/");
}

/**
 * The core channel of a channel id: `cp:` + the id when it is 0–61 of
 * `A-Z a-z 0-9 _ . -`; else `cp::` + its UTF-8 in base64url when that fits
 * 64 characters; else `cp:::` + the base64url SHA-256 of it. The colons
 * tell the three forms apart, so distinct ids never share a channel (but
 * for a SHA-256 collision).
 */
export function channelPathChannel(id: string): string {
  if (/^[A-Za-z0-9_.-]{0,61}$/.test(id)) return `cp:${id}`;
  const encoded = Buffer.from(id, "utf8").toString("base64url");
  if (encoded.length <= 60) return `cp::${encoded}`;
  return `cp:::${createHash("sha256").update(id, "utf8").digest("base64url")}`;
}

/** The channel-path dialect. */
export const channelPath: Dialect<ChannelPathState> = {
  name: NAME,
  defaultPort: 6000,
  path: null,
  echoesSubprotocol: true,

  open(ctx, session, request) {
    const id = channelIdOf(request.path, request.search);
    const channel = channelPathChannel(id);
    const now = ctx.now();
    const state = { id, channel, user: "", aliveAt: now, beatAt: now + HEARTBEAT_MS };
    // The original has no limit; ours keeps the core's.
    if (memberCount(ctx.channels, channel) >= ctx.config.maxChannelMembers) {
      return {
        state,
        effects: [{ kind: "close", code: CloseCode.TryAgainLater, reason: "Channel full" }],
      };
    }
    return {
      state,
      effects: [
        raw({ type: "connection", id }),
        ...enterChannel(ctx.channels, session, "", channel),
      ],
    };
  },

  receive(ctx, session, state, text) {
    const frame = parseObject(text);
    if (frame === null) return []; // invalid JSON and non-objects are ignored (the original crashes)
    switch (frame.type) {
      case "identity":
        return identify(ctx, session, state, frame.user);
      case "message": {
        const text = textOf(frame);
        if (text.length > ctx.config.maxTextLength) return []; // ignored, like invalid JSON
        const question = {
          command: "broadcast",
          args: { channel: state.channel, text },
          name: state.user === "" ? null : state.user,
        } as const;
        // Refused: ignored too, as the protocol has no error frames.
        return whenAllowed(ctx, session, NAME, question, () => [
          publishMessage(ctx, state, text, frame),
        ], () => []);
      }
      case "heartbeat":
        state.aliveAt = ctx.now();
        return [];
    }
    return []; // other types are ignored
  },

  receiveBinary(ctx, session, state, bytes) {
    // The original reads a binary frame as JSON text; bytes that are not UTF-8 are ignored
    // like invalid JSON.
    const text = decodeUtf8(bytes);
    return text === null ? [] : channelPath.receive(ctx, session, state, text);
  },

  tick(ctx, sessions) {
    const now = ctx.now();
    const due: [number, Effect[]][] = [];
    for (const [session, state] of sessions) {
      // The app may still hand us ended sessions; acting on them would bring back ghosts.
      if (!ctx.sessions.has(session.id) || state === undefined) continue;
      const effects: Effect[] = [];
      // Heartbeats may be waiting behind the authorizer: an identity expires only when none is.
      const waiting = session.busy || session.backlog.length > 0;
      if (state.user !== "" && now - state.aliveAt >= IDENTITY_TTL_MS && !waiting) {
        effects.push(...rename(ctx, session, state, ""));
      }
      if (now >= state.beatAt) {
        effects.push(raw({ authenticated: state.user !== "", type: "heartbeat" }));
        state.beatAt += HEARTBEAT_MS;
        if (state.beatAt <= now) state.beatAt = now + HEARTBEAT_MS; // skip missed beats
      }
      if (effects.length > 0) due.push([session.id, effects]);
    }
    return due;
  },

  encode(frame, origin) {
    if (frame.type !== "message") return null; // the original has no presence frames
    const fields = origin?.dialect === NAME
      ? origin.original
      : { type: "message", text: frame.text };
    // Fields the client sent keep their place; timestamp and user get the server's values.
    return JSON.stringify({ ...fields, timestamp: Date.parse(frame.ts), user: frame.from });
  },
};

/**
 * Takes identity `user` when it follows the name rules, no other member of
 * the channel holds it, and the authorizer (if any) allows it as a login. No
 * token proves it, so where tokens prove native names it is shown (and
 * compared) as `~user`.
 */
function identify(
  ctx: DialectContext,
  session: Session,
  state: ChannelPathState,
  user: unknown,
): DialectResult {
  // The original takes any string; names reach every protocol, so they keep to the native rules.
  const checked = typeof user === "string" ? checkName(user) : null;
  const shown = checked?.ok ? unprovenShown(ctx, checked.name) : null;
  const failed = () => [raw({ success: false, type: "identity" })];
  if (shown === null || heldByAnother(ctx, session, state.channel, shown)) return failed();
  const question = {
    command: "login",
    args: { name: shown },
    name: state.user === "" ? null : state.user,
  } as const;
  return whenAllowed(ctx, session, NAME, question, () => {
    // Another member may have taken it while the authorizer answered.
    if (heldByAnother(ctx, session, state.channel, shown)) return failed();
    state.aliveAt = ctx.now();
    return [raw({ success: true, type: "identity" }), ...rename(ctx, session, state, shown)];
  }, failed);
}

/**
 * Whether another member of `channel` goes by `user`: the same string for
 * channel-path members (as in the original), a colliding name (another
 * case, or a look-alike) for members of other protocols, so nobody can pose
 * as a native user.
 */
function heldByAnother(
  ctx: DialectContext,
  session: Session,
  channel: string,
  user: string,
): boolean {
  let keys: Set<string> | null = null;
  for (const [id, name] of ctx.channels.members.get(channel) ?? []) {
    if (id === session.id || name === "") continue;
    if (name === user) return true;
    if (ctx.sessions.get(id)?.dialect === NAME) continue;
    const own = keys ??= new Set(nameKeys(user));
    if (nameKeys(name).some((key) => own.has(key))) return true;
  }
  return false;
}

/** Re-enters the channel under `user` ("": nameless), so other protocols see who is there. */
function rename(
  ctx: DialectContext,
  session: Session,
  state: ChannelPathState,
  user: string,
): Effect[] {
  if (state.user === user) return [];
  state.user = user;
  const effects = [
    ...exitChannel(ctx.channels, session, state.channel),
    ...enterChannel(ctx.channels, session, user, state.channel),
  ];
  // Held in this channel alone: a member of another protocol cannot join under a look-alike.
  // (Leaving let go of the old one.)
  if (user !== "" && session.channels.has(state.channel)) {
    holdLocalName(ctx.channels, state.channel, session.id, nameKeys(user));
  }
  return effects;
}

/** A message's text as native clients see it: its `text`, else the JSON of it ("" when absent). */
function textOf(original: Record<string, unknown>): string {
  return typeof original.text === "string" ? original.text : JSON.stringify(original.text) ?? "";
}

/** A client message, published with the client's own object for our encoder. */
function publishMessage(
  ctx: DialectContext,
  state: ChannelPathState,
  text: string,
  original: Record<string, unknown>,
): Effect {
  const frame: MessageFrame = {
    type: "message",
    channel: state.channel,
    from: state.user,
    text,
    id: ctx.messageId(),
    ts: new Date(ctx.now()).toISOString(),
  };
  return { kind: "publish", channel: state.channel, frame, origin: { dialect: NAME, original } };
}

/** A JSON object, or null for anything else. */
function parseObject(text: string): Record<string, unknown> | null {
  try {
    const value = JSON.parse(text);
    return typeof value === "object" && value !== null && !Array.isArray(value) ? value : null;
  } catch {
    return null;
  }
}

function raw(value: unknown): Effect {
  return { kind: "raw", text: JSON.stringify(value) };
}
