/**
 * The wsify dialect: the protocol of customr/wsify (seed 002), a fork of
 * alash3al/wsify. Nameless clients join, leave and broadcast to channels
 * with `{"command","args"}`; they receive only the content. An optional
 * authorizer webhook vets each message, and `POST /broadcast?key=` lets a
 * backend publish. See `docs/dialects/wsify.md`.
 *
 * @module
 */
import { Buffer } from "node:buffer";
import { createHash } from "node:crypto";
import { memberCount } from "../core/channels.ts";
import type { Dialect, DialectContext } from "./dialect.ts";
import { readBody, SHUTDOWN_RETRY_AFTER_SECONDS } from "../http/http_util.ts";
import { decodeUtf8 } from "./_utf8.ts";
import { CHANNEL_PATTERN, CloseCode } from "../core/protocol.ts";
import { type Effect, enterChannel, exitChannel } from "../core/router.ts";
import type { Session } from "../core/session.ts";

const NAME = "wsify";

/** How often the fork sends its text ping. */
export const PING_MS = 30_000;

/** What the fork sends every `PING_MS`. */
const PING = JSON.stringify({ type: "ping" });

/** When a connection's next ping is due. */
export interface WsifyState {
  pingAt: number;
}

/** One client message as wsify's Go struct decodes it. */
interface Message {
  command: string;
  args: Record<string, unknown> | null;
}

/**
 * The core channel a wsify channel is. A name that is already a valid core
 * channel name is that channel, so wsify, native and other clients in
 * `lobby` share it; any other name is encoded (or hashed when long).
 */
export function wsifyChannel(name: string): string {
  if (CHANNEL_PATTERN.test(name)) return name;
  const encoded = Buffer.from(name, "utf8").toString("base64url");
  if (encoded.length <= 57) return `wsify::${encoded}`;
  return `wsify:::${createHash("sha256").update(name, "utf8").digest("base64url")}`;
}

/** The wsify dialect. */
export const wsify: Dialect<WsifyState> = {
  name: NAME,
  defaultPort: 3000,
  path: "/ws",
  echoesSubprotocol: true,

  open(ctx) {
    return { state: { pingAt: ctx.now() + PING_MS }, effects: [] }; // nothing is sent on open
  },

  receive(ctx, session, _state, text) {
    const message = parseMessage(text);
    if (message === "invalid") {
      return [{ kind: "close", code: CloseCode.Normal, reason: "Invalid message" }];
    }
    const { authorizer } = ctx;
    if (authorizer === null) return apply(ctx, session, message);
    return authorizer.decide(question(message), session.ip).then((decision): Effect[] => {
      // Closed while we waited: acting now would leave a ghost member behind.
      if (!ctx.sessions.has(session.id)) return [];
      if (decision === "allow") return apply(ctx, session, message);
      if (decision === "deny") return []; // dropped silently: wsify has no error frames
      return [{ kind: "close", code: CloseCode.TryAgainLater, reason: "Authorizer unavailable" }];
    });
  },

  receiveBinary(ctx, session, state, bytes) {
    // The original reads a binary frame as JSON text; bytes that are not UTF-8 are invalid JSON.
    const text = decodeUtf8(bytes);
    if (text === null) {
      return [{ kind: "close", code: CloseCode.Normal, reason: "Invalid message" }];
    }
    return wsify.receive(ctx, session, state, text);
  },

  tick(ctx, sessions) {
    const now = ctx.now();
    const due: [number, Effect[]][] = [];
    for (const [session, state] of sessions) {
      // The app may still hand us ended sessions.
      if (!ctx.sessions.has(session.id) || state === undefined || now < state.pingAt) continue;
      state.pingAt += PING_MS;
      if (state.pingAt <= now) state.pingAt = now + PING_MS; // skip missed pings
      due.push([session.id, [{ kind: "raw", text: PING }]]);
    }
    return due;
  },

  encode(frame, origin) {
    if (frame.type !== "message") return null; // no presence, acks or envelopes, ever
    // Only the content; a message from another protocol has its text as content.
    if (origin?.dialect === NAME) return JSON.stringify(origin.original?.content ?? null);
    return JSON.stringify(frame.text);
  },

  async http(ctx, request, path, publish) {
    if (path === "/ws") {
      return request.method === "GET"
        ? new Response("Bad Request: connect with a WebSocket", { status: 400 })
        : new Response("Method Not Allowed", { status: 405, headers: { allow: "GET" } });
    }
    if (path !== "/broadcast") return null;
    if (request.method !== "POST") {
      return new Response("Method Not Allowed", { status: 405, headers: { allow: "POST" } });
    }
    const key = new URL(request.url).searchParams.get("key");
    const expected = ctx.config.broadcastingKey;
    if (expected === null || key === null || !sameKey(key, expected)) {
      return new Response("Forbidden: wrong or missing key", { status: 403 });
    }
    // Sockets are closing: a 201 would acknowledge what nobody receives; the backend retries.
    if (ctx.shuttingDown()) return unavailable();
    if (!isJson(request.headers.get("content-type"))) {
      return new Response("Unsupported Media Type: send application/json", { status: 415 });
    }
    const text = await readBody(request, ctx.config.maxMessageBytes);
    if (text === null) return new Response("Content Too Large", { status: 413 });
    const body = parseObject(text);
    const channel = body === null ? null : field(body, "channel") ?? ""; // null is Go's ""
    if (typeof channel !== "string") {
      return new Response('Bad Request: expected {"channel","content"}', { status: 400 });
    }
    const name = channel.trim();
    if (ctx.shuttingDown()) return unavailable(); // shutdown began while the body was read
    if (name === "") return new Response(null, { status: 201 });
    const published = broadcast(ctx, wsifyChannel(name), field(body!, "content"));
    if (published === null) {
      const max = ctx.config.maxTextLength;
      return new Response(`Content Too Large: content over ${max} characters`, { status: 413 });
    }
    publish([published]);
    return new Response(null, { status: 201 });
  },
};

