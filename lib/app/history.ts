/**
 * Durable channels on one node: every chat message a channel gets passes
 * through here on its way to the members. A tick's messages are stored in
 * one transaction (which numbers them: `seq`), then delivered in that order,
 * and a sender that asked gets `sent`. `joined` and `history` read the same
 * store, synchronously, so a message is either in a `joined`'s `messages` or
 * delivered after it, never both, never neither. The cluster-wide
 * counterpart, over a shared log, is `history_shared.ts`.
 *
 * Messages wait for the flush only while nothing else is sent: `flush` runs
 * before any other effect and before a command changes membership, so every
 * member still sees its frames in the order it caused them.
 *
 * @module
 */
import type { MessageFrame, ServerFrame } from "../core/protocol.ts";
import type { SessionId } from "../core/registry.ts";
import type { MessageStore, NewMessage, StoredMessage } from "../store/store.ts";
import type { AppContext } from "./context.ts";
import { publish, run } from "./effects.ts";
import type { History, JoinedEffect, Submission } from "./history_types.ts";

export type {
  History,
  HistoryEffect,
  JoinedEffect,
  Submission,
  SubmitOutcome,
} from "./history_types.ts";

/** Messages that may wait for a commit timer; more are committed after the current read. */
const MAX_WAITING = 1024;

/** How soon a commit put off by the store's busy lock is tried again. */
const BUSY_RETRY_MS = 1;

type Waiting = {
  channel: string;
  frame: MessageFrame;
  submission: Submission;
  alsoFor: Submission[];
};

/** The history of a lone node, on `store` (memory or SQLite). */
export function createLocalHistory(ctx: AppContext, store: MessageStore): History {
  let queue: Waiting[] = [];
  /** Queued messages by channel, sender and key: a second keyed send in one tick joins the first. */
  const queuedKeys = new Map<string, Waiting>();
  let scheduled = false;
  let commitTimer: ReturnType<typeof setTimeout> | undefined;
  let lastCommitAt = -Infinity;
  let stopped = false;
  let lastWriteFailed = false;
  /** When the first of the commits put off in a row found the store's lock busy. */
  let busySince: number | undefined;

  const schedule = () => {
    if (scheduled || stopped) return;
    scheduled = true;
    // At rest, after the current read of the sockets: what it brought shares one transaction.
    // Under load (commits back to back), a transaction's fixed cost is most of a message's:
    // wait until `commitGapMs` after the last one, so the messages of several reads share it.
    const since = performance.now() - lastCommitAt;
    if (since >= ctx.commitGapMs) ctx.afterIo(flushUnlessBusy);
    else commitTimer = setTimeout(flushUnlessBusy, ctx.commitGapMs - since);
  };

  /**
   * Stores and delivers what waits; with `mayWait` false, a store whose lock another thread
   * holds (SQLite's checkpointer, starting the log over) is tried again shortly instead of
   * being waited for. Only a scheduled commit may be put off: the others keep a member's frames
   * in the order it caused them, so they wait.
   */
  const commit = (mayWait: boolean) => {
    scheduled = false;
    clearTimeout(commitTimer);
    commitTimer = undefined;
    if (queue.length === 0) return;
    const appended = store.appendAll(
      queue.map(({ channel, frame, submission }) => ({
        channel,
        message: newMessage(frame, submission.key),
      })),
      mayWait,
    );
    if (!appended.ok && appended.busy) {
      ctx.metrics.historyBusy++;
      busySince ??= performance.now();
      scheduled = true;
      commitTimer = setTimeout(flushUnlessBusy, BUSY_RETRY_MS);
      return;
    }
    busySince = undefined;
    lastCommitAt = performance.now();
    const batch = queue;
    queue = [];
    queuedKeys.clear();
    lastWriteFailed = !appended.ok;
    ctx.metrics.historyWrites++;
    if (!appended.ok) {
      ctx.metrics.historyFailures += batch.length;
      ctx.log.limited(
        "error",
        "history:append",
        "cannot store messages; delivering them unnumbered",
        {
          reason: appended.message,
        },
      );
    } else ctx.metrics.messagesStored += batch.length;
    batch.forEach((waiting, i) => {
      const stored = appended.ok ? appended.messages[i] : undefined;
      deliver(ctx, waiting, stored);
    });
  };
  const flushUnlessBusy = () =>
    commit(busySince !== undefined && performance.now() - busySince >= ctx.storeBusyGiveUpMs);

  const history: History = {
    submit(channel, frame, submission) {
      const { key } = submission;
      if (key !== undefined) {
        const keyId = `${channel}\u0000${frame.from}\u0000${key}`;
        const queued = queuedKeys.get(keyId);
        if (queued !== undefined) return void queued.alsoFor.push(submission);
        const stored = store.byKey(channel, frame.from, key);
        if (stored !== null) return settled(ctx, stored, submission, true);
        const waiting: Waiting = { channel, frame, submission, alsoFor: [] };
        queuedKeys.set(keyId, waiting);
        queue.push(waiting);
      } else queue.push({ channel, frame, submission, alsoFor: [] });
      // Bounded: a burst bigger than this is not held back for the timer (a busy lock's retry
      // is not hurried: it would only find the lock busy again, once per message).
      if (queue.length >= MAX_WAITING && commitTimer !== undefined && busySince === undefined) {
        clearTimeout(commitTimer);
        commitTimer = undefined;
        ctx.afterIo(flushUnlessBusy);
      }
      schedule();
    },
    join(session, effect) {
      const head = store.head(effect.channel);
      let messages: StoredMessage[] = [];
      let recovered: boolean | undefined;
      if (effect.since !== undefined) {
        const { epoch, seq } = effect.since;
        const found = store.since(effect.channel, epoch, seq, ctx.config.historyLimit);
        recovered = found.recovered;
        messages = recovered ? found.messages : latest(found.messages, effect.history);
      } else if (effect.history > 0) messages = store.latest(effect.channel, effect.history);
      reply(ctx, session.id, joinedFrame(effect, head.epoch, head.seq, messages, recovered));
    },
    page(session, { channel, before, limit, ref }) {
      const messages = before === undefined
        ? store.latest(channel, limit)
        : store.before(channel, before, limit);
      reply(ctx, session.id, {
        type: "history",
        channel,
        epoch: store.head(channel).epoch,
        messages,
        ref,
      });
    },
    flush() {
      commit(true);
    },
    ready: () => !lastWriteFailed,
    stop() {
      history.flush();
      stopped = true;
      store.close();
    },
  };
  return history;
}

