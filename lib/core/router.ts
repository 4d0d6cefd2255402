/**
 * The command router: applies one validated command to the core state and
 * says what must be sent, as effects. It does no I/O and never awaits, so
 * each command is applied atomically.
 *
 * @module
 */
import {
  type Channels,
  isMember,
  joinChannel,
  leaveChannel,
  listChannels,
  localNameTaken,
  memberCount,
  memberNames,
} from "./channels.ts";
import type { ClientCommand, ErrorCode, MessageFrame, Ref, ServerFrame } from "./protocol.ts";
import { checkName } from "./names.ts";
import { claimName, type Registry, releaseName, type SessionId } from "./registry.ts";
import type { Session } from "./session.ts";

/** What the router asks the hub to send. */
export type Effect =
  /** A frame for the session whose command this is. */
  | { kind: "reply"; frame: ServerFrame }
  /** Text already in the session's own wire format (dialects). */
  | { kind: "raw"; text: string }
  /**
   * A frame for every member of a channel, but `except` when given; each
   * member gets it in its own dialect, with `origin` for the sender's.
   */
  | {
    kind: "publish";
    channel: string;
    frame: ServerFrame;
    except?: SessionId;
    origin?: Origin;
    /** A message's idempotency key (the sender's `broadcast` key). */
    key?: string;
    /** A message whose sender wants a `sent` reply with this ref once it is stored. */
    ack?: { ref: Ref };
  }
  /**
   * The session joined `channel`: answer `joined` with the members and the
   * channel's history, `history` latest messages or, with `since`, every
   * message after it (the app reads the store).
   */
  | {
    kind: "joined";
    channel: string;
    members: string[];
    history: number;
    since?: { epoch: string; seq: number };
    ref?: Ref;
  }
  /** Answer `history`: up to `limit` messages of `channel` before `before` (or the latest). */
  | { kind: "history"; channel: string; before?: number; limit: number; ref?: Ref }
  /** Close the session's connection. */
  | { kind: "close"; code: number; reason: string }
  /** The session now receives what is published to `channel` (runtimes with native topics need this). */
  | { kind: "subscribe"; channel: string }
  /** The session no longer receives what is published to `channel`. */
  | { kind: "unsubscribe"; channel: string };

/** Where a published message came from, for encoders of the sender's own dialect. */
export interface Origin {
  readonly dialect: string;
  /** The sender's frame as it sent it, for dialects that echo extra fields back. */
  readonly original?: Readonly<Record<string, unknown>>;
}

/**
 * The commands the router applies. A `refresh` only touches the session's
 * token, which the app checks and applies itself.
 */
export type RoutedCommand = Exclude<ClientCommand, { type: "refresh" }>;

/** The shared state every session's commands act on. */
export interface Core {
  readonly registry: Registry;
  readonly channels: Channels;
  /** A new, unique message id. */
  messageId(): string;
  /** The current time in milliseconds since the epoch. */
  now(): number;
  readonly limits: {
    readonly maxChannelsPerConnection: number;
    readonly maxChannelMembers: number;
    /** The messages `joined` carries when `join` does not say (`--history-on-join`). */
    readonly historyOnJoin: number;
    /** The most messages `join` or `history` returns (`--history-limit`). */
    readonly historyLimit: number;
  };
  /** Logins need a token: then `channels` needs a login too, so strangers learn nothing. */
  readonly tokensRequired?: boolean;
}

/** Applies `command` from `session` and returns the frames to send. */
export function route(core: Core, session: Session, command: RoutedCommand): Effect[] {
  const ref = command.ref;
  switch (command.type) {
    case "ping":
      return [reply({ type: "pong", ref })];
    case "channels":
      if (core.tokensRequired && session.name === null) {
        return [error("not_logged_in", 'Log in before "channels"', ref)];
      }
      return [reply({ type: "channels", channels: listChannels(core.channels), ref })];
    case "login":
      if (command.name === undefined) return [error("bad_request", 'Missing field "name"', ref)];
      return login(core, session, command.name, ref);
  }
  if (session.name === null) {
    return [error("not_logged_in", `Log in before "${command.type}"`, ref)];
  }
  if (
    (command.type === "join" || command.type === "broadcast") &&
    session.channelFilter?.(command.channel) === false
  ) {
    return [error("forbidden", `Your token does not allow channel "${command.channel}"`, ref)];
  }
  switch (command.type) {
    case "logout": {
      const effects = leaveAll(core, session);
      releaseName(core.registry, session.id);
      session.name = null;
      effects.push(reply({ type: "logged_out", ref }));
      return effects;
    }
    case "join":
      return join(core, session, session.name, command, ref);
    case "leave": {
      if (!session.channels.has(command.channel)) {
        return [error("not_joined", `Not a member of channel "${command.channel}"`, ref)];
      }
      return [
        ...leave(core, session, command.channel),
        reply({ type: "left", channel: command.channel, ref }),
      ];
    }
    case "broadcast":
      if (!isMember(core.channels, command.channel, session.id)) {
        return [error("not_joined", `Join channel "${command.channel}" before broadcasting`, ref)];
      }
      return [{
        kind: "publish",
        channel: command.channel,
        frame: messageFrame(core, command.channel, session.name, command.text),
        key: command.key,
        ack: ref === undefined ? undefined : { ref },
      }];
    case "history":
      if (!isMember(core.channels, command.channel, session.id)) {
        return [error("not_joined", `Join channel "${command.channel}" before "history"`, ref)];
      }
      return [{
        kind: "history",
        channel: command.channel,
        before: command.before,
        limit: Math.min(command.limit ?? core.limits.historyLimit, core.limits.historyLimit),
        ref,
      }];
  }
}

