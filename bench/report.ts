/**
 * The report, printed and written to bench/RESULTS.md: the machine, the
 * goals, a table per scenario and every step.
 *
 * @module
 */
import { type Figures, figures, kneeRatio, kneeText, type Results } from "./figures.ts";
import { fmtKiB, fmtMs, fmtRate, median, pct, ratio } from "./format.ts";
import { cpuPerThousand, disturbed, offered } from "./measure.ts";
import {
  BENCH,
  FIXED_LOAD,
  FOREIGN,
  KEPT_UP,
  MAX_P99_MS,
  PAIRED,
  QUICK,
  REF_PAD,
  REPEATS,
  STEP,
} from "./options.ts";
import { output } from "./processes.ts";
import { SCENARIOS } from "./scenarios.ts";
import { findBun, type Target } from "./servers.ts";

/** What the report says about the machine and the software versions. */
export async function machine() {
  const cpuinfo = Deno.readTextFileSync("/proc/cpuinfo");
  const model = /model name\s*:\s*(.*)/.exec(cpuinfo)?.[1]?.trim() ?? "unknown";
  const wsVersion = (() => {
    try {
      return JSON.parse(
        Deno.readTextFileSync(`${BENCH}node/node_modules/ws/package.json`),
      ).version;
    } catch {
      return "?";
    }
  })();
  return {
    nproc: await output("nproc", ["--all"]) ?? "?",
    model,
    kernel: await output("uname", ["-r"]) ?? "?",
    memory: `${
      (Number(
        /MemTotal:\s+(\d+)/.exec(Deno.readTextFileSync("/proc/meminfo"))?.[1],
      ) / 2 ** 20)
        .toFixed(0)
    } GiB`,
    nofile: await output("bash", ["-c", "ulimit -Hn"]) ?? "?",
    deno: Deno.version.deno,
    bun: await findBun().then((bun) => bun && output(bun, ["--version"])) ?? "not installed",
    node: (await output("node", ["--version"]) ?? "?").replace(/^v/, ""),
    ws: wsVersion,
    date: new Date().toISOString().replace(/\.\d+Z$/, "Z"),
    commit: await output("git", ["rev-parse", "--short", "HEAD"]) ?? "?",
    loadavg: loadAverage(),
  };
}

/** The 1, 5 and 15 minute load averages, as /proc/loadavg says them. */
export function loadAverage(): string {
  return Deno.readTextFileSync("/proc/loadavg").split(" ").slice(0, 3).join(" ");
}

/** The report in Markdown; `sections` go after the tables, before the notes. */
export function report(
  targets: Target[],
  skipped: Target[],
  results: Results,
  info: Awaited<ReturnType<typeof machine>>,
  command: string,
  seconds: number,
  sections: string[] = [],
): string {
  const out: string[] = [];
  out.push(...header(results, info, command, seconds));
  out.push(...goals(results));
  if (skipped.length > 0) {
    out.push(
      skipped.map((t) => `- **${t.label} was not run**: ${t.unavailable}`).join(
        "\n",
      ),
    );
    out.push("");
  }
  out.push(...fanOut(targets, results));
  out.push(...idleAndStorm(targets, results));
  out.push(...sections);
  out.push(
    ...NOTES.map((line) =>
      line.replaceAll("$REF_PAD", String(REF_PAD))
        .replaceAll("$PAIRED_SCENARIO", PAIRED.all ? "every scenario" : PAIRED.scenario)
        .replaceAll(
          "$PAIRED_TARGETS",
          PAIRED.all
            ? "the servers"
            : PAIRED.targets.map((id) => targets.find((t) => t.id === id)?.label ?? id)
              .join(" and "),
        )
    ),
  );
  out.push(...everyStep(targets, results));
  return out.join("\n") + "\n";
}

