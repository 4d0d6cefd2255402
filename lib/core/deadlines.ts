/**
 * Sessions ordered by when they were last touched, so the ones past a
 * timeout are found from the front without scanning everyone: one sweep a
 * second costs what has expired, not what is connected.
 *
 * @module
 */
import type { SessionId } from "./registry.ts";

/** Session → when it was last touched, oldest first. */
export type Deadlines = Map<SessionId, number>;

/** Records activity; moves the session to the back of the line. */
export function touch(deadlines: Deadlines, id: SessionId, now: number): void {
  deadlines.delete(id);
  deadlines.set(id, now);
}

/** The sessions last touched at least `timeoutMs` ago, oldest first. */
export function expired(deadlines: Deadlines, now: number, timeoutMs: number): SessionId[] {
  const ids: SessionId[] = [];
  for (const [id, at] of deadlines) {
    if (now - at < timeoutMs) break;
    ids.push(id);
  }
  return ids;
}
