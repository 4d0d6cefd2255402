/**
 * The fan-out benchmark: runs hubbub (on Deno and on Bun) and three minimal
 * reference servers through the same scenarios in one run, and reports each
 * figure next to the references'.
 *
 * For every server and scenario it starts the server pinned to core 0 and
 * the load generator (bench/loadgen.mjs, Node) pinned to core 1, opens all
 * clients at once (the connect storm), measures the idle server, then steps
 * an open-loop message rate up until the server stops keeping up (the
 * knee), and measures latency at 80% of the knee. Server CPU and RSS come
 * from /proc, read here; the generator reports what its clients received.
 *
 * This file runs the whole; the parts are options.ts (flags and settings),
 * scenarios.ts, servers.ts (the servers under test), generator.ts (the load
 * generator), proc.ts (/proc), measure.ts (one server in one scenario, up to
 * the knee), joins.ts (joins with history), figures.ts, report.ts
 * (RESULTS.md), store_report.ts (its history-store section) and chart.ts
 * (results.svg).
 *
 * Usage:
 *   deno task bench                  the full run (~20 min); writes bench/RESULTS.md and results.svg
 *   deno task bench --quick          fewer, shorter steps and smaller N, no store comparison
 *                                    (~2 min); prints only
 *   deno task bench:history          the history-store comparison only (SQLite ÷ memory on Deno
 *                                    and Bun: fan-out knees, three runs each, and joins with
 *                                    history); rewrites only its section of bench/RESULTS.md
 *   deno task bench --targets hubbub-deno,ref-deno --scenarios one-room-1k
 *   deno task bench --write / --no-write   force writing the results, or not
 *   BUN=/path/to/bun deno task bench       this Bun (else bun on the PATH, else npx bun@1.4.5)
 *
 * @module
 */
import { chart } from "./chart.ts";
import type { Results } from "./figures.ts";
import { progress } from "./format.ts";
import { type JoinRun, runJoins } from "./joins.ts";
import { offered, type Run, runScenario } from "./measure.ts";
import { BENCH, HISTORY, repeatsOf, takesTurns, WRITE } from "./options.ts";
import { output } from "./processes.ts";
import { loadAverage, machine, report } from "./report.ts";
import { chosenScenario, JOINS, SCENARIOS } from "./scenarios.ts";
import { prepareTargets, stopAll, type Target } from "./servers.ts";
import { BEGIN, END, storeSection } from "./store_report.ts";
import { commonStart, Turns } from "./turns.ts";