/** The title, the command and the machine, and whether others disturbed the run. */
function header(
  results: Results,
  info: Awaited<ReturnType<typeof machine>>,
  command: string,
  seconds: number,
): string[] {
  const out: string[] = [];
  out.push(`# hubbub fan-out benchmark${QUICK ? " (quick mode)" : ""}`);
  out.push("");
  out.push(
    `${info.date} · \`${command}\` · ${(seconds / 60).toFixed(1)} min · commit ${info.commit}`,
  );
  out.push("");
  out.push(
    `Machine: ${info.nproc} cores (${info.model}), ${info.memory}, Linux ${info.kernel}, ` +
      `descriptor limit ${info.nofile}, load average before the run ${info.loadavg}. ` +
      `Deno ${info.deno}, Bun ${info.bun}, Node ${info.node}, ws ${info.ws}.`,
  );
  const allSteps = [...results.values()].flatMap((m) =>
    [...m.values()].flatMap((
      r,
    ) => [...(r.repeats ?? [r]).flatMap((x) => [...x.steps, ...x.latency, ...x.fixed])])
  );
  const busy = allSteps.filter(disturbed).length;
  if (busy > 0) {
    out.push(
      `**The machine was not ours alone**: in ${busy} of ${allSteps.length} steps other processes ` +
        `took over ${
          pct(FOREIGN)
        } of a core even after two repeats (marked † under "Every step"); ` +
        "figures from those steps measured them too.",
    );
    out.push("");
  }
  return out;
}

/** The goals table: each goal, what was measured and whether it is met. */
function goals(results: Results): string[] {
  const out: string[] = [];
  const get = (sc: string, t: string) => figures(results.get(sc)?.get(t));
  const one = (t: string) => get("one-room-1k", t);
  out.push("## Goals (native protocol, one room of 1,000 clients)");
  out.push("");
  out.push("| goal | measured | met? |");
  out.push("|---|---|---|");
  const hb = one("hubbub-bun"),
    rb = one("ref-bun"),
    hd = one("hubbub-deno"),
    rd = one("ref-deno");
  const [hbText0, hbMet] = goalRatio(hb, rb, 0.9);
  const runsOf = (id: string) => {
    const runs = results.get("one-room-1k")?.get(id)?.repeats;
    return runs?.map((r) => kneeText(figures(r))).join(", ");
  };
  const hbText = runsOf("hubbub-bun") && runsOf("ref-bun")
    ? `${hbText0}; medians of ${REPEATS} runs each: hubbub on Bun ${runsOf("hubbub-bun")}, ` +
      `Bun publish ${runsOf("ref-bun")}`
    : hbText0;
  out.push(
    `| hubbub on Bun ÷ Bun publish, delivered msgs/s ≥ 0.90 | ${hbText} | ${hbMet} |`,
  );
  out.push(fixedLoadGoal(results));
  const [hwText, hwMet] = goalRatio(one("hubbub-bun-wsify"), rb, 0.8);
  out.push(
    `| dialect traffic (wsify, one frame per message), hubbub on Bun ÷ Bun publish ≥ 0.80 | ${hwText} | ${hwMet} |`,
  );
  const [hdText, hdMet] = goalRatio(hd, rd, 10);
  out.push(
    `| hubbub on Deno ÷ Deno naive, delivered msgs/s ≥ 10× | ${hdText} | ${hdMet} |`,
  );
  for (const t of ["hubbub-deno", "hubbub-bun"]) {
    const f = one(t);
    if (!f) continue;
    out.push(
      `| p99 latency at 80% of the knee, ${
        t.replace("-", " on ").replace("deno", "Deno").replace("bun", "Bun")
      } | ${fmtMs(f.p99)} (p50 ${fmtMs(f.p50)}, max ${fmtMs(f.max)}; Bun publish ${
        fmtMs(rb?.p99)
      }, Node ws ${fmtMs(one("ref-node")?.p99)}) | ${
        f.p99 === undefined ? "—" : f.p99 < 50_000 ? "yes (< 50 ms)" : "**no** (≥ 50 ms)"
      } |`,
    );
  }
  const mb = perConn(results, "hubbub-bun"), mr = perConn(results, "ref-bun");
  out.push(
    `| idle memory per connection, hubbub on Bun ÷ Bun publish ≤ 2× (${
      idleScenario().clients.toLocaleString("en")
    } clients) | ${
      mb !== undefined && mr !== undefined
        ? `${ratio(mb, mr)} (${fmtKiB(mb)} vs ${fmtKiB(mr)})`
        : "not measured"
    } | ${mb !== undefined && mr !== undefined ? (mb <= 2 * mr ? "yes" : "**no**") : "—"} |`,
  );
  const hubbubRuns = [...results.values()].flatMap((m) =>
    ["hubbub-deno", "hubbub-bun", "hubbub-deno-memory", "hubbub-bun-memory"]
      .map((t) => figures(m.get(t))).filter((f) => f !== undefined)
  );
  const lost = hubbubRuns.reduce((n, f) => n + f!.lost, 0);
  const ooo = hubbubRuns.reduce((n, f) => n + f!.outOfOrder, 0);
  out.push(
    `| no loss or reordering below the knee (hubbub, every scenario) | ${lost} lost, ${ooo} out of order | ${
      hubbubRuns.length === 0 ? "—" : lost === 0 && ooo === 0 ? "yes" : "**no**"
    } |`,
  );
  out.push("");
  return out;
}

