/**
 * The one global room of wschat and login-chat: every connection is in it
 * from the start, as the core channel `--compat-channel`.
 *
 * @module
 */
import { memberCount } from "../core/channels.ts";
import type { DialectContext } from "./dialect.ts";
import { CloseCode } from "../core/protocol.ts";
import { type Effect, enterChannel } from "../core/router.ts";
import type { Session } from "../core/session.ts";

/** A connection's place in the global room. */
export interface GlobalRoomState {
  /** The core channel the global room is. */
  readonly channel: string;
}

/** Puts a new, nameless connection in the global room, or closes it (1013) when the room is full. */
export function openGlobalRoom(
  ctx: DialectContext,
  session: Session,
): { state: GlobalRoomState; effects: Effect[] } {
  const channel = ctx.config.compatChannel;
  if (memberCount(ctx.channels, channel) >= ctx.config.maxChannelMembers) {
    return {
      state: { channel },
      effects: [{ kind: "close", code: CloseCode.TryAgainLater, reason: "Room is full" }],
    };
  }
  return { state: { channel }, effects: enterChannel(ctx.channels, session, "", channel) };
}