/** The message as a store takes it. */
export function newMessage(frame: MessageFrame, key: string | undefined): NewMessage {
  const { from, text, id, ts } = frame;
  return key === undefined ? { from, text, id, ts } : { from, text, id, ts, key };
}

/** The last `count` of `messages` (none for 0). */
export function latest(messages: StoredMessage[], count: number): StoredMessage[] {
  return count <= 0 ? [] : messages.slice(-count);
}

/** The `joined` frame for `effect` with the history read. */
export function joinedFrame(
  effect: JoinedEffect,
  epoch: string,
  seq: number,
  messages: MessageFrame[],
  recovered: boolean | undefined,
): ServerFrame {
  const { channel, members, ref } = effect;
  return recovered === undefined
    ? { type: "joined", channel, members, epoch, seq, messages, ref }
    : { type: "joined", channel, members, epoch, seq, messages, recovered, ref };
}

/** Sends `frame` to one session (native sessions only: `run` checks). */
export function reply(ctx: AppContext, id: SessionId, frame: ServerFrame): void {
  run(ctx, [{ kind: "reply", frame }], id);
}

/** Delivers a message that was stored as `stored` (or could not be) and tells whoever waits. */
function deliver(ctx: AppContext, waiting: Waiting, stored: StoredMessage | undefined): void {
  const { channel, frame, submission } = waiting;
  const { except, origin } = submission;
  const delivered = publish(ctx, channel, stored ?? frame, except, origin);
  // The sender, then whoever sent the same key in this batch (no array or closure per message).
  if (stored === undefined) {
    unstored(ctx, channel, frame.id, delivered, submission);
    for (const each of waiting.alsoFor) unstored(ctx, channel, frame.id, delivered, each);
  } else {
    settled(ctx, stored, submission, false, delivered);
    for (const each of waiting.alsoFor) settled(ctx, stored, each, true);
  }
}

/** Tells a submitter its message is stored: `sent` to the sender, the outcome to the API. */
export function settled(
  ctx: AppContext,
  stored: { channel: string; id: string; seq: number },
  submission: Submission,
  duplicate: boolean,
  delivered = 0,
): void {
  const { ack, done } = submission;
  const { channel, id, seq } = stored;
  if (ack !== undefined) reply(ctx, ack.session, { type: "sent", channel, id, seq, ref: ack.ref });
  done?.({ id, seq, delivered, duplicate });
}

/** Tells a submitter its message went out live but is not stored. */
export function unstored(
  ctx: AppContext,
  channel: string,
  id: string,
  delivered: number,
  submission: Submission,
): void {
  const { ack, done } = submission;
  if (ack !== undefined) {
    const message = `Message ${id} in "${channel}" was delivered live but could not be stored`;
    reply(ctx, ack.session, { type: "error", code: "unavailable", message, ref: ack.ref });
  }
  done?.({ id, delivered, duplicate: false });
}
