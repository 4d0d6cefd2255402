/**
 * Durable channels across a cluster, over a shared log (Redis, Deno KV):
 * one append per channel and tick numbers the messages, stores them and
 * publishes them atomically, and every node, this one included, delivers
 * them when they come back (Redis: on the bus; Deno KV: from the channel's
 * log, which a node follows while it has members in the channel), so all
 * members see one order.
 *
 * A `join` needs a round trip to the log (on Deno KV, once the node follows
 * the channel): until its answer, the session's
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
import type { Page, SharedLog, SharedRecovery } from "../store/store.ts";
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
  /**
   * Channels that got messages the log never stored, each with its latest gap's number: each
   * needs a new epoch before the log serves it again, or a recovery across the gap would say
   * `recovered: true` (and a message appended meanwhile would be numbered as if none was missed).
   */
  const gapped = new Map<string, number>();
  let gaps = 0;
  /** New epochs asked for and not answered yet, by channel. */
  const renewals = new Map<string, Promise<void>>();

  /** Delivers a message on this node only, unnumbered, and marks its channel's gap. */
  const deliverUnstored = ({ channel, frame, submission }: Waiting) => {
    ctx.metrics.historyFailures++;
    gapped.set(channel, ++gaps);
    const delivered = publishLocal(ctx, channel, frame, submission.except, submission.origin);
    unstored(ctx, channel, frame.id, delivered, submission);
  };

  /**
   * Asks for `channel`'s new epoch unless it has no gap, it is asked already, or the log is
   * out of reach; resolves once answered (`gapped` then says whether it worked).
   */
  const renew = (channel: string): Promise<void> => {
    const pending = renewals.get(channel);
    const gap = gapped.get(channel);
    if (pending !== undefined || gap === undefined || !ctx.cluster?.up) {
      return pending ?? Promise.resolve();
    }
    const renewal = log.newEpoch(channel).catch(() => false).then((done) => {
      renewals.delete(channel);
      // A gap made while it was asked is not covered by this epoch.
      if (done && gapped.get(channel) === gap) gapped.delete(channel);
    });
    renewals.set(channel, renewal);
    return renewal;
  };

  /** Whether the log may serve `channel` at once: no gap it does not know of, no new epoch pending. */
  const clear = (channel: string) => !gapped.has(channel) && !renewals.has(channel);

  /** Reads `channel`'s log with `use` once it knows of the channel's gap; null while it cannot. */
  const read = <T>(channel: string, use: () => Promise<T | null>): Promise<T | null> =>
    clear(channel) ? use() : renew(channel).then(() => gapped.has(channel) ? null : use());

  const append = (channel: string, batch: Waiting[]) => {
    if (clear(channel)) return appendNow(channel, batch);
    renew(channel).then(() =>
      gapped.has(channel) ? batch.forEach(deliverUnstored) : appendNow(channel, batch)
    );
  };

  const appendNow = (channel: string, batch: Waiting[]) => {
    const messages = batch.map(({ frame, submission }) => ({
      ...newMessage(frame, submission.key),
      frameOpen: JSON.stringify(frame).slice(0, -1),
      busOpen: busOpen(channel, submission.origin, submission.except),
    }));
    ctx.metrics.historyWrites++;
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
        // It may have been stored all the same (a timeout): then its numbered copy must not
        // reach the members here a second time.
        for (const { frame } of batch) ctx.cluster?.unstored(frame.id);
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

  // Channels nobody uses get theirs too, so a recovery on another node finds the gap.
  const renewEpochs = () => {
    for (const channel of gapped.keys()) renew(channel);
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
      ctx.afterIo(history.flush);
    },
    join(session, effect) {
      const { channel, since } = effect;
      const release = hold(session, channel);
      // Where the log delivers per channel, its delivery here starts before the read, so what
      // the read does not have is delivered (and held) after it.
      const started = log.following?.(channel) ?? Promise.resolve();
      read<Page | SharedRecovery>(
        channel,
        () =>
          started.then(() =>
            since === undefined
              ? log.latest(channel, effect.history)
              : log.since(channel, since.epoch, since.seq, ctx.config.historyLimit)
          ),
      ).catch(() => null).then((found) => {
        const held = release();
        if (ctx.sessions.get(session.id) !== session) return;
        let frame: ServerFrame;
        let head = 0;
        if (found === null) {
          frame = joinedFrame(effect, "", 0, [], since === undefined ? undefined : false);
        } else {
          head = found.seq;
          ctx.cluster?.head(channel, head, found.gen);
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
      read(
        channel,
        () =>
          before === undefined ? log.latest(channel, limit) : log.before(channel, before, limit),
      ).catch(() => null).then((found) => {
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
    // At once, not at the next retry: until then a recovery on another node cannot see the gap.
    reconnected: renewEpochs,
    follow: (channel) => log.follow?.(channel),
    unfollow: (channel) => log.unfollow?.(channel),
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
