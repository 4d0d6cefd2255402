/**
 * The hub for runtimes with native topics (Bun): each channel has one topic
 * per dialect present in it, and a publication is one `publish` call per
 * such topic, which the runtime fans out in native code, corked per socket.
 * Each frame is encoded once per dialect; nothing is iterated per recipient
 * in JavaScript.
 *
 * Slow consumers are found by sweeps over the sockets' backlogs, with the
 * same rule as the coalescing hub: over the cap and not shrinking, or over
 * `HARD_BACKLOG_FACTOR` times the cap. Reading a backlog is a native call,
 * and 10,000 of them ten times a second cost 4% of a core on an idle
 * server, so every socket is looked at once a second and only those with a
 * backlog worth watching ten times a second.
 *
 * @module
 */
import { type Clock, systemClock } from "../core/clock.ts";
import { HARD_BACKLOG_FACTOR, type Hub, type HubOptions } from "./hub.ts";
import type { SessionId } from "../core/registry.ts";
import type { TopicSocket } from "../core/socket.ts";

/** How often the sockets with a backlog worth watching are checked. */
export const WATCH_SWEEP_MS = 100;

/** Every this many watch sweeps, every socket is checked. */
export const FULL_SWEEP_EVERY = 10;

/** A backlog over this share of the cap gets a socket watched. */
const WATCH_SHARE = 1 / 16;

/** The topic a channel's frames for one dialect are published on. */
export function topicOf(dialect: string, channel: string): string {
  return `${dialect}:${channel}`;
}

interface Entry {
  socket: TopicSocket;
  dialect: string;
  /** Its channels, so forgetting it also forgets its share of the topic counts. */
  channels: Set<string>;
  backlogOverCap: number;
}

/** Creates a topic hub over `publish`, the runtime's publish-to-all-subscribers. */
export function createTopicHub(
  options: HubOptions,
  publish: (topic: string, text: string) => void,
  clock: Pick<Clock, "every"> = systemClock,
): Hub {
  const sockets = new Map<SessionId, Entry>();
  /** Channel → dialect → subscribers, so a publication goes only to topics someone is on. */
  const dialectsIn = new Map<string, Map<string, number>>();
  const cap = options.maxBufferedBytes;
  /** Sockets whose backlog was over `cap * WATCH_SHARE` at their last check. */
  const watched = new Set<SessionId>();
  let sweeps = 0;
  const check = (id: SessionId, entry: Entry) => {
    const backlog = entry.socket.bufferedAmount;
    if (backlog > cap * WATCH_SHARE) watched.add(id);
    else watched.delete(id);
    if (backlog <= cap) entry.backlogOverCap = Infinity;
    else if (backlog > cap * HARD_BACKLOG_FACTOR || backlog >= entry.backlogOverCap) {
      watched.delete(id);
      options.onSlowConsumer(id);
    } else entry.backlogOverCap = backlog;
  };
  const sweep = () => {
    const everyone = ++sweeps % FULL_SWEEP_EVERY === 0;
    for (const id of everyone ? [...sockets.keys()] : [...watched]) {
      const entry = sockets.get(id);
      if (entry === undefined) watched.delete(id);
      else check(id, entry);
    }
  };
  const stopSweeps = clock.every(WATCH_SWEEP_MS, sweep);
  const count = (channel: string, dialect: string, delta: number) => {
    let counts = dialectsIn.get(channel);
    if (counts === undefined) dialectsIn.set(channel, counts = new Map());
    const next = (counts.get(dialect) ?? 0) + delta;
    if (next > 0) counts.set(dialect, next);
    else counts.delete(dialect);
    if (counts.size === 0) dialectsIn.delete(channel);
  };

  /** Drops a socket and its topic counts (the runtime unsubscribes a closed socket itself). */
  const forget = (id: SessionId) => {
    const entry = sockets.get(id);
    if (entry === undefined) return undefined;
    sockets.delete(id);
    watched.delete(id);
    for (const channel of entry.channels) count(channel, entry.dialect, -1);
    return entry;
  };

  return {
    add(id, socket, dialect) {
      const entry = {
        socket: socket as TopicSocket,
        dialect,
        channels: new Set<string>(),
        backlogOverCap: Infinity,
      };
      sockets.set(id, entry);
    },
    remove(id) {
      forget(id);
    },
    send(id, frame) {
      const entry = sockets.get(id);
      if (entry === undefined) return;
      entry.socket.send(JSON.stringify(frame));
      options.metrics.framesOut++;
    },
    sendText(id, text) {
      const entry = sockets.get(id);
      if (entry === undefined) return;
      entry.socket.send(text);
      options.metrics.framesOut++;
    },
    publish(channel, _members, frame, except, origin) {
      const sender = except === undefined ? undefined : sockets.get(except);
      for (const [dialect, subscribers] of dialectsIn.get(channel) ?? []) {
        const text = options.encode(dialect, frame, origin);
        if (text === null) continue;
        const topic = topicOf(dialect, channel);
        // ws.publish skips the socket it is called on; it must be on that topic.
        if (sender?.dialect === dialect) {
          sender.socket.publish(topic, text);
          options.metrics.framesOut += subscribers - 1;
        } else {
          publish(topic, text);
          options.metrics.framesOut += subscribers;
        }
      }
    },
    subscribe(id, channel) {
      const entry = sockets.get(id);
      if (entry === undefined) return;
      if (entry.channels.has(channel)) return;
      entry.channels.add(channel);
      entry.socket.subscribe(topicOf(entry.dialect, channel));
      count(channel, entry.dialect, +1);
    },
    unsubscribe(id, channel) {
      const entry = sockets.get(id);
      if (entry === undefined) return;
      if (!entry.channels.delete(channel)) return;
      entry.socket.unsubscribe(topicOf(entry.dialect, channel));
      count(channel, entry.dialect, -1);
    },
    close(id, code, reason) {
      forget(id)?.socket.close(code, reason);
    },
    stop() {
      stopSweeps();
    },
  };
}
