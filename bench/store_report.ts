/**
 * The history-store comparison (issue 15) as one section of RESULTS.md:
 * hubbub with its default store, SQLite, against the same server with
 * history in memory, for fan-out at the knee and for joins with history.
 * `deno task bench:history` rewrites only this section, between its markers.
 *
 * @module
 */
import { figures, kneeText, type Results } from "./figures.ts";
import { fmtKiB, fmtMs, fmtRate, pct, ratio } from "./format.ts";
import type { JoinRound, JoinRun } from "./joins.ts";
import { disturbed, offered, type Run } from "./measure.ts";
import { FOREIGN } from "./options.ts";
import { JOINS, SCENARIOS } from "./scenarios.ts";
import { goalRatio } from "./report.ts";

/** The markers around the section in RESULTS.md. */
export const BEGIN = "<!-- history-store: begin -->";
/** See BEGIN. */
export const END = "<!-- history-store: end -->";

/** The SQLite target and its memory twin, per runtime. */
const PAIRS = [
  { runtime: "Deno", sqlite: "hubbub-deno", memory: "hubbub-deno-memory" },
  { runtime: "Bun", sqlite: "hubbub-bun", memory: "hubbub-bun-memory" },
];

/** The goal: storing every message keeps this share of the memory store's knee. */
const GOAL = 0.9;

/** When and how the section was measured. */
export interface StoreContext {
  command: string;
  date: string;
  commit: string;
  minutes: number;
  loadBefore: string;
  loadAfter: string;
}

/** The section's lines, markers included; none when neither pair ran. */
export function storeSection(
  results: Results,
  joins: Map<string, JoinRun>,
  context: StoreContext,
): string[] {
  const fanOut = fanOutRows(results);
  const joinRows = joinsRows(joins);
  if (fanOut.length === 0 && joinRows.length === 0) return [];
  const out = [BEGIN, "## History store: SQLite ÷ memory (issue 15)", ""];
  out.push(
    `${context.date} · \`${context.command}\` · ${context.minutes.toFixed(1)} min · commit ` +
      `${context.commit} · load average (1, 5, 15 min) ${context.loadBefore} before the run, ` +
      `${context.loadAfter} after it (2 cores, shared: above ~0.5 other work ran meanwhile).`,
  );
  out.push("");
  if (fanOut.length > 0) {
    out.push(
      "| runtime, scenario | knee with SQLite | with memory | SQLite ÷ memory (goal ≥ 0.90) | met? | " +
        "p50 / p99 at 80%, SQLite · memory | server CPU at the same offered rate, SQLite · memory | " +
        "knees of every run, SQLite · memory |",
      "|---|---|---|---|---|---|---|---|",
      ...fanOut,
      "",
    );
    const steps = PAIRS.flatMap((p) => [p.sqlite, p.memory]).flatMap((id) =>
      [...results.values()].flatMap((byTarget) => {
        const run = byTarget.get(id);
        return (run?.repeats ?? (run ? [run] : [])).flatMap((r) => [...r.steps, ...r.latency]);
      })
    );
    out.push(
      `Steps that other processes disturbed (over ${pct(FOREIGN)} of a core, even after two ` +
        `repeats): ${steps.filter(disturbed).length} of ${steps.length}.`,
      "",
    );
  }
  if (joinRows.length > 0) {
    out.push(
      `**${JOINS.title}**: ${JOINS.clients} clients, each alone in its own channel holding ` +
        `${JOINS.fill} messages, leave and join again with \`"history":${JOINS.history}\` as ` +
        `soon as their last \`joined\` came; the SQLite and memory servers of a runtime run ` +
        `side by side and take turns, ${JOINS.rounds} rounds of ${JOINS.seconds} s each after a ` +
        "warm-up; the median round:",
      "",
      "| runtime | store | joins/s | SQLite ÷ memory | join round trip p50 / p99 / max | " +
        "server CPU | RSS | messages per `joined` | joins/s of every round |",
      "|---|---|---|---|---|---|---|---|---|",
      ...joinRows,
      "",
    );
  }
  out.push(...NOTES, "", END);
  return out;
}

/** One row per runtime and fan-out scenario that both stores went through. */
function fanOutRows(results: Results): string[] {
  const rows: string[] = [];
  for (const { runtime, sqlite, memory } of PAIRS) {
    for (const sc of SCENARIOS.filter((s) => s.traffic)) {
      const a = results.get(sc.id)?.get(sqlite), b = results.get(sc.id)?.get(memory);
      if (!a || !b) continue;
      const fa = figures(a), fb = figures(b);
      const [text, met] = goalRatio(fa, fb, GOAL);
      const same = sameRate(a, b);
      const knees = (run: Run) =>
        (run.repeats ?? [run]).map((r) => kneeText(figures(r))).join(", ");
      rows.push(
        `| ${runtime}, ${sc.id} | ${kneeText(fa)} | ${kneeText(fb)} | ${
          text.replace(/ \(.*\)$/, "")
        } | ${met} | ${fmtMs(fa?.p50)} / ${fmtMs(fa?.p99)} · ${fmtMs(fb?.p50)} / ${
          fmtMs(fb?.p99)
        } | ${
          same
            ? `${pct(same.a)} · ${pct(same.b)} at ${fmtRate(same.rate)}/s (${
              ratio(same.a, same.b)
            })`
            : "—"
        } | ${knees(a)} · ${knees(b)} |`,
      );
    }
  }
  return rows;
}

