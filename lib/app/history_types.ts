/**
 * What the rest of the app sees of the history (`history.ts` on one node,
 * `history_shared.ts` in a cluster): plain types, so the shared state can
 * name it without importing how it works.
 *
 * @module
 */
import type { MessageFrame, Ref } from "../core/protocol.ts";
import type { SessionId } from "../core/registry.ts";
import type { Effect, Origin } from "../core/router.ts";
import type { Session } from "../core/session.ts";

/** What a message carries besides its frame: who must not get it, its key, who wants `sent`. */
export interface Submission {
  /** The session that must not receive it (a dialect that echoes itself). */
  except?: SessionId;
  origin?: Origin;
  /** The sender's idempotency key. */
  key?: string;
  /** The session that gets `sent` with this ref once the message is stored. */
  ack?: { session: SessionId; ref: Ref };
  /** Told once the message is stored (or found stored under its key) and delivered. */
  done?: (outcome: SubmitOutcome) => void;
}

/** What became of a submitted message: its id and seq (none when it could not be stored). */
export type SubmitOutcome = { id: string; seq?: number; delivered: number; duplicate: boolean };

/** The router's answer to a `join`, before the history is read. */
export type JoinedEffect = Extract<Effect, { kind: "joined" }>;
/** The router's answer to a `history` command, before the history is read. */
export type HistoryEffect = Extract<Effect, { kind: "history" }>;

/** Where channel messages are numbered, stored and read back. */
export interface History {
  /** Takes a message for `channel`: stored, numbered, then delivered. */
  submit(channel: string, frame: MessageFrame, submission: Submission): void;
  /** Answers a native `join` with its `joined` frame. */
  join(session: Session, effect: JoinedEffect): void;
  /** Answers a `history` command. */
  page(session: Session, effect: HistoryEffect): void;
  /** A local session joined `channel` (a shared log that delivers per channel follows it). */
  follow?(channel: string): void;
  /** A local session left `channel`. */
  unfollow?(channel: string): void;
  /** Stores and delivers what waits, now. */
  flush(): void;
  /** The cluster's store is reachable again (shared logs: channels with a gap get their new epoch now). */
  reconnected?(): void;
  /** Whether the last write reached the store (a `/readyz` check). */
  ready(): boolean;
  /** Flushes, stops timers and closes the store. */
  stop(): void;
}