/**
 * Issue 17's goal 4: server CPU per 1,000 deliveries at `FIXED_LOAD`, hubbub on Bun ÷ Bun
 * publish, the median of every step that kept up across all their runs. The generator keeps up
 * at this load, so the figure is the servers' own, whatever the knees say.
 */
function fixedLoadGoal(results: Results): string {
  const { scenario, deliveriesPerSec } = FIXED_LOAD;
  const [hubbub, reference] = FIXED_LOAD.targets.map((t) => {
    const run = results.get(scenario)?.get(t);
    const steps = (run?.repeats ?? (run ? [run] : [])).flatMap((r) => r.fixed);
    const kept = steps.filter((s) => s.pass);
    const perThousand = kept.length > 0 ? median(kept.map(cpuPerThousand)) : undefined;
    return { perThousand, kept: kept.length, of: steps.length };
  });
  const goal = `server CPU per 1,000 deliveries at ${
    fmtRate(deliveriesPerSec)
  }/s offered (one room of 1,000), hubbub on Bun ÷ Bun publish ≤ 1.10`;
  if (hubbub.perThousand === undefined || reference.perThousand === undefined) {
    return `| ${goal} | not measured | — |`;
  }
  const r = hubbub.perThousand / reference.perThousand;
  const fmt = (ms: number) => `${ms.toFixed(3)} ms`;
  return `| ${goal} | ${ratio(hubbub.perThousand, reference.perThousand)} (${
    fmt(hubbub.perThousand)
  } vs ${
    fmt(reference.perThousand)
  }; medians of ${hubbub.kept} and ${reference.kept} steps that kept up, of ${hubbub.of} and ${reference.of}) | ${
    r <= 1.1 ? "yes" : "**no**"
  } |`;
}

/** A goal that is a ratio of two knees: the measured text and whether it is met. */
export function goalRatio(
  a: Figures | undefined,
  b: Figures | undefined,
  want: number,
) {
  if (!a?.knee || !b?.knee) return ["not measured", "—"];
  const r = a.knee / b.knee;
  const text = `${kneeRatio(a, b)} (${kneeText(a)} vs ${kneeText(b)} msgs/s)`;
  // A ≥ figure is a lower bound: hubbub's makes the ratio one, the reference's an upper bound.
  if (a.kneeGe && b.kneeGe) return [text, "inconclusive: the generator bounded both"];
  if (a.kneeGe && r < want) return [text, "inconclusive: hubbub's figure is a lower bound"];
  if (b.kneeGe && r >= want) {
    return [text, "inconclusive: the reference's figure is a lower bound"];
  }
  return [text, r >= want ? "yes" : "**no**"];
}

/** The scenario whose connect phase is the storm and the idle measurement. */
const idleScenario = () => SCENARIOS.find((s) => s.idle)!;

/** Idle RSS per connection of target `t`, in KiB, when it was measured. */
function perConn(results: Results, t: string): number | undefined {
  const run = results.get(idleScenario().id)?.get(t);
  if (!run || run.idleRssKiB === undefined || run.baseRssKiB === undefined) {
    return undefined;
  }
  return (run.idleRssKiB - run.baseRssKiB) / run.scenario.clients;
}