/**
 * Server CPU of both runs at one offered rate both kept up with: the
 * highest such rate at which neither server's core was nearly full (a full
 * core says nothing about cost), else the lowest.
 */
function sameRate(a: Run, b: Run): { rate: number; a: number; b: number } | undefined {
  const passed = (run: Run) =>
    (run.repeats ?? [run]).flatMap((r) => [...r.steps, ...r.latency])
      .filter((s) => s.pass).map((s) => ({ rate: offered(s, run.scenario), cpu: s.serverCpu }));
  const pa = passed(a), pb = passed(b);
  const common: { rate: number; a: number; b: number }[] = [];
  for (const x of pa) {
    const ys = pb.filter((y) => Math.abs(y.rate - x.rate) <= x.rate * 0.01);
    const xs = pa.filter((z) => Math.abs(z.rate - x.rate) <= x.rate * 0.01);
    if (ys.length === 0 || common.some((c) => Math.abs(c.rate - x.rate) <= x.rate * 0.01)) {
      continue;
    }
    const mid = (v: number[]) => v.sort((p, q) => p - q)[Math.floor((v.length - 1) / 2)];
    common.push({ rate: x.rate, a: mid(xs.map((z) => z.cpu)), b: mid(ys.map((y) => y.cpu)) });
  }
  common.sort((p, q) => p.rate - q.rate);
  const unsaturated = common.filter((c) => c.a < 0.9 && c.b < 0.9);
  return unsaturated.at(-1) ?? common[0];
}

/** One row per hubbub target that went through the joins, with its ratio to memory's. */
function joinsRows(joins: Map<string, JoinRun>): string[] {
  const rows: string[] = [];
  for (const { runtime, sqlite, memory } of PAIRS) {
    const mem = joins.get(memory)?.median;
    for (const [id, store] of [[sqlite, "SQLite"], [memory, "memory"]]) {
      const run = joins.get(id);
      if (!run) continue;
      if (run.error || !run.median) {
        rows.push(`| ${runtime} | ${store} | error: ${run.error?.slice(0, 120)} | | | | | | |`);
        continue;
      }
      const m: JoinRound = run.median;
      rows.push(
        `| ${runtime} | ${store} | ${fmtRate(m.joinsPerSec)} | ${
          id === sqlite ? ratio(m.joinsPerSec, mem?.joinsPerSec) : "1.00×"
        }${m.foreign > FOREIGN ? " †" : ""} | ${fmtMs(m.p50Us)} / ${fmtMs(m.p99Us)} / ${
          fmtMs(m.maxUs)
        } | ${pct(m.serverCpu)} | ${fmtKiB(m.rssKiB)} | ${
          m.minMessages === m.maxMessages ? m.minMessages : `${m.minMessages}–${m.maxMessages}`
        } | ${run.rounds.map((r) => fmtRate(r.joinsPerSec)).join(", ")} |`,
      );
    }
  }
  return rows;
}

const NOTES = [
  "- **SQLite** is hubbub's default store (`--data-dir`; here a fresh temporary directory on the",
  "  same ext4 disk for each server started, removed after); **memory** is the same server with",
  "  `--data-dir none`. Both store, number and trim every message; SQLite writes what each read",
  "  of the sockets brought (under load, 2 ms of reads) in one transaction before it is delivered.",
  "- Knees, ≥ and ≈ as in the fan-out tables: a ratio of two generator-bound knees (≈) cannot show",
  "  a cost on the server, so the table also gives the server's CPU at one offered rate that both",
  "  runs kept up with (the highest at which neither core was over 90%; ladders start at the same",
  "  rate, so the runs share steps). With `--history` each fan-out pair runs three times, taking",
  "  turns, and the median knee is shown, and the ladder is refined by three bisections (steps",
  "  about 9% apart) instead of two; a full `deno task bench` runs each once.",
  "- Joins: latency is from writing `leave` + `join` to reading `joined`; every `joined` is checked",
  "  to carry the 50 messages (about 11 KB). Each client has a channel of its own, so no presence",
  "  goes to other members: the figure is the join and its history. A round that other processes",
  "  disturbed (over a quarter of a core) is run again, twice at most; † marks one that stayed so.",
];
