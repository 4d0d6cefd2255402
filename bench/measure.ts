/**
 * One server in one scenario: the connect storm, the idle server, the step
 * ladder up to the knee and the latency at 80% of it.
 *
 * @module
 */
import { fmtKiB, fmtMs, fmtRate, median, pct, progress, sleep } from "./format.ts";
import { Generator, type Ready, type StepResult } from "./generator.ts";
import {
  BUSY,
  CPU_AT,
  FIXED_LOAD,
  FOREIGN,
  KEPT_UP,
  MAX_P99_MS,
  QUICK,
  REF_PAD,
  SOURCES,
  STEP,
} from "./options.ts";
import { coreBusy, cpuBetween, type Sample, sample, socketQueues } from "./proc.ts";
import type { Scenario } from "./scenarios.ts";
import { type Server, startServer, stopServer, type Target } from "./servers.ts";
import { inTurn, type Turns } from "./turns.ts";

/** What one server did in one scenario. */
export interface Run {
  target: Target;
  scenario: Scenario;
  storm?: Ready;
  baseRssKiB?: number;
  idleRssKiB?: number;
  idleCpu?: number;
  steps: StepResult[];
  knee?: StepResult;
  /** The lowest failing step above the knee. */
  above?: StepResult;
  /** The knee is bounded by the generator, not the server. */
  kneeGenBound?: boolean;
  /** The first step failed: the knee is below the ladder's start. */
  kneeBelow?: number;
  latency: StepResult[];
  /** Steps at `FIXED_LOAD` (its targets only), for server CPU per delivery. */
  fixed: StepResult[];
  error?: string;
  restarts: number;
  /** When the scenario was run several times: every run, this one (the median) among them. */
  repeats?: Run[];
}

/** A server with its clients connected: what a step needs. */
interface Session {
  server: Server;
  gen: Generator;
  ready: Ready;
  /** Ends its progress lines: which server, when servers take turns and their lines interleave. */
  tag: string;
}

async function openSession(
  target: Target,
  sc: Scenario,
  run: Run,
  tagged: boolean,
): Promise<Session> {
  const server = await startServer(target);
  await sleep(500);
  const base = sample(server.pid);
  const gen = new Generator();
  try {
    await gen.command({
      cmd: "setup",
      host: "127.0.0.1",
      port: server.port,
      path: target.path,
      protocol: target.protocol,
      clients: sc.clients,
      roomSize: sc.roomSize,
      sendersPerRoom: sc.sendersPerRoom,
      sources: SOURCES,
      timeoutMs: 90_000,
    });
    const ready = await gen.event<Ready>("ready", 120_000);
    if (ready.ready < sc.clients) {
      throw new Error(
        `${ready.ready}/${sc.clients} clients ready, ${ready.failed} failed: ${
          JSON.stringify(ready.failures)
        } ${ready.firstError}`,
      );
    }
    run.baseRssKiB ??= base.rssKiB;
    return { server, gen, ready, tag: tagged ? ` [${target.id}]` : "" };
  } catch (error) {
    await gen.quit();
    await stopServer(server);
    throw error;
  }
}

async function closeSession(session: Session) {
  await session.gen.quit();
  await stopServer(session.server);
}

/**
 * hubbub's own counters, for how many frames it wrote per delivery and how many messages
 * shared a write to the history store.
 */
async function hubbubCounters(
  session: Session,
): Promise<[number, number, number, number] | null> {
  if (session.server.target.protocol !== "native") return null;
  try {
    const text = await (await fetch(`http://127.0.0.1:${session.server.port}/metrics`))
      .text();
    const counter = (name: string) => Number(new RegExp(`^${name} (\\d+)`, "m").exec(text)?.[1]);
    return [
      counter("hubbub_frames_out_total"),
      counter("hubbub_deliveries_total"),
      counter("hubbub_messages_stored_total"),
      counter("hubbub_history_writes_total"),
    ];
  } catch {
    return null;
  }
}

