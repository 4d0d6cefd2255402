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
 * the knee), figures.ts, report.ts (RESULTS.md) and chart.ts (results.svg).
 *
 * Usage:
 *   deno task bench                  the full run (~10 min); writes bench/RESULTS.md and results.svg
 *   deno task bench --quick          fewer, shorter steps and smaller N (~2 min); prints only
 *   deno task bench --targets hubbub-deno,ref-deno --scenarios one-room-1k
 *   deno task bench --write / --no-write   force writing the results, or not
 *
 * @module
 */
import { chart } from "./chart.ts";
import type { Results } from "./figures.ts";
import { progress } from "./format.ts";
import { offered, type Run, runScenario } from "./measure.ts";
import { BENCH, ONLY_SCENARIOS, REPEATED, REPEATS, WRITE } from "./options.ts";
import { output } from "./processes.ts";
import { machine, report } from "./report.ts";
import { SCENARIOS } from "./scenarios.ts";
import { prepareTargets } from "./servers.ts";

const started = performance.now();
// The runner itself lives on the generator's core, so the server's core is the server's alone.
await output("taskset", ["-a", "-p", "-c", "1", String(Deno.pid)]);
const all = await prepareTargets();
const targets = all.filter((t) => t.unavailable === undefined);
const skipped = all.filter((t) => t.unavailable !== undefined);
for (const t of skipped) progress(`skipping ${t.label}: ${t.unavailable}`);
// Before the run, so that the load average is the machine's, not ours.
const info = await machine();
const results: Results = new Map();
for (const t of targets) {
  progress(`${t.label}`);
  let hint: number | undefined;
  for (
    const sc of SCENARIOS.filter((s) =>
      (!ONLY_SCENARIOS || ONLY_SCENARIOS.includes(s.id)) &&
      (!t.scenarios || t.scenarios.includes(s.id))
    )
  ) {
    const repeats = sc.id === REPEATED.scenario && REPEATED.targets.includes(t.id) ? REPEATS : 1;
    const runs: Run[] = [];
    for (let i = 0; i < repeats; i++) {
      if (repeats > 1) progress(`  (${sc.id}, run ${i + 1} of ${repeats})`);
      runs.push(await runScenario(t, sc, hint));
    }
    // The median knee (failed runs sort first); all of them are listed in the report.
    const ranked = runs.slice().sort((a, b) =>
      (a.knee?.deliveredPerSec ?? -1) - (b.knee?.deliveredPerSec ?? -1)
    );
    const run = ranked[Math.floor((ranked.length - 1) / 2)];
    run.repeats = runs.length > 1 ? runs : undefined;
    if (!results.has(sc.id)) results.set(sc.id, new Map());
    results.get(sc.id)!.set(t.id, run);
    // A later scenario's ladder starts a few steps under this one's knee.
    if (run.knee && hint === undefined) {
      hint = Math.max(sc.ladderStart, offered(run.knee, sc) / 8);
    }
  }
}
const command = `deno task bench${Deno.args.length > 0 ? " " + Deno.args.join(" ") : ""}`;
const text = report(
  targets,
  skipped,
  results,
  info,
  command,
  (performance.now() - started) / 1000,
);
console.log(text);
if (WRITE) {
  await Deno.writeTextFile(
    `${BENCH}RESULTS.md`,
    text.replace(
      /\n## Goals/,
      "\n![Delivered messages per second at the knee, one room](results.svg)\n\n## Goals",
    ),
  );
  await Deno.writeTextFile(`${BENCH}results.svg`, chart(targets, results));
  progress(`wrote bench/RESULTS.md and bench/results.svg`);
}
