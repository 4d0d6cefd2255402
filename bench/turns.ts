/**
 * Servers that take turns step by step. This box's knees swing by a quarter
 * between runs minutes apart (bench/PROFILE.md §4b, §7), so a ratio of two
 * ladders run one after the other mostly measures which of them met the slow
 * minute. When two servers' ladders are interleaved, A's step, B's step, A's
 * next step, a slow minute lands on both.
 *
 * @module
 */

/**
 * A first-come, first-served lock. Parties that each ask again as soon as
 * their turn ends are served in rotation; a party that has finished simply
 * stops asking, and the others go on without it.
 */
export class Turns {
  #tail: Promise<void> = Promise.resolve();

  /** Runs `work` once every turn asked for before this one has ended. */
  take<T>(work: () => Promise<T>): Promise<T> {
    const turn = this.#tail.then(work);
    // The next turn waits for this one to end, whether it succeeded or not.
    this.#tail = turn.then(() => {}, () => {});
    return turn;
  }
}

/** `work` in its turn, or at once when there are no turns to wait for. */
export const inTurn = <T>(turns: Turns | undefined, work: () => Promise<T>): Promise<T> =>
  turns === undefined ? work() : turns.take(work);

/**
 * Where servers taking turns start their ladders: one rate for all, the
 * lowest of their hints (undefined, the scenario's own start, when any has
 * none). Each server's hint comes from its first scenario's knee, and hubbub
 * coalesces there (one room of 1,000) where the naive loop cannot: its hint
 * for rooms of 10 was 238k against the naive loop's 12.5k. A first step four
 * times over a server's knee can leave its next steps slow (bench/PROFILE.md
 * §8, §9), and the two ladders then compare their pasts, not the servers.
 */
export function commonStart(hints: readonly (number | undefined)[]): number | undefined {
  if (hints.length === 0 || hints.some((hint) => hint === undefined)) return undefined;
  return Math.min(...(hints as number[]));
}