async function step(
  session: Session,
  sc: Scenario,
  deliveriesPerSec: number,
  label = "",
): Promise<StepResult> {
  const rate = deliveriesPerSec / sc.roomSize;
  const marks: Record<string, Sample> = {};
  let queues = { toGenerator: NaN, toServer: NaN };
  session.gen.onMark = (at) => {
    marks[at] = sample(session.server.pid);
    if (at === "end") queues = socketQueues(session.server.port);
  };
  const before = await hubbubCounters(session);
  await session.gen.command({
    cmd: "step",
    rate,
    seconds: STEP.seconds,
    drainMs: STEP.drainMs,
    padTo: session.server.target.protocol === "native" ? 0 : REF_PAD,
  });
  const result = await session.gen.event<StepResult>(
    "step",
    STEP.seconds * 1000 + 60_000,
  );
  const after = await hubbubCounters(session);
  const { start, end } = marks;
  result.serverCpu = cpuBetween(start, end);
  result.serverCore = coreBusy(start, end, 0);
  result.genCore = coreBusy(start, end, 1);
  result.rssKiB = end.rssKiB;
  // What else ran on our cores: busy time beyond our pinned process (a little is softirq).
  result.foreign = Math.max(
    result.serverCore - result.serverCpu,
    result.genCore - result.genCpu,
    0,
  );
  // Counted only where the server has /metrics (hubbub); Bun topic publications count one frame each.
  if (before && after && after[1] > before[1] && after[0] > before[0]) {
    result.framesPerDelivery = (after[0] - before[0]) / (after[1] - before[1]);
  }
  if (before && after && after[3] > before[3]) {
    result.messagesPerWrite = (after[2] - before[2]) / (after[3] - before[3]);
  }
  const bytesPerDelivery = result.bytesInWindow / Math.max(1, result.deliveredInWindow);
  const due = Math.max(0, result.expected - result.deliveredInWindow) * bytesPerDelivery;
  result.genShare = due > 0 ? Math.min(1, queues.toGenerator / due) : 0;
  const ratio = result.deliveredInWindow / Math.max(1, result.expected);
  const p99Ms = (result.p99Us ?? Infinity) / 1000;
  result.why = result.closed > 0
    ? `${result.closed} clients closed ${JSON.stringify(result.closeCodes)}`
    : result.offeredPerSec < rate * 0.95
    ? `offered only ${fmtRate(result.offeredPerSec)} msgs/s`
    : ratio < KEPT_UP
    ? `delivered ${(ratio * 100).toFixed(0)}% in the window`
    : p99Ms > MAX_P99_MS
    ? `p99 ${p99Ms.toFixed(0)} ms`
    : "";
  result.pass = result.why === "";
  result.genBound = genVerdict(result, rate);
  progressStep(result, deliveriesPerSec, label, session.tag);
  return result;
}

/** The progress line of one step. */
function progressStep(
  result: StepResult,
  deliveriesPerSec: number,
  label: string,
  tag: string,
) {
  progress(
    `    ${fmtRate(deliveriesPerSec).padStart(6)}/s offered: ${
      fmtRate(result.deliveredPerSec).padStart(6)
    }/s delivered, p50 ${fmtMs(result.p50Us)} p99 ${fmtMs(result.p99Us)}, server ${
      pct(result.serverCpu)
    } gen ${pct(result.genCpu)} (core ${pct(result.genCore)})${
      result.framesPerDelivery === undefined
        ? ""
        : `, ${result.framesPerDelivery.toFixed(3)} frames/delivery`
    }${
      result.messagesPerWrite === undefined
        ? ""
        : `, ${result.messagesPerWrite.toFixed(1)} messages/store write`
    } ${result.pass ? "ok" : `FAIL (${result.why})`}${
      result.pass
        ? ""
        : result.genBound
        ? ` [generator-bound: ${pct(result.genShare)} of the due unread by us]`
        : ` [server-bound: ${pct(result.genShare)} of the due unread by us]`
    }${label ? ` (${label})` : ""}${
      disturbed(result) ? ` {other processes took ${pct(result.foreign)} of a core}` : ""
    }${tag}`,
  );
}

/** Other processes took over a quarter of one of our cores: the step measured them too. */
export const disturbed = (s: StepResult) => s.foreign > FOREIGN;

/**
 * Whether the generator rather than the server set the pace of a failed
 * step: it could not keep its own send schedule, or most of what was still
 * due when the window closed sat unread in its receive queues, or its own
 * CPU was over 95% while a fair share (≥ 10%) sat there. Otherwise the
 * server had not written what was due: the server was behind, however busy
 * the generator was. (A step that kept up always has its in-flight bytes
 * in our queues; the verdict is for failures.)
 */
export function genVerdict(s: StepResult, rate: number): boolean {
  if (s.pass) return false;
  if (s.offeredPerSec < rate * 0.95) return true;
  if (s.genShare >= 0.5) return true;
  return s.genCpu > BUSY && s.genShare >= 0.1;
}

