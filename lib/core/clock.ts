/**
 * Time as the core sees it: injected, so timer logic is tested with a
 * manual clock instead of sleeps.
 *
 * @module
 */

/** A source of time and timers. */
export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number;
  /** Calls `callback` every `ms` until the returned function is called. */
  every(ms: number, callback: () => void): () => void;
}

/** The real clock. Its interval does not keep the process alive. */
export const systemClock: Clock = {
  now: () => Date.now(),
  every(ms, callback) {
    const id = setInterval(callback, ms);
    // Deno and Node return objects with unref; browsers a number.
    (id as { unref?: () => void }).unref?.();
    return () => clearInterval(id);
  },
};

/** A clock that moves only when told to; for tests. */
export interface ManualClock extends Clock {
  /** Moves time forward, running every interval that falls due, in order. */
  advance(ms: number): void;
}

/** Creates a manual clock starting at `start`. */
export function createManualClock(start = 0): ManualClock {
  let now = start;
  const timers = new Set<{ due: number; ms: number; callback: () => void }>();
  return {
    now: () => now,
    every(ms, callback) {
      const timer = { due: now + ms, ms, callback };
      timers.add(timer);
      return () => timers.delete(timer);
    },
    advance(ms) {
      const end = now + ms;
      for (;;) {
        let next: { due: number; ms: number; callback: () => void } | undefined;
        for (const timer of timers) {
          if (timer.due <= end && (!next || timer.due < next.due)) next = timer;
        }
        if (next === undefined) break;
        now = next.due;
        next.due += next.ms;
        next.callback();
      }
      now = end;
    },
  };
}
