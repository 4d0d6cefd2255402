/**
 * Durable channels across a cluster, over a shared log (Redis): one append
 * per channel and tick numbers the messages, stores them and publishes them
 * on the bus atomically, and every node, this one included, delivers them
 * when the bus brings them back, so all members see one order.
 *
 * A `join` needs a round trip to the log: until its answer, the session's
 * commands wait (as behind a token check) and what the channel gets meanwhile
 * is held for it, then sent after `joined` without what `joined` already
 * carries. While the log cannot be reached, messages go out on this node
 * only, unnumbered (no `seq`), and their channels get a new epoch once it is
 * back, so a recovery across that gap says `recovered: false`.
 *
 * @module
 */
import { memberCount } from "../core/channels.ts";
import type { MessageFrame, ServerFrame } from "../core/protocol.ts";
import type { Session } from "../core/session.ts";
import { busOpen } from "../cluster/cluster_bus.ts";
import type { SharedLog, SharedRecovery } from "../store/store.ts";
import { drain } from "./commands.ts";
import type { AppContext } from "./context.ts";
import { publishLocal } from "./effects.ts";
import {
  type History,
  joinedFrame,
  latest,
  newMessage,
  reply,
  settled,
  type Submission,
  unstored,
} from "./history.ts";

/** How often channels that got unnumbered messages try for their new epoch. */
const GAP_RETRY_MS = 1000;

type Waiting = { channel: string; frame: MessageFrame; submission: Submission };

/** The history of a cluster node, on the log every node shares. */
export function createSharedHistory(ctx: AppContext, log: SharedLog): History {
  let queue: Waiting[] = [];
  let scheduled = false;
  let stopped = false;
  /** Channels that got messages the log never stored: each needs a new epoch. */
  const gapped = new Set<string>();
  let renewing = false;

  /** Delivers a message on this node only, unnumbered, and marks its channel's gap. */
  const deliverUnstored = ({ channel, frame, submission }: Waiting) => {
    ctx.metrics.historyFailures++;
    gapped.add(channel);
    const delivered = publishLocal(ctx, channel, frame, submission.except, submission.origin);
    unstored(ctx, channel, frame.id, delivered, submission);
  };

  const append = (channel: string, batch: Waiting[]) => {
    const messages = batch.map(({ frame, submission }) => ({
      ...newMessage(frame, submission.key),
      frameOpen: JSON.stringify(frame).slice(0, -1),
      busOpen: busOpen(channel, submission.origin, submission.except),
    }));
    log.append(ctx.nodeId, channel, messages).then((appended) => {
      if (!appended.ok) {
        ctx.log.limited(
          "error",
          "history:append",
          "cannot store messages; delivering them here only",
          {
            reason: appended.message,
          },
        );
        return batch.forEach(deliverUnstored);
      }
      ctx.metrics.messagesStored += appended.results.filter((r) => !r.duplicate).length;
      batch.forEach(({ submission }, i) => {
        const { seq, id, duplicate } = appended.results[i];
        const delivered = duplicate
          ? 0
          : memberCount(ctx.core.channels, channel) - (submission.except === undefined ? 0 : 1);
        settled(ctx, { channel, id, seq }, submission, duplicate, delivered);
      });
    });
  };

  const renewEpochs = () => {
    if (renewing || gapped.size === 0 || !ctx.cluster?.up) return;
    renewing = true;
    const channels = [...gapped];
    Promise.all(
      channels.map((channel) =>
        log.newEpoch(channel).then((done) => done && gapped.delete(channel))
      ),
    ).finally(() => renewing = false);
  };
  const stopRetries = ctx.clock.every(GAP_RETRY_MS, renewEpochs);

  /** Holds what `channel` gets for `session` until its read is answered; returns the release. */
  const hold = (session: Session, channel: string) => {
    let held = ctx.joining.get(channel);
    if (held === undefined) ctx.joining.set(channel, held = new Map());
    held.set(session.id, []);
    // On runtimes with native topics, nothing may reach it directly meanwhile either.
    ctx.hub.unsubscribe(session.id, channel);
    session.busy = true;
    return (): ServerFrame[] => {
      const waiting = ctx.joining.get(channel);
      const frames = waiting?.get(session.id) ?? [];
      waiting?.delete(session.id);
      if (waiting?.size === 0) ctx.joining.delete(channel);
      if (session.channels.has(channel)) ctx.hub.subscribe(session.id, channel);
      return frames;
    };
  };

  /** Lets the session's waiting commands run again, unless it is gone. */
  const resume = (session: Session) => {
    if (ctx.sessions.get(session.id) !== session) return;
    session.busy = false;
    drain(ctx, session);
  };

  const history: History = {
    submit(channel, frame, submission) {
      const waiting = { channel, frame, submission };
      if (stopped || !ctx.cluster?.up) return deliverUnstored(waiting);
      queue.push(waiting);
      if (scheduled) return;
      scheduled = true;
      queueMicrotask(history.flush);
    },
    join(session, effect) {
      const { channel, since } = effect;
      const release = hold(session, channel);
      const read = since === undefined
        ? log.latest(channel, effect.history)
        : log.since(channel, since.epoch, since.seq, ctx.config.historyLimit);
      read.catch(() => null).then((found) => {
        const held = release();
        if (ctx.sessions.get(session.id) !== session) return;
        let frame: ServerFrame;
        let head = 0;
        if (found === null) {
          frame = joinedFrame(effect, "", 0, [], since === undefined ? undefined : false);
        } else {
          head = found.seq;
          const recovered = since === undefined ? undefined : (found as SharedRecovery).recovered;
          const messages = recovered ? found.messages : latest(found.messages, effect.history);
          frame = joinedFrame(effect, found.epoch, found.seq, messages, recovered);
        }
        reply(ctx, session.id, frame);
        for (const later of held) {
          // Numbered up to the head: `joined` has it, or it is older than the join.
          if (later.type === "message" && later.seq !== undefined && later.seq <= head) continue;
          reply(ctx, session.id, later);
        }
        resume(session);
      });
    },
    page(session, { channel, before, limit, ref }) {
      session.busy = true;
      const read = before === undefined
        ? log.latest(channel, limit)
        : log.before(channel, before, limit);
      read.catch(() => null).then((found) => {
        if (ctx.sessions.get(session.id) !== session) return;
        reply(
          ctx,
          session.id,
          found === null
            ? {
              type: "error",
              code: "unavailable",
              message: "History cannot be read right now; try again",
              ref,
            }
            : { type: "history", channel, epoch: found.epoch, messages: found.messages, ref },
        );
        resume(session);
      });
    },
    flush() {
      scheduled = false;
      if (queue.length === 0) return;
      const byChannel = new Map<string, Waiting[]>();
      for (const waiting of queue) {
        const batch = byChannel.get(waiting.channel);
        if (batch === undefined) byChannel.set(waiting.channel, [waiting]);
        else batch.push(waiting);
      }
      queue = [];
      for (const [channel, batch] of byChannel) append(channel, batch);
    },
    // Reachability is the cluster's readiness check already.
    ready: () => true,
    stop() {
      history.flush();
      stopped = true;
      stopRetries();
    },
  };
  return history;
}
