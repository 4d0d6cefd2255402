/**
 * What a run amounts to: the knee, latency at 80% of it, CPU, RSS, loss and
 * reordering.
 *
 * @module
 */
import { fmtRate, median, ratio } from "./format.ts";
import type { Run } from "./measure.ts";

/** The figures of one run that the report and the chart show. */
export interface Figures {
  knee?: number;
  kneeGe: boolean;
  kneeBelow?: number;
  p50?: number;
  p99?: number;
  max?: number;
  serverCpuKnee?: number;
  genKnee?: number;
  serverCpu80?: number;
  rss80?: number;
  framesPerDelivery?: number;
  lost: number;
  outOfOrder: number;
  error?: string;
}

/** Sums up a run: its knee, latency at 80% of it, CPU, RSS, loss and reordering. */
export function figures(run: Run | undefined): Figures | undefined {
  if (run === undefined) return undefined;
  const belowKnee = [
    ...run.steps.filter((s) => s.pass),
    ...run.latency,
  ];
  const lat = run.latency.filter((s) => s.p99Us !== null);
  const mid = lat.length === 0
    ? undefined
    : lat.slice().sort((a, b) => a.p99Us! - b.p99Us!)[Math.floor((lat.length - 1) / 2)];
  return {
    knee: run.knee?.deliveredPerSec,
    kneeGe: run.kneeGenBound === true,
    kneeBelow: run.kneeBelow,
    p50: median(lat.map((s) => s.p50Us!)),
    p99: mid?.p99Us ?? undefined,
    max: mid?.maxUs,
    serverCpuKnee: run.knee?.serverCpu,
    genKnee: run.knee ? Math.max(run.knee.genCpu, run.knee.genCore) : undefined,
    serverCpu80: median(run.latency.map((s) => s.serverCpu)),
    rss80: median(run.latency.map((s) => s.rssKiB)),
    framesPerDelivery: run.knee?.framesPerDelivery,
    lost: belowKnee.reduce(
      (n, s) => n + Math.max(0, s.expected - s.delivered),
      0,
    ),
    outOfOrder: belowKnee.reduce((n, s) => n + s.outOfOrder, 0),
    error: run.error,
  };
}

/** The knee as the report writes it: ≥ when the generator bounded it, < when below the ladder. */
export function kneeText(f: Figures | undefined): string {
  if (f === undefined) return "—";
  if (f.error) return "error";
  if (f.knee === undefined) {
    return f.kneeBelow ? `< ${fmtRate(f.kneeBelow)}` : "—";
  }
  return `${f.kneeGe ? "≥ " : ""}${fmtRate(f.knee)}`;
}

/** A ratio of two knees; "≈" when the generator bounded both, so neither is the server's. */
export function kneeRatio(a: Figures | undefined, b: Figures | undefined): string {
  if (!a?.knee || !b?.knee) return "—";
  const r = ratio(a.knee, b.knee);
  if (a.kneeGe && b.kneeGe) return `≈ ${r}`;
  if (a.kneeGe) return `≥ ${r}`;
  if (b.kneeGe) return `≤ ${r}`;
  return r;
}

/** Every run of the benchmark, by scenario and then by target. */
export type Results = Map<string, Map<string, Run>>; // scenario → target → run
