/**
 * Channel membership: channel → members, in join order. A channel exists
 * while it has members: created on first join, deleted when the last leaves.
 *
 * @module
 */
import { nameKeys } from "./names.ts";
import type { SessionId } from "./registry.ts";

/** Every channel and who is in it. */
export interface Channels {
  /** Channel name → member session → the name it joined under. */
  readonly members: Map<string, Map<SessionId, string>>;
  /**
   * Names held in one channel only, outside the server-wide registry (channel-path identities):
   * channel → name key (`nameKeys`) → the member holding it. Nobody joins a channel under a name
   * that collides with one of these; a member's go when it leaves.
   */
  readonly localNames: Map<string, Map<string, SessionId>>;
  /**
   * Called before any member joins or leaves. The app delivers the messages
   * still waiting to be stored here, so that none reaches a member who
   * joined after it was sent, and none misses one who left after.
   */
  beforeChange?: () => void;
}

/** A channel and its member count, as the channel list shows it. */
export interface ChannelSummary {
  name: string;
  members: number;
}

/** Creates an empty channel map. */
export function createChannels(): Channels {
  return { members: new Map(), localNames: new Map() };
}

/** Adds a member; false when it was a member already. */
export function joinChannel(
  channels: Channels,
  channel: string,
  session: SessionId,
  name: string,
): boolean {
  if (channels.members.get(channel)?.has(session)) return false;
  channels.beforeChange?.();
  // Read after the hook: what it delivers may not change membership, but nothing relies on that.
  let members = channels.members.get(channel);
  if (members === undefined) {
    members = new Map();
    channels.members.set(channel, members);
  }
  members.set(session, name);
  return true;
}

/** Removes a member; false when it was not one. Deletes the channel once empty. */
export function leaveChannel(channels: Channels, channel: string, session: SessionId): boolean {
  if (!channels.members.get(channel)?.has(session)) return false;
  channels.beforeChange?.();
  const members = channels.members.get(channel);
  if (members === undefined || !members.delete(session)) return false;
  if (members.size === 0) channels.members.delete(channel);
  holdLocalName(channels, channel, session, []);
  return true;
}

/** Makes `keys` the names `session` holds in `channel` alone (none: `[]`), in place of its others. */
export function holdLocalName(
  channels: Channels,
  channel: string,
  session: SessionId,
  keys: readonly string[],
): void {
  let held = channels.localNames.get(channel);
  if (held === undefined && keys.length === 0) return;
  held ??= new Map();
  for (const [key, holder] of held) if (holder === session) held.delete(key);
  for (const key of keys) held.set(key, session);
  if (held.size === 0) channels.localNames.delete(channel);
  else channels.localNames.set(channel, held);
}

/** Whether another member holds a name in `channel` alone that collides with `name`. */
export function localNameTaken(
  channels: Channels,
  channel: string,
  session: SessionId,
  name: string,
): boolean {
  const held = channels.localNames.get(channel);
  if (held === undefined || name === "") return false; // (most channels: no name keys to make)
  return nameKeys(name).some((key) => held.has(key) && held.get(key) !== session);
}

/** Whether `session` is a member of `channel`. */
export function isMember(channels: Channels, channel: string, session: SessionId): boolean {
  return channels.members.get(channel)?.has(session) ?? false;
}

/** The names of a channel's named members, in join order (nameless dialect listeners are left out). */
export function memberNames(channels: Channels, channel: string): string[] {
  return [...(channels.members.get(channel)?.values() ?? [])].filter((name) => name !== "");
}

/** The sessions in a channel; empty when the channel does not exist. */
export function audience(channels: Channels, channel: string): Iterable<SessionId> {
  return channels.members.get(channel)?.keys() ?? [];
}

/** How many members a channel has. */
export function memberCount(channels: Channels, channel: string): number {
  return channels.members.get(channel)?.size ?? 0;
}

/** Every channel with its member count, sorted by name. */
export function listChannels(channels: Channels): ChannelSummary[] {
  return [...channels.members]
    .map(([name, members]) => ({ name, members: members.size }))
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}
