/**
 * The parts of hubbub's native protocol (version 1, PROTOCOL.md) that the
 * client speaks. A copy, not an import of the server's `lib/core/protocol.ts`:
 * the client is packed and shipped on its own, with no dependency.
 *
 * @module
 */

/** What a command carries so that its direct reply (or error) can be matched to it. */
export type Ref = string | number;

/** A channel's position in its history: the epoch and the last seq received in it. */
export interface Position {
  epoch: string;
  seq: number;
}

/** A chat message as every member of a channel receives it. */
export interface Message {
  channel: string;
  from: string;
  text: string;
  /** Unique for the server's lifetime. */
  id: string;
  /** When the server accepted it, ISO 8601 in UTC. */
  ts: string;
  /**
   * The channel's offset, 1, 2, 3, …; absent when the server delivered the
   * message live but could not store it (it cannot be recovered later).
   */
  seq?: number;
}

/** A channel and its member count, as `channels` lists it. */
export interface ChannelInfo {
  name: string;
  members: number;
}

/** Every command the client sends. */
export type Command =
  | { type: "login"; name?: string; token?: string; ref?: Ref }
  | {
    type: "join";
    channel: string;
    history?: number;
    since?: Position;
    ref?: Ref;
  }
  | { type: "leave"; channel: string; ref?: Ref }
  | { type: "broadcast"; channel: string; text: string; key?: string; ref?: Ref }
  | { type: "history"; channel: string; before?: number; limit?: number; ref?: Ref }
  | { type: "channels"; ref?: Ref }
  | { type: "ping"; ref?: Ref }
  | { type: "logout"; ref?: Ref };

/** The answer to `join`. */
export interface JoinedFrame {
  type: "joined";
  channel: string;
  members: string[];
  /** The history's epoch; "" when the server cannot read the history right now. */
  epoch: string;
  /** The channel's latest seq when the join took effect (0 for none). */
  seq: number;
  /** Oldest first. */
  messages: Message[];
  /** Only with `since`: whether `messages` holds every message after it. */
  recovered?: boolean;
  ref?: Ref;
}

/** An error caused by a command (with its `ref`), or by the connection. */
export interface ErrorFrame {
  type: "error";
  code: string;
  message: string;
  ref?: Ref;
}

/** Every frame the server sends that the client reads; others are ignored. */
export type ServerFrame =
  | { type: "hello"; protocol: number; server: string; version: string }
  | { type: "welcome"; name: string; ref?: Ref }
  | { type: "logged_out"; ref?: Ref }
  | JoinedFrame
  | { type: "left"; channel: string; ref?: Ref }
  | { type: "presence"; channel: string; event: "join" | "leave"; name: string }
  | ({ type: "message" } & Message)
  | { type: "history"; channel: string; epoch: string; messages: Message[]; ref?: Ref }
  | { type: "sent"; channel: string; id: string; seq: number; ref: Ref }
  | { type: "channels"; channels: ChannelInfo[]; ref?: Ref }
  | { type: "pong"; ref?: Ref }
  | ErrorFrame;

/**
 * The frames in one WebSocket message: the server coalesces what it sends in
 * one turn into one message, JSON objects separated by `\n` (JSON never holds
 * a raw newline). Lines that are not JSON objects with a string `type` are
 * left out.
 */
export function parseFrames(data: string): ServerFrame[] {
  const frames: ServerFrame[] = [];
  for (const line of data.split("\n")) {
    if (line.trim() === "") continue;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch {
      continue;
    }
    if (
      typeof value === "object" && value !== null && typeof Reflect.get(value, "type") === "string"
    ) {
      frames.push(value as ServerFrame);
    }
  }
  return frames;
}

/**
 * Close codes after which the client does not reconnect by itself: the
 * server or an operator ended the session on purpose, or reconnecting would
 * repeat what caused the close. Every other code (1001, 1006, 1011, 1012,
 * 1013, 4429, …) is a reason to reconnect with back-off. 4401 is final only
 * for a client without a token function to ask for a fresh token.
 */
export const FINAL_CLOSE_CODES: ReadonlyMap<number, string> = new Map([
  [1000, "The server closed the connection"],
  [1003, "The server does not take this kind of frame"],
  [1008, "The server saw a protocol violation"],
  [1009, "A message was larger than the server allows"],
  [4401, "The token expired, or logins kept failing"],
  [4403, "Removed by an operator"],
  [4408, "No login in time"],
  [4409, "Another connection holds this name now"],
  [4410, "Idle for too long"],
]);