/** Everything a closing connection leaves behind: its channels and its name. */
export function disconnect(core: Core, session: Session): Effect[] {
  const effects = leaveAll(core, session);
  releaseName(core.registry, session.id);
  session.name = null;
  return effects;
}

/** A new chat message, stamped with an id and the time. */
export function messageFrame(
  core: Core,
  channel: string,
  from: string,
  text: string,
): MessageFrame {
  return { type: "message", channel, from, text, id: core.messageId(), ts: isoTime(core.now()) };
}

/** The last time `isoTime` formatted: under load, many messages share a millisecond. */
let lastTime = { at: NaN, iso: "" };

/** `at` (ms since the epoch) as an ISO 8601 string. */
function isoTime(at: number): string {
  if (at !== lastTime.at) lastTime = { at, iso: new Date(at).toISOString() };
  return lastTime.iso;
}

function login(core: Core, session: Session, requested: string, ref: Ref | undefined): Effect[] {
  if (session.name !== null) {
    return [error("already_logged_in", `Already logged in as "${session.name}"`, ref)];
  }
  // Checked again whatever the schema or the gate checked: this is where a name gets claimed.
  const checked = checkName(requested);
  if (!checked.ok) {
    return [error("invalid_name", `Invalid name "${clip(requested)}": ${checked.reason}`, ref)];
  }
  const name = checked.name;
  if (!claimName(core.registry, name, session.id)) {
    return [error("name_taken", `Name "${name}" is taken`, ref)];
  }
  session.name = name;
  return [reply({ type: "welcome", name, ref })];
}

function join(
  core: Core,
  session: Session,
  name: string,
  command: Extract<RoutedCommand, { type: "join" }>,
  ref: Ref | undefined,
): Effect[] {
  const { channel } = command;
  const { maxChannelsPerConnection, maxChannelMembers, historyOnJoin, historyLimit } = core.limits;
  if (!session.channels.has(channel)) {
    if (session.channels.size >= maxChannelsPerConnection) {
      const message =
        `Cannot join channel "${channel}": limit of ${maxChannelsPerConnection} channels reached`;
      return [error("too_many_channels", message, ref)];
    }
    if (memberCount(core.channels, channel) >= maxChannelMembers) {
      const message =
        `Cannot join channel "${channel}": limit of ${maxChannelMembers} members reached`;
      return [error("channel_full", message, ref)];
    }
    // A channel-path identity there (it holds its name in that channel alone) came first.
    if (localNameTaken(core.channels, channel, session.id, name)) {
      const message = `Name "${name}" is used in channel "${channel}" by another client`;
      return [error("name_taken", message, ref)];
    }
  }
  // Joining twice is answered again but announced once.
  const effects = enterChannel(core.channels, session, name, channel);
  effects.push({
    kind: "joined",
    channel,
    members: memberNames(core.channels, channel),
    history: Math.min(command.history ?? historyOnJoin, historyLimit),
    since: command.since,
    ref,
  });
  return effects;
}

/**
 * Puts a session in a channel: membership, the subscription, and a presence
 * join for the others (none for a nameless member). Nothing when it is a
 * member already. Dialects use it too, so every protocol joins the same way.
 */
export function enterChannel(
  channels: Channels,
  session: Session,
  name: string,
  channel: string,
): Effect[] {
  if (!joinChannel(channels, channel, session.id, name)) return [];
  session.channels.add(channel);
  const effects: Effect[] = [{ kind: "subscribe", channel }];
  if (name !== "") {
    effects.push({
      kind: "publish",
      channel,
      frame: { type: "presence", channel, event: "join", name },
      except: session.id,
    });
  }
  return effects;
}

/**
 * Takes a session out of a channel: membership, the subscription, and a
 * presence leave for those left (none for a nameless member).
 */
export function exitChannel(channels: Channels, session: Session, channel: string): Effect[] {
  session.channels.delete(channel);
  const name = channels.members.get(channel)?.get(session.id);
  if (!leaveChannel(channels, channel, session.id)) return [];
  const effects: Effect[] = [{ kind: "unsubscribe", channel }];
  if (name) {
    effects.push({
      kind: "publish",
      channel,
      frame: { type: "presence", channel, event: "leave", name },
    });
  }
  return effects;
}

function leave(core: Core, session: Session, channel: string): Effect[] {
  return exitChannel(core.channels, session, channel);
}

function leaveAll(core: Core, session: Session): Effect[] {
  return [...session.channels].flatMap((channel) => leave(core, session, channel));
}

/** Shortens a name quoted in an error message. */
function clip(text: string): string {
  return text.length > 40 ? `${text.slice(0, 40)}…` : text;
}

function reply(frame: ServerFrame): Effect {
  return { kind: "reply", frame };
}

/** An error effect for the sender; exported for the parse failures the app answers. */
export function error(code: ErrorCode, message: string, ref?: Ref): Effect {
  return reply({ type: "error", code, message, ref });
}
