/**
 * Where a V8 CPU profile's time went (issue 17): self time aggregated by
 * function, and by where the code lives (hubbub's lib/, Deno's built-in
 * JavaScript, npm packages, V8's own entries such as the garbage
 * collector), idle left out. A flat, flame-graph-like top list for
 * bench/PROFILE.md.
 *
 * Usage: deno run --allow-read bench/profile_top.ts FILE.cpuprofile [--top 30] [--callers NAME]
 *          [--timeline] [--window FROM,TO]
 *
 * @module
 */

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

const [file] = Deno.args.filter((a) => a.endsWith(".cpuprofile"));
if (file === undefined) {
  console.error("Usage: deno run --allow-read bench/profile_top.ts FILE.cpuprofile [--top 30]");
  Deno.exit(2);
}
const topAt = Deno.args.indexOf("--top");
const TOP = topAt >= 0 ? Number(Deno.args[topAt + 1]) : 30;

const profile: Profile = JSON.parse(await Deno.readTextFile(file));
const byId = new Map(profile.nodes.map((n) => [n.id, n]));
// `--window FROM,TO`: only the samples between these seconds after the profile began (e.g. the
// steps at one load, without the connect storm and the closes); `--timeline` prints each second's
// share of samples not idle, to find that window.
const windowAt = Deno.args.indexOf("--window");
const [from, to] = windowAt >= 0
  ? Deno.args[windowAt + 1].split(",").map((s) => Number(s) * 1e6)
  : [0, Infinity];
const idleIds = new Set(
  profile.nodes.filter((n) => n.callFrame.functionName === "(idle)").map((n) => n.id),
);
const busyBySecond: number[] = [];
const selfUs = new Map<number, number>();
let at = 0;
for (let i = 0; i < profile.samples.length; i++) {
  at += profile.timeDeltas[i] ?? 0;
  // A sample's time is the delta to the next one.
  const dt = profile.timeDeltas[i + 1] ?? 0;
  const second = Math.floor(at / 1e6);
  if (!idleIds.has(profile.samples[i])) busyBySecond[second] = (busyBySecond[second] ?? 0) + dt;
  if (at < from || at >= to) continue;
  selfUs.set(profile.samples[i], (selfUs.get(profile.samples[i]) ?? 0) + dt);
}
if (Deno.args.includes("--timeline")) {
  const shares = Array.from(busyBySecond, (us) => `${Math.round((us ?? 0) / 1e4)}`);
  console.log(`JS and ops, % of each second: ${shares.join(" ")}\n`);
}

/** Where a function lives. */
function area(url: string, name: string): string {
  if (url === "") {
    if (name === "(garbage collector)") return "V8: garbage collector";
    if (name === "(program)") return "V8/runtime outside JS ((program))";
    if (name === "(idle)") return "idle";
    // Ops are Rust called from JS: a send's write (the syscall, when it is not deferred) counts here.
    if (name.startsWith("op_")) return "Deno ops (Rust; sends, reads)";
    return `V8: ${name}`;
  }
  if (url.includes("/lib/")) return `hubbub: ${url.slice(url.indexOf("/lib/") + 1).split("/")[1]}`;
  if (url.startsWith("ext:")) return `Deno: ${url.slice(4).split("/")[0]}`;
  if (url.includes("/npm/") || url.includes("node_modules")) return "npm packages";
  if (url.startsWith("node:")) return "Deno: node compat";
  return url.includes("main.ts") ? "hubbub: main.ts" : url;
}

const byFunction = new Map<string, number>();
const byArea = new Map<string, number>();
let total = 0, idle = 0;
for (const [id, us] of selfUs) {
  const { functionName, url, lineNumber } = byId.get(id)!.callFrame;
  const where = area(url, functionName);
  if (where === "idle") {
    idle += us;
    continue;
  }
  total += us;
  const short = url === "" ? "" : ` ${url.replace(/^.*\/(lib|bench)\//, "$1/")}:${lineNumber + 1}`;
  const key = `${functionName || "(anonymous)"}${short}`;
  byFunction.set(key, (byFunction.get(key) ?? 0) + us);
  byArea.set(where, (byArea.get(where) ?? 0) + us);
}

const pct = (us: number) => `${(100 * us / total).toFixed(1)}%`;
const sorted = (m: Map<string, number>) => [...m].sort((a, b) => b[1] - a[1]);
console.log(
  `${file}: ${(total / 1e6).toFixed(2)} s sampled in JS or ops, ${
    (idle / 1e6).toFixed(2)
  } s idle ` +
    `(the event loop, writes of spawned send tasks included; left out below)\n`,
);
console.log("| where | self time |\n|---|---|");
for (const [where, us] of sorted(byArea)) console.log(`| ${where} | ${pct(us)} |`);
console.log(`\n| function (top ${TOP} by self time) | self time |\n|---|---|`);
for (const [key, us] of sorted(byFunction).slice(0, TOP)) {
  console.log(`| \`${key}\` | ${pct(us)} |`);
}

// `--callers NAME`: who calls a function (e.g. `run`, node:sqlite's statement method), 3 deep.
const callersAt = Deno.args.indexOf("--callers");
if (callersAt >= 0) {
  const name = Deno.args[callersAt + 1];
  const parent = new Map<number, ProfileNode>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n);
  const byChain = new Map<string, number>();
  let sum = 0;
  for (const n of profile.nodes) {
    if (n.callFrame.functionName !== name) continue;
    const us = selfUs.get(n.id) ?? 0;
    sum += us;
    const chain: string[] = [];
    for (let at = parent.get(n.id), d = 0; at && d < 3; at = parent.get(at.id), d++) {
      chain.push(`${at.callFrame.functionName || "(anonymous)"}:${at.callFrame.lineNumber + 1}`);
    }
    byChain.set(chain.join(" < "), (byChain.get(chain.join(" < ")) ?? 0) + us);
  }
  console.log(`\n| callers of \`${name}\` (${(sum / 1e6).toFixed(2)} s) | share |\n|---|---|`);
  for (const [chain, us] of sorted(byChain)) {
    console.log(`| ${chain} | ${(100 * us / sum).toFixed(1)}% |`);
  }
}