/** One table per traffic scenario: delivered messages per second and the rest. */
function fanOut(targets: Target[], results: Results): string[] {
  const out: string[] = [];
  const get = (sc: string, t: string) => figures(results.get(sc)?.get(t));
  const refs = ["ref-bun", "ref-node", "ref-deno"];
  for (const sc of SCENARIOS.filter((s) => s.traffic)) {
    out.push(`## ${sc.title}: delivered messages per second`);
    out.push("");
    out.push(
      "| server | delivered msgs/s at the knee | ÷ Bun publish | ÷ Node ws | ÷ Deno naive | " +
        "p50 / p99 / max at 80% | p99 ÷ Bun / Node | server CPU at knee / 80% | RSS at 80% | frames per delivery | lost / out of order |",
    );
    out.push("|---|---|---|---|---|---|---|---|---|---|---|");
    for (const t of targets) {
      const f = get(sc.id, t.id);
      if (!f) continue;
      if (f.error) {
        out.push(
          `| ${t.label} | error: ${f.error.split("\n")[0].slice(0, 120)} | | | | | | | | | |`,
        );
        continue;
      }
      const [bun, node, naive] = refs.map((r) => get(sc.id, r));
      out.push(
        `| ${t.label} | ${kneeText(f)} | ${kneeRatio(f, bun)} | ${kneeRatio(f, node)} | ${
          kneeRatio(f, naive)
        } | ${fmtMs(f.p50)} / ${fmtMs(f.p99)} / ${fmtMs(f.max)} | ${ratio(f.p99, bun?.p99)} / ${
          ratio(f.p99, node?.p99)
        } | ${pct(f.serverCpuKnee ?? NaN)} / ${pct(f.serverCpu80 ?? NaN)} | ${
          fmtKiB(f.rss80 ?? NaN)
        } | ${
          f.framesPerDelivery === undefined ? "—" : f.framesPerDelivery.toFixed(3)
        } | ${f.lost} / ${f.outOfOrder} |`,
      );
    }
    out.push("");
  }
  return out;
}

/** The idle memory and connect storm table. */
function idleAndStorm(targets: Target[], results: Results): string[] {
  const out: string[] = [];
  const idle = idleScenario();
  out.push(`## ${idle.title}: idle memory and the connect storm`);
  out.push("");
  out.push(
    "| server | idle RSS per connection | ÷ Bun publish | ÷ Node ws | idle CPU | storm: all ready in | ready/s | ÷ Bun publish | ÷ Node ws | connect p50 / p99 | failed |",
  );
  out.push("|---|---|---|---|---|---|---|---|---|---|---|");
  for (const t of targets) {
    const run = results.get(idle.id)?.get(t.id);
    if (!run) continue;
    const rate = (id: string) => {
      const r = results.get(idle.id)?.get(id)?.storm;
      return r?.allReadyMs ? r.ready / (r.allReadyMs / 1000) : undefined;
    };
    const storm = run.storm;
    out.push(
      `| ${t.label} | ${fmtKiB(perConn(results, t.id) ?? NaN)} | ${
        ratio(perConn(results, t.id), perConn(results, "ref-bun"))
      } | ${ratio(perConn(results, t.id), perConn(results, "ref-node"))} | ${
        pct(run.idleCpu ?? NaN)
      } | ${storm?.allReadyMs ? fmtMs(storm.allReadyMs * 1000) : "—"} | ${
        fmtRate(rate(t.id) ?? NaN)
      } | ${ratio(rate(t.id), rate("ref-bun"))} | ${ratio(rate(t.id), rate("ref-node"))} | ${
        fmtMs((storm?.connectP50Ms ?? NaN) * 1000)
      } / ${fmtMs((storm?.connectP99Ms ?? NaN) * 1000)} | ${storm?.failed ?? "—"} |`,
    );
  }
  out.push("");
  return out;
}

/** Every step of every run, folded away, for whoever wants to check a figure. */
function everyStep(targets: Target[], results: Results): string[] {
  const out: string[] = [];
  out.push("");
  out.push("<details><summary>Every step</summary>");
  out.push("");
  out.push(
    "| scenario | server | offered msgs/s | delivered msgs/s | in window | p50 / p99 | server CPU | generator CPU / core | unread by the generator | RSS | result |",
  );
  out.push("|---|---|---|---|---|---|---|---|---|---|---|");
  for (const sc of SCENARIOS) {
    for (const t of targets) {
      const run = results.get(sc.id)?.get(t.id);
      if (!run) continue;
      for (const s of [...run.fixed, ...run.steps, ...run.latency]) {
        out.push(
          `| ${sc.id} | ${t.id} | ${fmtRate(offered(s, sc))} | ${fmtRate(s.deliveredPerSec)} | ${
            pct(s.deliveredInWindow / Math.max(1, s.expected))
          } | ${fmtMs(s.p50Us)} / ${fmtMs(s.p99Us)} | ${pct(s.serverCpu)} | ${pct(s.genCpu)} / ${
            pct(s.genCore)
          } | ${pct(s.genShare)} | ${fmtKiB(s.rssKiB)} | ${
            s.pass ? "ok" : `${s.why} (${s.genBound ? "generator" : "server"})`
          }${disturbed(s) ? ` † others took ${pct(s.foreign)} of a core` : ""}${
            run.latency.includes(s)
              ? " (80% of knee)"
              : run.fixed.includes(s)
              ? " (fixed load: CPU per delivery)"
              : ""
          } |`,
        );
      }
    }
  }
  out.push("");
  out.push("</details>");
  return out;
}