const genBound = (s: StepResult) => s.genBound;

/** A scenario under way: its run, and the session its steps use (a new one after a restart). */
interface Trial {
  target: Target;
  sc: Scenario;
  run: Run;
  session: Session;
  /** Shared with the servers this one takes turns with: each step, storm and drain is a turn. */
  turns?: Turns;
}

/**
 * Runs one server through one scenario; a failure is kept in the run, not
 * thrown. With `turns`, it takes turns with the other servers given the same
 * `turns`: whatever loads the machine (the connect storm, the idle figure,
 * each step and the drain after it, the close) waits for its turn, and the
 * server idles, its clients connected, while another's step runs.
 */
export async function runScenario(
  target: Target,
  sc: Scenario,
  hint?: number,
  turns?: Turns,
): Promise<Run> {
  const run: Run = {
    target,
    scenario: sc,
    steps: [],
    latency: [],
    fixed: [],
    restarts: 0,
  };
  progress(`  ${sc.id}`);
  const session = await inTurn(turns, () => openSession(target, sc, run, turns !== undefined));
  const trial: Trial = { target, sc, run, session, turns };
  try {
    const ready = trial.session.ready;
    progress(
      `    ${sc.clients} clients ready in ${fmtMs((ready.allReadyMs ?? NaN) * 1000)} (all open in ${
        fmtMs((ready.allOpenMs ?? NaN) * 1000)
      })${session.tag}`,
    );
    if (sc.idle) await inTurn(turns, () => measureIdle(trial.session, sc, run));
    if (!sc.traffic) return run;
    // Warm up (JIT, and the garbage of the join storm) with a step that is not recorded.
    await inTurn(turns, async () => {
      await sleep(500);
      await stepAndDrain(trial, sc.ladderStart / 4, "warm-up");
    });
    if (CPU_AT !== undefined) await measureCpuAt(trial, CPU_AT);
    else {
      await measureFixedLoad(trial);
      await searchKnee(trial, hint);
    }
    return run;
  } catch (error) {
    run.error = (error as Error).message;
    progress(`    error: ${run.error}${trial.session.tag}`);
    return run;
  } finally {
    await inTurn(turns, () => closeSession(trial.session));
  }
}

/** The idle server after the connect storm: its CPU and RSS with every client connected. */
async function measureIdle(session: Session, sc: Scenario, run: Run) {
  run.storm = session.ready;
  await sleep(1000);
  const a = sample(session.server.pid);
  const rss: number[] = [];
  for (let i = 0; i < 6; i++) {
    await sleep(QUICK ? 250 : 500);
    rss.push(sample(session.server.pid).rssKiB);
  }
  const b = sample(session.server.pid);
  run.idleCpu = cpuBetween(a, b);
  run.idleRssKiB = median(rss);
  progress(
    `    idle: ${fmtKiB((run.idleRssKiB - run.baseRssKiB!) / sc.clients)}/connection, CPU ${
      pct(run.idleCpu)
    }${session.tag}`,
  );
}

/** `count` steps at one offered load, kept in `run.fixed` (for CPU per delivery); returns them. */
async function stepsAt(trial: Trial, deliveriesPerSec: number, count: number) {
  const steps: StepResult[] = [];
  for (let i = 0; i < count; i++) {
    const s = await measureStep(trial, deliveriesPerSec);
    trial.run.fixed.push(s);
    steps.push(s);
  }
  return steps;
}

/** The steps at `FIXED_LOAD`, for the targets and the scenario it names. */
async function measureFixedLoad(trial: Trial) {
  const { target, sc } = trial;
  if (sc.id !== FIXED_LOAD.scenario || !FIXED_LOAD.targets.includes(target.id)) return;
  await stepsAt(trial, FIXED_LOAD.deliveriesPerSec, FIXED_LOAD.steps);
}

/** `--cpu-at`: steps at one load in place of the ladder, with their CPU per delivery. */
async function measureCpuAt(trial: Trial, at: NonNullable<typeof CPU_AT>) {
  const costs = (await stepsAt(trial, at.deliveriesPerSec, at.steps)).map(cpuPerThousand);
  const { tag } = trial.session;
  progress(
    `    CPU per 1,000 deliveries: ${costs.map((cost) => cost.toFixed(3)).join(", ")} ms${tag}`,
  );
  progress(`    median CPU per 1,000 deliveries: ${median(costs).toFixed(3)} ms${tag}`);
}

