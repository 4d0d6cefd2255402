/**
 * The native hubbub protocol, version 1: zod schemas of every client frame,
 * the server frames, error codes and close codes.
 *
 * These schemas are the single source of truth: `PROTOCOL.md` is generated
 * from them (`deno task docs`) and a test fails when the two drift.
 *
 * @module
 */
import { z } from "zod";
import { checkName } from "./names.ts";

/** The protocol version announced in the `hello` frame. */
export const PROTOCOL_VERSION = 1;

/** Channel names: 1–64 ASCII letters, digits, `_`, `.`, `:`, `-`. */
export const CHANNEL_PATTERN = /^[A-Za-z0-9_.:-]{1,64}$/;

/** A user name as a client sends it; `checkName` (lib/core/names.ts) holds the rules. */
export const Name = z.string().refine((name) => name.length <= 256 && checkName(name).ok).meta({
  description:
    "1–32 letters, digits, `_`, `.`, `-`, no invisible or control characters; unique, compared case-insensitively after NFKC and by look-alike skeleton",
});

/** A channel name. */
export const Channel = z.string().regex(CHANNEL_PATTERN).meta({
  description: "1–64 of `A-Z a-z 0-9 _ . : -`, case-sensitive",
});

/** A signed JWT. */
export const Token = z.string().min(1).max(8192).meta({
  description: "a signed JWT (compact form, ≤8192 characters)",
});

/** The correlation id a client may attach to any command; echoed on the direct reply. */
export const Ref = z.union([z.string().max(128), z.number().finite()]).meta({
  description: "string (≤128 chars) or number; echoed on the direct reply",
});

const command = <T extends string, S extends z.ZodRawShape>(
  type: T,
  shape: S,
  description: string,
) => z.strictObject({ type: z.literal(type), ref: Ref.optional(), ...shape }).meta({ description });

/** The default of `--history-limit`: the most messages one `join` or `history` returns. */
export const DEFAULT_HISTORY_LIMIT = 100;

/** Where a reconnecting client left a channel: the epoch and the last seq it received. */
export const Since = z.strictObject({
  epoch: z.string().min(1).max(64),
  seq: z.number().int().min(0),
}).meta({
  description: "`{epoch, seq}` of the last message the client received in this channel",
});

/**
 * Builds the schemas of all client commands; `maxTextLength` bounds the text
 * of a broadcast (`too_large` beyond it), `historyLimit` the messages one
 * `join` or `history` may ask for.
 */
export function clientCommandSchemas(
  maxTextLength: number,
  historyLimit: number = DEFAULT_HISTORY_LIMIT,
) {
  const count = (what: string) =>
    z.number().int().min(0).max(historyLimit).meta({
      description: `0–${historyLimit}: ${what}`,
    });
  return {
    login: command(
      "login",
      {
        name: Name.optional(),
        token: Token.optional(),
      },
      "Take a name for this connection: `name` on an open server, `token` (whose claims name the user) when the server requires JWT",
    ),
    refresh: command(
      "refresh",
      { token: Token },
      "Replace this connection's token with a fresh one for the same user before it expires",
    ),
    logout: command("logout", {}, "Give the name back and leave every channel"),
    join: command(
      "join",
      {
        channel: Channel,
        history: count(
          "the latest messages to get in `joined` (default `--history-on-join`)",
        ).optional(),
        since: Since.optional(),
      },
      "Join a channel, creating it if needed; `joined` carries its latest messages, or with `since` every message after it",
    ),
    leave: command("leave", { channel: Channel }, "Leave a channel"),
    broadcast: command(
      "broadcast",
      {
        channel: Channel,
        text: z.string().min(1).max(maxTextLength).meta({
          description: `1–${maxTextLength} UTF-16 code units`,
        }),
        key: z.string().min(1).max(64).optional().meta({
          description:
            "1–64 characters, client-chosen: a second broadcast with the same key from the same user into the same channel is not published again",
        }),
      },
      "Send a message to every member of a channel, the sender included; with `ref`, a `sent` reply says it is stored",
    ),
    history: command(
      "history",
      {
        channel: Channel,
        before: z.number().int().min(1).optional().meta({
          description: "a seq: only messages before it (default: the latest)",
        }),
        limit: count(`the most messages to return (default ${historyLimit})`).optional(),
      },
      "Load older messages of a channel you are a member of, oldest first",
    ),
    channels: command(
      "channels",
      {},
      "List the channels and their member counts (after a login when the server requires tokens)",
    ),
    ping: command("ping", {}, "Ask for a pong"),
  } as const;
}

/** The schemas for the default text limit; used for types and documentation. */
export type ClientCommandSchemas = ReturnType<typeof clientCommandSchemas>;

/** One command a client may send. */
export type ClientCommand = z.infer<ClientCommandSchemas[keyof ClientCommandSchemas]>;

/** The `type` of every client command. */
export type CommandType = ClientCommand["type"];

/** Every error code the server may put in an `error` frame. */
export const ERROR_CODES = {
  bad_json: "The frame is not valid JSON",
  bad_request: "The frame is JSON but not a valid command (shape, field types, unknown fields)",
  unknown_type: "The `type` is not a command this server knows",
  not_logged_in: "The command needs a login first",
  already_logged_in: "This connection holds a name already; log out first",
  name_taken: "Someone else holds that name (on `join`: a channel-path identity in that channel)",
  invalid_name: "The name breaks the name rules",
  invalid_channel: "The channel name breaks the channel rules",
  not_joined: "The command needs membership of the channel",
  too_large: "A field is longer than the server allows",
  rate_limited:
    "Too many commands too fast; this one was dropped. Slow down or be disconnected (4429)",
  too_many_channels: "This connection is in as many channels as the server allows",
  channel_full: "The channel has as many members as the server allows",
  unauthorized:
    "The token is missing, malformed, badly signed, or fails an issuer/audience/claim check",
  token_expired: "The token has expired (or is not valid yet); get a fresh one",
  forbidden: "The token's `channels` claim or the authorizer does not allow this",
  unavailable:
    "A store cannot be reached right now: in a cluster, the shared name store (no name can be claimed), or the history store (a `history` cannot be read, a `broadcast` was delivered live but not stored); try again",
} as const;

