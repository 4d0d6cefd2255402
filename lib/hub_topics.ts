/**
 * The hub for runtimes with native topics (Bun): a channel is a topic, and
 * a publication is one `publish` call that the runtime fans out in native
 * code, corked per socket. Each frame is serialized once; nothing is
 * iterated per recipient in JavaScript.
 *
 * Slow consumers are found by a sweep over the sockets' backlogs a few times
 * a second, with the same rule as the coalescing hub: over the cap and not
 * shrinking, or over `HARD_BACKLOG_FACTOR` times the cap.
 *
 * @module
 */
import { HARD_BACKLOG_FACTOR, type Hub, type HubOptions } from "./hub.ts";
import type { SessionId } from "./registry.ts";
import type { TopicSocket } from "./socket.ts";

/** How often socket backlogs are checked. */
const BACKLOG_SWEEP_MS = 250;

/** The topic a channel's native-protocol frames are published on. */
export function topicOf(channel: string): string {
  return `native:${channel}`;
}

/** Creates a topic hub over `publish`, the runtime's publish-to-all-subscribers. */
export function createTopicHub(
  options: HubOptions,
  publish: (topic: string, text: string) => void,
): Hub {
  const sockets = new Map<SessionId, { socket: TopicSocket; backlogOverCap: number }>();
  const cap = options.maxBufferedBytes;
  const sweep = () => {
    for (const [id, entry] of sockets) {
      const backlog = entry.socket.bufferedAmount;
      if (backlog <= cap) entry.backlogOverCap = Infinity;
      else if (backlog > cap * HARD_BACKLOG_FACTOR || backlog >= entry.backlogOverCap) {
        options.onSlowConsumer(id);
      } else entry.backlogOverCap = backlog;
    }
  };
  const timer = setInterval(sweep, BACKLOG_SWEEP_MS);

  return {
    add(id, socket) {
      sockets.set(id, { socket: socket as TopicSocket, backlogOverCap: Infinity });
    },
    remove(id) {
      sockets.delete(id);
    },
    send(id, frame) {
      const entry = sockets.get(id);
      if (entry === undefined) return;
      entry.socket.send(JSON.stringify(frame));
      options.metrics.framesOut++;
    },
    publish(channel, _members, frame, except) {
      const text = JSON.stringify(frame);
      if (except === undefined) publish(topicOf(channel), text);
      else sockets.get(except)?.socket.publish(topicOf(channel), text);
      options.metrics.framesOut++;
    },
    subscribe(id, channel) {
      sockets.get(id)?.socket.subscribe(topicOf(channel));
    },
    unsubscribe(id, channel) {
      sockets.get(id)?.socket.unsubscribe(topicOf(channel));
    },
    close(id, code, reason) {
      const entry = sockets.get(id);
      if (entry === undefined) return;
      sockets.delete(id);
      entry.socket.close(code, reason);
    },
    stop() {
      clearInterval(timer);
    },
  };
}