/** `POST /broadcast` during shutdown. */
function unavailable(): Response {
  return new Response("Service Unavailable: the server is restarting", {
    status: 503,
    headers: { "retry-after": String(SHUTDOWN_RETRY_AFTER_SECONDS) },
  });
}

/**
 * What the authorizer is asked about a message: the message in wsify's own form, as its
 * original asked, but with the channel as it will be acted on (trimmed: `" secret"` is the
 * channel `secret`, and must be asked about as that), and the dialect named.
 */
function question({ command, args }: Message): Record<string, unknown> {
  const channel = typeof args?.channel === "string" ? args.channel.trim() : args?.channel;
  return {
    command,
    args: args === null ? null : { ...args, ...(channel === undefined ? {} : { channel }) },
    dialect: NAME,
  };
}

/** Runs one allowed message; anything it cannot act on is ignored, as in the original. */
function apply(ctx: DialectContext, session: Session, { command, args }: Message): Effect[] {
  const name = typeof args?.channel === "string" ? args.channel.trim() : "";
  if (name === "") return [];
  const channel = wsifyChannel(name);
  switch (command) {
    case "join":
      return join(ctx, session, channel);
    case "leave":
      return exitChannel(ctx.channels, session, channel); // nothing when not joined
    case "broadcast": {
      const published = broadcast(ctx, channel, args!.content);
      return published === null ? [] : [published]; // over the limit: ignored, as wsify has no errors
    }
  }
  return [];
}

/** Joins nameless, within the core's limits (over them: ignored, as wsify has no errors). */
function join(ctx: DialectContext, session: Session, channel: string): Effect[] {
  const { maxChannelsPerConnection, maxChannelMembers } = ctx.config;
  if (
    !session.channels.has(channel) &&
    (session.channels.size >= maxChannelsPerConnection ||
      memberCount(ctx.channels, channel) >= maxChannelMembers)
  ) return [];
  return enterChannel(ctx.channels, session, "", channel);
}

/**
 * Publishes `content` to a channel; native members get its text (strings as they are). Null
 * when that text is over `--max-text-length`: the limit every protocol's messages keep to.
 */
function broadcast(ctx: DialectContext, channel: string, content: unknown): Effect | null {
  content ??= null; // a missing content is Go's nil: `null`
  const text = typeof content === "string" ? content : JSON.stringify(content);
  if (text.length > ctx.config.maxTextLength) return null;
  return {
    kind: "publish",
    channel,
    frame: {
      type: "message",
      channel,
      from: "",
      text,
      id: ctx.messageId(),
      ts: new Date(ctx.now()).toISOString(),
    },
    origin: { dialect: NAME, original: { content } },
  };
}

/**
 * A frame as Go's `json.Unmarshal` into wsify's message struct sees it:
 * "invalid" where it fails (bad JSON, not an object, a `command` that is
 * not a string, `args` that is not an object); `null` decodes to nothing.
 */
function parseMessage(text: string): Message | "invalid" {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return "invalid";
  }
  if (value === null) return { command: "", args: null };
  if (!isObject(value)) return "invalid";
  const command = field(value, "command") ?? "";
  const args = field(value, "args") ?? null;
  if (typeof command !== "string" || (args !== null && !isObject(args))) return "invalid";
  return { command, args };
}

/** A struct field as Go's decoder finds it: keys match case-insensitively, the last one wins. */
function field(object: Record<string, unknown>, name: string): unknown {
  let found: unknown;
  for (const key in object) if (key.toLowerCase() === name) found = object[key];
  return found;
}

function parseObject(text: string): Record<string, unknown> | null {
  try {
    const value = JSON.parse(text);
    return isObject(value) ? value : null;
  } catch {
    return null;
  }
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** `application/json`, with parameters such as a charset or not. */
function isJson(contentType: string | null): boolean {
  return /^application\/json\s*(;|$)/i.test(contentType?.trim() ?? "");
}

/** Compares keys in time that does not depend on where they differ, so it leaks no prefix. */
function sameKey(given: string, expected: string): boolean {
  const a = new TextEncoder().encode(given);
  const b = new TextEncoder().encode(expected);
  let difference = a.length ^ b.length;
  for (let i = 0; i < b.length; i++) difference |= (a[i] ?? 0) ^ b[i];
  return difference === 0;
}