/** An error code of an `error` frame. */
export type ErrorCode = keyof typeof ERROR_CODES;

/**
 * The close codes hubbub uses, by name. 1xxx are the RFC 6455 codes; 4xxx
 * mirror HTTP statuses (4400 Bad Request, 4429 Too Many Requests, …).
 */
export const CloseCode = {
  /** Normal closure: the client or server is done. */
  Normal: 1000,
  /** The server is shutting down for good. */
  GoingAway: 1001,
  /** A kind of frame this protocol does not take (dialects: binary). */
  UnsupportedData: 1003,
  /** A dialect client broke its protocol's rules (wrong order, missing fields, …). */
  PolicyViolation: 1008,
  /** A frame larger than `--max-message-bytes`. */
  MessageTooBig: 1009,
  /** A bug on the server; the process lives on, this socket is closed. */
  InternalError: 1011,
  /** The server is restarting: reconnect with back-off. */
  ServiceRestart: 1012,
  /** The server is overloaded or the client reads too slowly: try again later. */
  TryAgainLater: 1013,
  /** No login arrived in time. */
  LoginTimeout: 4408,
  /** A logged-in connection sent nothing for too long. */
  IdleTimeout: 4410,
  /** The client kept sending after `rate_limited` errors. */
  TooManyRequests: 4429,
  /**
   * The name asked for is held by someone else (dialects whose originals
   * close on it), or, in a cluster, another node holds this session's name
   * after the node lost and regained Redis.
   */
  Conflict: 4409,
  /** The token expired, or logins kept failing: get a fresh token, then reconnect. */
  Unauthorized: 4401,
  /** An operator removed this user (POST /api/disconnect). */
  Kicked: 4403,
} as const;

/** What each close code tells the client to do. */
export const CLOSE_CODE_MEANINGS: Record<CloseCode, string> = {
  1000: "Normal closure",
  1001: "The server is going away for good",
  1003: "A dialect client sent a kind of frame its protocol does not take",
  1008: "A dialect client broke its protocol's rules; the reason says which",
  1009: "A message was larger than `--max-message-bytes`; do not resend it",
  1011: "A server bug hit this connection; reconnect",
  1012: "The server is restarting; reconnect with back-off",
  1013: "Overloaded, or this client read too slowly; reconnect later",
  4408: "No login within `--login-timeout`; reconnect when the user is ready to log in",
  4410: "Logged in but silent for `--idle-timeout`; reconnect when the user is back",
  4409:
    "A dialect client asked for a name someone else holds, or (cluster) another node holds this session's name now",
  4429: "Kept flooding after `rate_limited` errors; reconnect later, and slower",
  4401: "The token expired, or 5 logins in a row failed; get a fresh token before reconnecting",
  4403: "Removed by an operator; do not reconnect by yourself",
};

/** A close code from {@linkcode CloseCode}. */
export type CloseCode = typeof CloseCode[keyof typeof CloseCode];

/** Every frame the server sends. */
export type ServerFrame =
  /** `node`: in a cluster (a shared engine), the node that serves this connection. */
  | { type: "hello"; protocol: number; server: "hubbub"; version: string; node?: string }
  | { type: "welcome"; name: string; ref?: Ref }
  | { type: "refreshed"; expires: string; ref?: Ref }
  | { type: "logged_out"; ref?: Ref }
  | JoinedFrame
  | { type: "left"; channel: string; ref?: Ref }
  | { type: "presence"; channel: string; event: "join" | "leave"; name: string }
  | MessageFrame
  | { type: "channels"; channels: { name: string; members: number }[]; ref?: Ref }
  | { type: "pong"; ref?: Ref }
  | HistoryFrame
  | SentFrame
  | ErrorFrame;

/** The answer to `join`: the members, and the channel's history as the join found it. */
export type JoinedFrame = {
  type: "joined";
  channel: string;
  members: string[];
  /** The channel history's epoch ("" when the history cannot be read right now). */
  epoch: string;
  /** The channel's latest seq when the join took effect (0 for none). */
  seq: number;
  /** Oldest first. */
  messages: MessageFrame[];
  /** Only with `since`: whether `messages` holds every message after it. */
  recovered?: boolean;
  ref?: Ref;
};

/** The answer to `history`. */
export type HistoryFrame = {
  type: "history";
  channel: string;
  epoch: string;
  messages: MessageFrame[];
  ref?: Ref;
};

/** Says a `broadcast` with a `ref` is stored (or was already, under its key). */
export type SentFrame = { type: "sent"; channel: string; id: string; seq: number; ref: Ref };

/** A chat message as every member of a channel receives it. */
export type MessageFrame = {
  type: "message";
  channel: string;
  from: string;
  text: string;
  id: string;
  ts: string;
  /**
   * The channel's offset: 1, 2, 3, … in the order every member receives the
   * channel's messages. Absent when the message was delivered live but could
   * not be stored.
   */
  seq?: number;
};

/** An error, sent to the client whose command failed. */
export type ErrorFrame = { type: "error"; code: ErrorCode; message: string; ref?: Ref };

/** A correlation id. */
export type Ref = z.infer<typeof Ref>;