const started = performance.now();
// Interrupted: no server (nor its temporary data directory) outlives the run.
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  Deno.addSignalListener(signal, async () => {
    progress(`${signal}: stopping the servers`);
    await stopAll();
    Deno.exit(130);
  });
}
// The runner itself lives on the generator's core, so the server's core is the server's alone.
await output("taskset", ["-a", "-p", "-c", "1", String(Deno.pid)]);
const all = await prepareTargets();
const targets = all.filter((t) => t.unavailable === undefined);
const skipped = all.filter((t) => t.unavailable !== undefined);
for (const t of skipped) progress(`skipping ${t.label}: ${t.unavailable}`);
// Before the run, so that the load average is the machine's, not ours.
const info = await machine();
const results: Results = new Map();
/** Per target: where a later scenario's ladder starts, a few steps under the first knee. */
const hints = new Map<string, number>();
const runs = (t: Target, id: string) => !t.scenarios || t.scenarios.includes(id);
for (const sc of SCENARIOS.filter((s) => chosenScenario(s.id))) {
  progress(sc.id);
  const chosen = targets.filter((t) => runs(t, sc.id));
  const done = new Map<string, Run[]>(chosen.map((t) => [t.id, []]));
  // Repeated runs take turns (A, B, A, B…), so that a busy minute on the machine hits both.
  const rounds = Math.max(0, ...chosen.map((t) => repeatsOf(sc.id, t.id)));
  for (let i = 0; i < rounds; i++) {
    const round = chosen.filter((t) => i < repeatsOf(sc.id, t.id));
    const label = (t: Target) => {
      const repeats = repeatsOf(sc.id, t.id);
      return `${t.label}${repeats > 1 ? ` (run ${i + 1} of ${repeats})` : ""}`;
    };
    for (const t of round.filter((t) => !takesTurns(sc.id, t.id))) {
      progress(`  ${label(t)}`);
      done.get(t.id)!.push(await runScenario(t, sc, hints.get(t.id)));
    }
    // The rest run at once, taking turns step by step (their progress lines interleave).
    const pair = round.filter((t) => takesTurns(sc.id, t.id));
    if (pair.length === 0) continue;
    progress(`  taking turns step by step: ${pair.map(label).join(" | ")}`);
    const turns = pair.length > 1 ? new Turns() : undefined;
    const start = commonStart(pair.map((t) => hints.get(t.id)));
    const runs = await Promise.all(pair.map((t) => runScenario(t, sc, start, turns)));
    pair.forEach((t, at) => done.get(t.id)!.push(runs[at]));
  }
  for (const t of chosen) {
    // The median knee (failed runs sort first); all of them are listed in the report.
    const all = done.get(t.id)!;
    const ranked = all.slice().sort((a, b) =>
      (a.knee?.deliveredPerSec ?? -1) - (b.knee?.deliveredPerSec ?? -1)
    );
    const run = ranked[Math.floor((ranked.length - 1) / 2)];
    run.repeats = all.length > 1 ? all : undefined;
    if (!results.has(sc.id)) results.set(sc.id, new Map());
    results.get(sc.id)!.set(t.id, run);
    if (run.knee && !hints.has(t.id)) {
      hints.set(t.id, Math.max(sc.ladderStart, offered(run.knee, sc) / 8));
    }
  }
}
const joins = new Map<string, JoinRun>();
if (chosenScenario(JOINS.id)) {
  progress(JOINS.id);
  // Per runtime, its SQLite and memory servers side by side, taking turns.
  const stored = targets.filter((t) => t.store !== undefined && t.protocol === "native");
  for (const runtime of ["deno", "bun"]) {
    const pair = stored.filter((t) => t.id.startsWith(`hubbub-${runtime}`));
    if (pair.length > 0) {
      for (const [id, run] of await runJoins(pair, JOINS)) joins.set(id, run);
    }
  }
}
const loadAfter = loadAverage();
const command = `deno task bench${Deno.args.length > 0 ? " " + Deno.args.join(" ") : ""}`;
const minutes = (performance.now() - started) / 60_000;
const store = storeSection(results, joins, {
  command: HISTORY && Deno.args.length === 1 ? "deno task bench:history" : command,
  date: info.date,
  commit: info.commit,
  minutes,
  loadBefore: info.loadavg,
  loadAfter,
});
if (HISTORY) {
  // Only the store comparison ran: it replaces its own section of RESULTS.md, nothing else.
  const text = store.join("\n") + "\n";
  console.log(text);
  if (WRITE) {
    const path = `${BENCH}RESULTS.md`;
    const old = await Deno.readTextFile(path);
    const [begin, end] = [old.indexOf(BEGIN), old.indexOf(END)];
    await Deno.writeTextFile(
      path,
      begin >= 0 && end > begin
        ? old.slice(0, begin) + text.trimEnd() + old.slice(end + END.length)
        : old.includes("\nHow to read this:")
        ? old.replace(/\nHow to read this:/, `\n${text}\nHow to read this:`)
        : `${old}\n${text}`,
    );
    progress(`wrote the history-store section of bench/RESULTS.md`);
  }
} else {
  const text = report(targets, skipped, results, info, command, minutes * 60, store);
  console.log(text);
  if (WRITE) {
    await Deno.writeTextFile(
      `${BENCH}RESULTS.md`,
      text.replace(
        /\n## Goals/,
        "\n![Delivered messages per second at the knee, one room](results.svg)\n\n## Goals",
      ),
    );
    const charted = targets.filter((t) => t.store !== "memory");
    await Deno.writeTextFile(`${BENCH}results.svg`, chart(charted, results));
    progress(`wrote bench/RESULTS.md and bench/results.svg`);
  }
}