/** Server CPU time per 1,000 deliveries in a step, in milliseconds. */
export const cpuPerThousand = (s: StepResult) =>
  s.serverCpu / Math.max(1, s.deliveredPerSec) * 1000 * 1000;

/** A step, and when it failed, the drain of its backlog (both in one turn when taking turns). */
async function stepAndDrain(trial: Trial, deliveriesPerSec: number, label = "") {
  const result = await step(trial.session, trial.sc, deliveriesPerSec, label);
  if (!result.pass) await drainOrRestart(trial, result);
  return result;
}

/** After a failed step (in its turn): let the backlog drain, or start over if it cannot. */
async function drainOrRestart(trial: Trial, failed: StepResult) {
  const { target, sc, run } = trial;
  await trial.session.gen.command({ cmd: "settle", quietMs: 300, maxMs: 5000 });
  const settled = await trial.session.gen.event<
    { missing: number; ready: number }
  >(
    "settled",
    30_000,
  );
  if (
    failed.closed > 0 || settled.ready < sc.clients || settled.missing > 0
  ) {
    progress(
      `    (restarting: ${settled.ready} clients left, ${settled.missing} missing)${trial.session.tag}`,
    );
    await closeSession(trial.session);
    trial.session = await openSession(target, sc, run, trial.turns !== undefined);
    run.restarts++;
  }
}

/**
 * A step, repeated when other processes disturbed it. A failed step's backlog is drained (or the
 * server restarted) in the same turn: a server taking turns must not still be sending it while
 * the next server's step runs.
 */
async function measureStep(trial: Trial, deliveriesPerSec: number): Promise<StepResult> {
  for (let attempt = 0;; attempt++) {
    const s = await inTurn(trial.turns, () => stepAndDrain(trial, deliveriesPerSec));
    if (!disturbed(s) || attempt === 2) return s;
    progress(
      `    (repeating the step: the machine is busy with something else)${trial.session.tag}`,
    );
    await sleep(3000);
  }
}

/** The knee (the ladder, then bisections), then latency, CPU and RSS at 80% of it. */
async function searchKnee(trial: Trial, hint: number | undefined) {
  const { sc, run } = trial;
  let [lo, hi] = await climb(trial, hint);
  // Then halve the gap a few times (geometrically).
  for (let i = 0; lo && hi && i < STEP.bisections; i++) {
    const mid = Math.sqrt(offered(lo, sc) * offered(hi, sc));
    const s = await measureStep(trial, mid);
    run.steps.push(s);
    if (s.pass) lo = s;
    else hi = s;
  }
  run.knee = lo;
  run.above = hi;
  if (lo === undefined) {
    run.kneeBelow = Math.min(...run.steps.map((s) => offered(s, sc)));
    return;
  }
  // The knee is the server's when the step above it failed on the server's side.
  run.kneeGenBound = hi === undefined || genBound(hi);
  // Latency, CPU and RSS at 80% of the knee: a loaded server that keeps up.
  for (let i = 0; i < STEP.latencyRepeats; i++) {
    const s = await measureStep(trial, offered(lo, sc) * 0.8);
    run.latency.push(s);
  }
}

/**
 * The ladder: double while the server keeps up; a failure is tried again
 * (STEP.retries: this 2-core box is noisy), and the search stops after that.
 * Returns the highest step that kept up and the failed step above it.
 */
async function climb(
  trial: Trial,
  hint: number | undefined,
): Promise<[StepResult | undefined, StepResult | undefined]> {
  const { sc, run } = trial;
  let rate = hint ?? sc.ladderStart;
  let lo: StepResult | undefined;
  let hi: StepResult | undefined;
  let failures = 0;
  for (let n = 0; n < 12; n++) {
    const s = await measureStep(trial, rate);
    run.steps.push(s);
    if (s.pass) {
      lo = s;
      failures = 0;
      rate *= 2;
      continue;
    }
    if (lo === undefined && hint !== undefined && rate > sc.ladderStart) {
      rate = Math.max(sc.ladderStart, rate / 4); // the hint was too high
      continue;
    }
    if (lo === undefined) {
      // Not even the start kept up: halve down to an eighth of it before giving up.
      hi = s;
      if (rate / 2 < sc.ladderStart / 8) break;
      rate /= 2;
      continue;
    }
    hi = s;
    if (++failures > STEP.retries || genBound(s)) break;
  }
  return [lo, hi];
}

/** The deliveries per second a step offered (what the ladder asked for). */
export const offered = (s: StepResult, sc: Scenario) => s.rate * sc.roomSize;
