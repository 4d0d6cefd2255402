/**
 * How long the client waits before each reconnect attempt.
 *
 * @module
 */

/** The reconnect delays: doubling from `initialMs` up to `maxMs`. */
export interface BackoffOptions {
  /** The delay ceiling of the first attempt, in milliseconds (default 500). */
  initialMs?: number;
  /** The largest delay ceiling, in milliseconds (default 30000). */
  maxMs?: number;
}

/** The defaults of {@linkcode BackoffOptions}. */
export const DEFAULT_BACKOFF: Required<BackoffOptions> = { initialMs: 500, maxMs: 30_000 };

/**
 * The delay before reconnect attempt `attempt` (1, 2, …): a ceiling that
 * doubles from `initialMs` up to `maxMs`, of which a random half is waited
 * ("equal jitter"), so the clients of a restarted server do not all come back
 * in the same instant, and none comes back at once.
 *
 * @example
 * ```ts
 * backoffDelay(3, { initialMs: 500, maxMs: 30_000 }, () => 1); // 2000
 * ```
 */
export function backoffDelay(
  attempt: number,
  options: BackoffOptions = {},
  random: () => number = Math.random,
): number {
  const { initialMs, maxMs } = { ...DEFAULT_BACKOFF, ...options };
  const ceiling = Math.min(maxMs, initialMs * 2 ** Math.max(0, attempt - 1));
  return Math.round(ceiling / 2 + (random() * ceiling) / 2);
}
