/**
 * Cross-node fan-out: the same room and the same open-loop load against one
 * hubbub node, then against two nodes sharing a Redis with the senders on
 * node A and every receiver on node B, so that each delivery crosses the
 * bus. Prints delivered messages/s and latency per offered rate, the knee
 * of each, and the two-node figures as ratios against the single node
 * measured in the same run.
 *
 *   deno task bench:cluster            # writes bench/CLUSTER.md
 *   deno task bench:cluster --quick    # shorter steps, no file
 *
 * Needs `redis-server` and `node` on the PATH. On a 2-core machine the two
 * nodes, Redis and the generator share the cores, so read the ratios, not
 * the absolute figures.
 *
 * @module
 */
const QUICK = Deno.args.includes("--quick");
const ROOT = new URL("../", import.meta.url);
const CLIENTS = 500;
const SENDERS = 5;
const STEP_SECONDS = QUICK ? 1 : 3;
/** Offered deliveries per second (messages/s × members). */
const LADDER = QUICK
  ? [25_000, 100_000, 400_000]
  : [50_000, 100_000, 200_000, 400_000, 800_000, 1_600_000, 3_200_000];
const KEPT_UP = 0.95;
const MAX_P99_MS = 250;
const HUBBUB_FLAGS = [
  ...["--connect-rate", "100000", "--max-connections-per-ip", "100000"],
  ...["--rate-limit", "100000", "--rate-burst", "100000", "--hostname", "127.0.0.1"],
];

interface Step {
  offered: number;
  deliveredPerSec: number;
  deliveredInWindow: number;
  p50Us: number | null;
  p99Us: number | null;
  missing: number;
  outOfOrder: number;
  pass: boolean;
}

