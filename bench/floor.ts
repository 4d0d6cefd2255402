/**
 * Deno's floor (issue 17): the most WebSocket frames per second that Deno
 * can put on sockets from ONE core when nothing is parsed, routed or
 * encoded per frame, the payload serialized once. hubbub's one-frame-per-
 * message paths (dialects, rooms too small to coalesce) cannot beat it; its
 * figures are judged as a share of it.
 *
 * The server (bench/floor_server.ts, Deno) is pinned to core 0 and the
 * receivers (bench/floor_clients.mjs, Node, byte counters only) to core 1.
 * Each variant sends for a few seconds, waits until every socket's buffer
 * is written, and counts what the receivers got: frames/s is delivered
 * frames over that wall time; frames per CPU-second is the same over the
 * server's CPU time (the figure when the server's core is not saturated).
 * A figure whose receivers' core was over 95% busy is marked ≥.
 *
 * Usage: deno task bench:floor [--seconds 3] [--repeats 3]
 *
 * @module
 */
import { BENCH, BUSY, SOURCES } from "./options.ts";
import { Lines, pinned } from "./processes.ts";
import { coreBusy, sample } from "./proc.ts";

const arg = (name: string, fallback: number) => {
  const at = Deno.args.indexOf(name);
  return at >= 0 ? Number(Deno.args[at + 1]) : fallback;
};
const SECONDS = arg("--seconds", 3);
const REPEATS = arg("--repeats", 3);
/** hubbub's `message` line and the references' padded messages weigh about this. */
const PAYLOAD = 120;
/** A server frame of under 126 bytes has a 2-byte header. */
const FRAME_BYTES = PAYLOAD + 2;

interface Variant {
  label: string;
  kind: "string" | "bytes";
  perTurn: number;
  burst: number;
}

/** Per socket count: what is sent per turn of the event loop. */
const PLAN: [number, Variant[]][] = [
  [1000, [
    {
      label: "one room of 1,000: string, 1,000 sends per turn",
      kind: "string",
      perTurn: 1000,
      burst: 1,
    },
    {
      label: "one room of 1,000: Uint8Array, 1,000 sends per turn",
      kind: "bytes",
      perTurn: 1000,
      burst: 1,
    },
    {
      label: "one room of 1,000: string, 8 frames per socket per turn",
      kind: "string",
      perTurn: 1000,
      burst: 8,
    },
    { label: "1,000 sockets: string, 10 sends per turn", kind: "string", perTurn: 10, burst: 1 },
  ]],
  [10000, [
    {
      label: "10,000 sockets, rooms of 10: string, 10 sends per turn",
      kind: "string",
      perTurn: 10,
      burst: 1,
    },
    {
      label: "10,000 sockets, rooms of 10: string, 1,000 sends per turn",
      kind: "string",
      perTurn: 1000,
      burst: 1,
    },
    {
      label: "10,000 sockets, rooms of 10: Uint8Array, 1,000 sends per turn",
      kind: "bytes",
      perTurn: 1000,
      burst: 1,
    },
  ]],
];

const encoder = new TextEncoder();

/** A child process pinned to a core, spoken to in JSON lines. */
class Child {
  readonly process: Deno.ChildProcess;
  readonly lines: Lines;
  #writer: WritableStreamDefaultWriter<Uint8Array>;
  constructor(core: number, command: string[]) {
    const { cmd, args } = pinned(core, command);
    this.process = new Deno.Command(cmd, {
      args,
      stdin: "piped",
      stdout: "piped",
      stderr: "inherit",
    })
      .spawn();
    this.#writer = this.process.stdin.getWriter();
    this.lines = new Lines(this.process.stdout);
  }
  async ask(command: unknown, ev: string, timeoutMs = 120_000): Promise<Record<string, number>> {
    if (command !== null) await this.#writer.write(encoder.encode(JSON.stringify(command) + "\n"));
    for (;;) {
      const line = await this.lines.next(timeoutMs);
      if (line === null) throw new Error(`a child exited while waiting for ${ev}`);
      const event = JSON.parse(line);
      if (event.ev === ev) return event;
    }
  }
  async stop() {
    try {
      this.process.kill("SIGKILL");
    } catch { /* gone */ }
    await this.process.status;
  }
}

