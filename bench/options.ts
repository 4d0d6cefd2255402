/**
 * The run's options from the command line, and the settings that every
 * measurement of the run shares.
 *
 * @module
 */

/** The repository's root directory. */
export const ROOT = new URL("../", import.meta.url).pathname;
/** This directory, bench/. */
export const BENCH = new URL("./", import.meta.url).pathname;

const argv = [...Deno.args];
const has = (name: string) => argv.includes(name);
const valueOf = (name: string): string | undefined => {
  const at = argv.findIndex((arg) => arg === name || arg.startsWith(`${name}=`));
  if (at < 0) return undefined;
  return argv[at].includes("=") ? argv[at].split("=")[1] : argv[at + 1];
};
/** `--quick`: fewer, shorter steps and smaller N. */
export const QUICK = has("--quick");
/**
 * `--history`: only the history-store comparison (hubbub with SQLite and with
 * memory, on Deno and Bun: fan-out and joins with history), written into its
 * own section of RESULTS.md.
 */
export const HISTORY = has("--history");
/** Whether to write RESULTS.md and results.svg: `--write`, `--no-write`, else when not quick. */
export const WRITE = has("--write") || (!QUICK && !has("--no-write"));
/** `--targets a,b`: only these servers. */
export const ONLY_TARGETS = valueOf("--targets")?.split(",");
/**
 * `--against DIR`: one more target, `hubbub-deno-against`, hubbub on Deno
 * from another checkout (a git worktree of another commit), to compare two
 * builds; with `--paired`, their steps take turns.
 */
export const AGAINST = valueOf("--against")?.replace(/\/+$/, "");
/** `--scenarios a,b`: only these scenarios. */
export const ONLY_SCENARIOS = valueOf("--scenarios")?.split(",");

/** Client sockets are spread over these loopback sources: 16 × ~28k ports, no TIME_WAIT squeeze. */
export const SOURCES = Array.from({ length: 16 }, (_, i) => `127.0.1.${i + 1}`);

/** How a step is judged: at least this share delivered inside its window... */
export const KEPT_UP = 0.95;
/** ...and p99 latency under this. */
export const MAX_P99_MS = 250;
/** A core busier than this is saturated; a figure it bounds is marked ≥. */
export const BUSY = 0.95;
/**
 * The machine is shared: when processes other than ours take more than this
 * share of a core during a step, the step is repeated (twice at most) after a
 * pause, and flagged if it stays disturbed.
 */
export const FOREIGN = 0.25;

/**
 * Step length, drain wait, refinements of the knee, repeats of a failed step
 * and of the 80% step. `--history` refines once more: two bisections leave
 * steps 19% apart (50k, 59.5k, 70.7k), too coarse for its goal of 0.9×, where
 * one step lower reads 0.84×; three leave them 9% apart.
 */
export const STEP = QUICK
  ? { seconds: 1, drainMs: 1000, bisections: 1, retries: 0, latencyRepeats: 1 }
  : { seconds: 2, drainMs: 2000, bisections: HISTORY ? 3 : 2, retries: 1, latencyRepeats: 3 };

/**
 * The goal that compares two generator-saturated figures swings by a third
 * from run to run: in a full run, these servers go through that scenario
 * this many times, and the run with the median knee is reported.
 */
export const REPEATS = QUICK ? 1 : 3;
/** The scenario and the servers that it is repeated for. */
export const REPEATED = { scenario: "one-room-1k", targets: ["hubbub-bun", "ref-bun"] };

/**
 * Issue 17's generator-independent figure for Bun: server CPU time per
 * 1,000 deliveries at one offered load below both servers' knees, hubbub
 * on Bun against Bun's own `server.publish`. Measured right after the
 * warm-up of each of their runs of the scenario, `steps` times.
 */
export const FIXED_LOAD = {
  scenario: "one-room-1k",
  targets: ["hubbub-bun", "ref-bun"],
  deliveriesPerSec: 1_000_000,
  steps: QUICK ? 1 : 2,
};

/**
 * `--cpu-at RATE`: instead of the ladder, `CPU_AT.steps` steps at RATE
 * deliveries/s, each printing the server's CPU per 1,000 deliveries. A
 * comparison of two builds at one load, which wobbles far less than knees.
 */
export const CPU_AT = valueOf("--cpu-at") === undefined
  ? undefined
  : { deliveriesPerSec: Number(valueOf("--cpu-at")), steps: QUICK ? 2 : 5 };

/** The servers of the history-store comparison: each runtime with SQLite (the default) and memory. */
export const STORE_TARGETS = [
  "hubbub-deno",
  "hubbub-deno-memory",
  "hubbub-bun",
  "hubbub-bun-memory",
];

/**
 * Issue 17's small-rooms goal compares hubbub on Deno with the naive Deno
 * loop, and knees run minutes apart differ by a quarter here: in this
 * scenario those two take turns step by step (bench/turns.ts), so that a
 * slow minute lands on both. `--paired`: every scenario's servers do.
 */
export const PAIRED = {
  scenario: "small-rooms-10k",
  targets: ["hubbub-deno", "ref-deno"],
  all: has("--paired"),
};

/** Whether `target` takes turns step by step with the other such servers in `scenario`. */
export const takesTurns = (scenario: string, target: string) =>
  PAIRED.all || (scenario === PAIRED.scenario && PAIRED.targets.includes(target));

/** How many times `target` goes through the fan-out scenario `scenario` in this run. */
export function repeatsOf(scenario: string, target: string): number {
  if (scenario === REPEATED.scenario && REPEATED.targets.includes(target)) return REPEATS;
  // The store comparison's 0.9 goal is inside this box's run-to-run noise: take medians.
  if (HISTORY && STORE_TARGETS.includes(target)) return REPEATS;
  return 1;
}

/** Messages are padded so the references carry what a hubbub `message` line weighs. */
export const REF_PAD = 120;