/** A child whose stdout is read line by line. */
function spawn(cmd: string, args: string[], stdin: "piped" | "null" = "null") {
  const child = new Deno.Command(cmd, {
    args,
    cwd: ROOT,
    stdin,
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let buffered = "";
  const nextLine = async (): Promise<string | null> => {
    for (;;) {
      const newline = buffered.indexOf("\n");
      if (newline >= 0) {
        const line = buffered.slice(0, newline);
        buffered = buffered.slice(newline + 1);
        return line;
      }
      const { value, done } = await reader.read();
      if (done) return null;
      buffered += value;
    }
  };
  const until = async (pattern: RegExp): Promise<RegExpMatchArray> => {
    for (;;) {
      const line = await nextLine();
      if (line === null) throw new Error(`${cmd} exited before printing ${pattern}`);
      const match = line.match(pattern);
      if (match) return match;
    }
  };
  const drain = async () => {
    while ((await nextLine()) !== null) { /* keep the pipe flowing */ }
  };
  return { child, until, drain };
}

function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

async function startNode(args: string[]) {
  const node = spawn(Deno.execPath(), [
    "run",
    "--allow-net",
    "--allow-env",
    "main.ts",
    "--port",
    "0",
    ...HUBBUB_FLAGS,
    ...args,
  ]);
  const [, port] = await node.until(/listening on http:\/\/[^:]+:(\d+)\//);
  node.drain();
  return { ...node, port: Number(port) };
}

async function stop(child: Deno.ChildProcess) {
  try {
    child.kill("SIGTERM");
  } catch { /* gone */ }
  await child.status;
}

/** Runs the ladder with the senders on `senderPort` and the receivers on `port`. */
async function ladder(port: number, senderPort: number): Promise<Step[]> {
  const gen = spawn("node", ["bench/loadgen.mjs"], "piped");
  const writer = gen.child.stdin.getWriter();
  const send = (command: unknown) =>
    writer.write(new TextEncoder().encode(JSON.stringify(command) + "\n"));
  const event = async <T>(name: string): Promise<T> =>
    JSON.parse((await gen.until(new RegExp(`^\\{"ev":"${name}"`))).input!) as T;
  await send({
    cmd: "setup",
    host: "127.0.0.1",
    port,
    senderPort,
    path: "/ws",
    protocol: "native",
    clients: CLIENTS,
    roomSize: CLIENTS,
    sendersPerRoom: SENDERS,
    sources: ["127.0.0.1"],
    timeoutMs: 60_000,
  });
  const ready = await event<{ ready: number }>("ready");
  if (ready.ready < CLIENTS) throw new Error(`only ${ready.ready}/${CLIENTS} clients ready`);
  const steps: Step[] = [];
  for (const offered of LADDER) {
    await send({
      cmd: "step",
      rate: offered / CLIENTS,
      seconds: STEP_SECONDS,
      drainMs: 2000,
      padTo: 0,
    });
    const s = await event<Omit<Step, "offered" | "pass"> & { expected: number }>("step");
    const kept = s.deliveredInWindow / Math.max(1, s.expected);
    const pass = kept >= KEPT_UP && (s.p99Us ?? Infinity) / 1000 <= MAX_P99_MS;
    steps.push({ ...s, offered, pass });
    console.error(
      `  ${fmtRate(offered)}/s offered: ${fmtRate(s.deliveredPerSec)}/s delivered, ` +
        `p50 ${fmtMs(s.p50Us)} p99 ${fmtMs(s.p99Us)} ${pass ? "ok" : "FAIL"}`,
    );
    if (!pass) break;
    await send({ cmd: "settle", quietMs: 300, maxMs: 5000 });
    await event("settled");
  }
  await send({ cmd: "quit" });
  await gen.child.status;
  return steps;
}

const fmtRate = (n: number) =>
  n >= 1e6 ? `${(n / 1e6).toFixed(2)}M` : n >= 1e3 ? `${(n / 1e3).toFixed(1)}k` : n.toFixed(0);
const fmtMs = (us: number | null | undefined) => us == null ? "—" : `${(us / 1000).toFixed(1)} ms`;
const knee = (steps: Step[]) => steps.filter((s) => s.pass).at(-1);

// ---------------------------------------------------------------- the run

const redisPort = freePort();
const redis = spawn("redis-server", [
  ...["--port", String(redisPort), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
]);
await redis.until(/Ready to accept connections/);
redis.drain();
const redisUrl = `redis://127.0.0.1:${redisPort}`;

console.error(`one node, ${CLIENTS} clients in one room, ${SENDERS} senders`);
const single = await startNode([]);
const alone = await ladder(single.port, single.port);
await stop(single.child);

console.error(`two nodes on Redis: senders on node A, ${CLIENTS - SENDERS} receivers on node B`);
const a = await startNode(["--redis-url", redisUrl]);
const b = await startNode(["--redis-url", redisUrl]);
const crossed = await ladder(b.port, a.port);
await Promise.all([stop(a.child), stop(b.child)]);
await stop(redis.child);

const rows = LADDER.map((offered) => {
  const one = alone.find((s) => s.offered === offered);
  const two = crossed.find((s) => s.offered === offered);
  const ratio = one && two ? `${(two.deliveredPerSec / one.deliveredPerSec).toFixed(2)}×` : "—";
  const cell = (s?: Step) =>
    s
      ? `${fmtRate(s.deliveredPerSec)} · ${fmtMs(s.p50Us)} / ${fmtMs(s.p99Us)}${
        s.pass ? "" : " (over)"
      }`
      : "—";
  return `| ${fmtRate(offered)} | ${cell(one)} | ${cell(two)} | ${ratio} |`;
});
const kneeOne = knee(alone), kneeTwo = knee(crossed);
const lost = crossed.reduce((n, s) => n + Math.max(0, s.missing) + s.outOfOrder, 0);
const report = [
  "# hubbub cluster benchmark",
  "",
  `${new Date().toISOString()} · \`deno task bench:cluster${
    QUICK ? " --quick" : ""
  }\` · ${navigator.hardwareConcurrency} cores · Deno ${Deno.version.deno}`,
  "",
  `One room of ${CLIENTS} native clients, ${SENDERS} senders, ${STEP_SECONDS} s per step.`,
  "Single node: everyone on one node. Two nodes: the senders on node A, every receiver on",
  "node B, so each message crosses Redis pub/sub once and node B fans it out.",
  "",
  "| offered deliveries/s | one node: delivered · p50 / p99 | two nodes: delivered · p50 / p99 | two ÷ one |",
  "|---|---|---|---|",
  ...rows,
  "",
  `Knee (highest step with ≥ ${
    KEPT_UP * 100
  }% delivered in the window and p99 ≤ ${MAX_P99_MS} ms): ` +
  `one node ${kneeOne ? fmtRate(kneeOne.deliveredPerSec) : "below the ladder"}, ` +
  `two nodes ${kneeTwo ? fmtRate(kneeTwo.deliveredPerSec) : "below the ladder"}` +
  (kneeOne && kneeTwo
    ? ` (${(kneeTwo.deliveredPerSec / kneeOne.deliveredPerSec).toFixed(2)}×)`
    : "") +
  `. Lost or reordered across nodes, in passing steps: ${lost}.`,
  "",
].join("\n");
console.log(report);
if (!QUICK) await Deno.writeTextFile(new URL("bench/CLUSTER.md", ROOT), report);
