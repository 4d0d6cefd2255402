/**
 * How figures are written (rates, times, sizes, shares, ratios) and progress
 * lines, with the small helpers (sleep, median) the bench shares.
 *
 * @module
 */

/** Prints a progress line on stderr (stdout carries the report). */
export function progress(line: string) {
  console.error(line);
}

/** Resolves after `ms` milliseconds. */
export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The median of the finite values (the lower middle one), or NaN. */
export function median(values: number[]): number {
  const sorted = values.filter((v) => Number.isFinite(v)).sort((a, b) => a - b);
  return sorted.length === 0 ? NaN : sorted[Math.floor((sorted.length - 1) / 2)];
}

/** A rate with a k or M suffix. */
export function fmtRate(n: number): string {
  if (!Number.isFinite(n)) return "—";
  if (n >= 1e6) return `${(n / 1e6).toFixed(n >= 1e7 ? 1 : 2)}M`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(n >= 1e5 ? 0 : 1)}k`;
  return n.toFixed(0);
}

/** Microseconds written as milliseconds. */
export function fmtMs(us: number | null | undefined): string {
  if (us === null || us === undefined || !Number.isFinite(us)) return "—";
  const ms = us / 1000;
  return ms >= 100
    ? `${ms.toFixed(0)} ms`
    : ms >= 10
    ? `${ms.toFixed(1)} ms`
    : `${ms.toFixed(2)} ms`;
}

/** KiB written as KiB or MiB. */
export function fmtKiB(kib: number): string {
  if (!Number.isFinite(kib)) return "—";
  return kib >= 1024 ? `${(kib / 1024).toFixed(1)} MiB` : `${kib.toFixed(1)} KiB`;
}

/** A share (0..1) written as a percentage. */
export const pct = (x: number) => Number.isFinite(x) ? `${(x * 100).toFixed(0)}%` : "—";

/** `a ÷ b` written as a factor, or a dash when either is missing. */
export function ratio(a: number | undefined, b: number | undefined): string {
  if (
    a === undefined || b === undefined || !Number.isFinite(a) ||
    !Number.isFinite(b) || b <= 0
  ) {
    return "—";
  }
  const r = a / b;
  return r >= 10 ? `${r.toFixed(0)}×` : r >= 1 ? `${r.toFixed(2)}×` : `${r.toFixed(2)}×`;
}