/** The pid of the process under `bash -c … exec taskset …`: exec keeps it. */
const pidOf = (child: Child) => child.process.pid;

const rate = (n: number) =>
  n >= 1e6 ? `${(n / 1e6).toFixed(2)}M` : n >= 1e3 ? `${(n / 1e3).toFixed(0)}k` : n.toFixed(0);
const median = (xs: number[]) => xs.slice().sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)];

// The driver lives on the receivers' core, so the server's core is the server's alone.
await new Deno.Command("taskset", {
  args: ["-a", "-p", "-c", "1", String(Deno.pid)],
  stdout: "null",
})
  .output();
const rows: string[] = [];
const uptime = new TextDecoder().decode(
  (await new Deno.Command("uptime").output()).stdout,
).trim();
for (const [clients, variants] of PLAN) {
  const server = new Child(0, [
    Deno.execPath(),
    "run",
    "--allow-net",
    "--allow-env",
    `${BENCH}floor_server.ts`,
    "--payload",
    String(PAYLOAD),
  ]);
  const receivers = new Child(1, ["node", `${BENCH}floor_clients.mjs`]);
  try {
    const { port } = await server.ask(null, "listening");
    await receivers.ask({ open: { port, clients, sources: SOURCES } }, "open");
    while ((await server.ask({ count: true }, "count")).sockets < clients) {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    for (const v of variants) {
      const runs: { perSec: number; perCpuSec: number; cpu: number; gen: number }[] = [];
      for (let r = 0; r < REPEATS; r++) {
        const before = (await receivers.ask({ count: true }, "count")).bytes;
        const a = sample(pidOf(server));
        const ran = await server.ask({ run: { ...v, seconds: SECONDS } }, "ran");
        if (ran.error) throw new Error(`${v.label}: ${ran.error}`);
        const b = sample(pidOf(server));
        // The receivers read what the kernel still holds a moment after the last write.
        let got = 0;
        for (let wait = 0; wait < 50 && got < ran.frames; wait++) {
          await new Promise((resolve) => setTimeout(resolve, 100));
          got = ((await receivers.ask({ count: true }, "count")).bytes - before) / FRAME_BYTES;
        }
        if (Math.abs(got - ran.frames) > ran.frames * 0.001) {
          throw new Error(`${v.label}: sent ${ran.frames} frames, received ${got}`);
        }
        runs.push({
          perSec: got / (ran.wallMs / 1000),
          perCpuSec: got / (ran.cpuMs / 1000),
          cpu: ran.cpuMs / ran.wallMs,
          gen: coreBusy(a, b, 1),
        });
      }
      const mid = runs.slice().sort((x, y) => x.perSec - y.perSec)[Math.floor((REPEATS - 1) / 2)];
      const bound = mid.gen > BUSY ? "≥ " : "";
      const row = `| ${v.label} | ${bound}${rate(mid.perSec)} | ${
        rate(median(runs.map((x) => x.perCpuSec)))
      } | ${runs.map((x) => rate(x.perSec)).join(", ")} | ${(mid.cpu * 100).toFixed(0)}% | ${
        (mid.gen * 100).toFixed(0)
      }% |`;
      console.error(row);
      rows.push(row);
    }
  } finally {
    await receivers.stop();
    await server.stop();
  }
}
console.log(
  `Deno ${Deno.version.deno}, ${PAYLOAD}-byte payload, ${SECONDS} s per run, median of ${REPEATS}; ${uptime}

| variant | frames/s (median run) | frames per server CPU-second | runs | server CPU | receivers' core |
|---|---|---|---|---|---|
${rows.join("\n")}`,
);