const NOTES = [
  "How to read this:",
  "",
  "- **Delivered msgs/s** counts every message a client received (one broadcast into a room of N",
  "  is N deliveries, the sender's copy included). The **knee** is the highest offered rate, on a",
  `  doubling ladder refined by bisection, at which ≥${
    KEPT_UP * 100
  }% of what was due arrived inside`,
  `  the ${STEP.seconds} s sending window with p99 ≤ ${MAX_P99_MS} ms and no client dropped. Sending is`,
  "  open-loop: the schedule does not wait for the server, and latency is measured from when a",
  "  message was due to be sent (its text carries that time and a per-sender sequence number).",
  "- **≥** marks a knee the load generator bounded: the step above it failed on our side (we could",
  "  not keep the send schedule, or most of what was due at the end of the window sat unread in the",
  "  clients' kernel receive queues, read from /proc/net/tcp, or our own CPU was over 95% with a",
  "  fair share of it there). Otherwise the server had not yet written what was due, and the knee is",
  "  the server's. Ratios between two ≥ figures are marked ≈: they say little about the servers. On",
  "  2 cores the kernel's loopback TCP work is most of both cores' time near the top of the ladder.",
  "- Server and generator run on separate cores (`taskset -c 0` / `-c 1`); server CPU and RSS",
  "  come from /proc. **Frames per delivery** is hubbub's own count (`/metrics`): how many",
  "  WebSocket frames it wrote per message delivered (1 = no coalescing).",
  "- hubbub stores every message (issue 15) in its default store, SQLite, in a fresh temporary",
  "  data directory for each server started (removed after; WAL, `synchronous=NORMAL`); the",
  "  rows marked **memory store** run the same server with `--data-dir none`.",
  "- The references speak a one-line protocol (`/?room=R`, every frame to every member) with",
  "  messages padded to $REF_PAD bytes, about what a hubbub `message` line weighs; hubbub speaks its",
  "  own JSON protocol (login, join, broadcast). **Lost** counts deliveries still missing 2 s after",
  "  a step at or below the knee; **out of order** counts messages that arrived after a later",
  "  one from the same sender.",
  "- **Server CPU per 1,000 deliveries** (a goal row) comes from steps at one fixed offered load,",
  "  run right after the warm-up of each run of hubbub on Bun and of Bun publish in one room of",
  "  1,000: the server's CPU time in the window (from /proc) ÷ what was delivered. The load is",
  "  below both knees and the generator keeps up with it, so this compares the servers' own cost",
  "  where their knees only show the generator's limit.",
  "- **Idle RSS per connection** is (RSS with every client connected and joined, idle for 1 s) −",
  "  (RSS before any client), ÷ clients. The **storm** opens every client at once; for hubbub",
  "  'ready' means logged in and joined (three round trips), for the references the upgrade.",
  "- On this box identical runs differ by ±10–30% near the knee, so compare ratios within one run",
  "  rather than figures across runs. The full run repeats the one-room-1k scenario three times",
  "  for hubbub on Bun and Bun publish (whose ratio is a goal) and reports the median run;",
  "  everything else is one run.",
  "- In $PAIRED_SCENARIO, $PAIRED_TARGETS **take turns step by step**: both are connected at once",
  "  and their ladders interleave (one's step, then the other's; the one waiting sits idle with its",
  "  clients connected), so a slow minute of this box lands on both and their ratio is fair (issue",
  "  17's small-rooms goal). `--paired` makes every scenario's servers take turns.",
];
