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
 * Usage:
 *   deno task bench                  the full run (~10 min); writes bench/RESULTS.md and results.svg
 *   deno task bench --quick          fewer, shorter steps and smaller N (~2 min); prints only
 *   deno task bench --targets hubbub-deno,ref-deno --scenarios one-room-1k
 *   deno task bench --write / --no-write   force writing the results, or not
 *
 * @module
 */

const ROOT = new URL("../", import.meta.url).pathname;
const BENCH = new URL("./", import.meta.url).pathname;

// ---------------------------------------------------------------- options

const argv = [...Deno.args];
const has = (name: string) => argv.includes(name);
const valueOf = (name: string): string | undefined => {
  const at = argv.findIndex((arg) => arg === name || arg.startsWith(`${name}=`));
  if (at < 0) return undefined;
  return argv[at].includes("=") ? argv[at].split("=")[1] : argv[at + 1];
};
const QUICK = has("--quick");
const WRITE = has("--write") || (!QUICK && !has("--no-write"));
const ONLY_TARGETS = valueOf("--targets")?.split(",");
const ONLY_SCENARIOS = valueOf("--scenarios")?.split(",");

/** Client sockets are spread over these loopback sources: 16 × ~28k ports, no TIME_WAIT squeeze. */
const SOURCES = Array.from({ length: 16 }, (_, i) => `127.0.1.${i + 1}`);

/** Limits lifted so that hubbub measures fan-out, not its own protections. */
const HUBBUB_FLAGS = [
  ...["--connect-rate", "1000000", "--max-connections", "200000"],
  ...["--max-connections-per-ip", "200000", "--rate-limit", "1000000"],
  ...["--rate-burst", "1000000", "--max-channel-members", "200000"],
  ...["--login-timeout", "600", "--port", "0", "--hostname", "127.0.0.1"],
];

/** How a step is judged: at least this share delivered inside its window... */
const KEPT_UP = 0.95;
/** ...and p99 latency under this. */
const MAX_P99_MS = 250;
/** A core busier than this is saturated; a figure it bounds is marked ≥. */
const BUSY = 0.95;
/**
 * The machine is shared: when processes other than ours take more than this
 * share of a core during a step, the step is repeated (twice at most) after a
 * pause, and flagged if it stays disturbed.
 */
const FOREIGN = 0.25;

/** Step length, drain wait, refinements of the knee, repeats of a failed step and of the 80% step. */
const STEP = QUICK
  ? { seconds: 1, drainMs: 1000, bisections: 1, retries: 0, latencyRepeats: 1 }
  : { seconds: 2, drainMs: 2000, bisections: 2, retries: 1, latencyRepeats: 3 };

/**
 * The goal that compares two generator-saturated figures swings by a third
 * from run to run: in a full run, these servers go through that scenario
 * this many times, and the run with the median knee is reported.
 */
const REPEATS = QUICK ? 1 : 3;
const REPEATED = { scenario: "one-room-1k", targets: ["hubbub-bun", "ref-bun"] };

/** Messages are padded so the references carry what a hubbub `message` line weighs. */
const REF_PAD = 120;

// ---------------------------------------------------------------- targets and scenarios

interface Target {
  id: string;
  label: string;
  /**
   * `native`: hubbub's protocol; `room`: the references' `/?room=R`
   * echo-to-room; `wsify`: hubbub's wsify dialect, one frame per message.
   */
  protocol: "native" | "room" | "wsify";
  /** The scenarios it runs, when not all. */
  scenarios?: string[];
  path: string;
  command: string[];
  /** Why it cannot run here, if it cannot. */
  unavailable?: string;
}

interface Scenario {
  id: string;
  title: string;
  clients: number;
  roomSize: number;
  /** Senders per room (the first slots of each room); every member receives. */
  sendersPerRoom: number;
  /** Where the rate ladder starts, in deliveries per second, unless a hint says better. */
  ladderStart: number;
  /** Whether this scenario's connect phase is the storm and idle measurement. */
  idle: boolean;
  /** Whether it steps traffic at all. */
  traffic: boolean;
}

const SCENARIOS: Scenario[] = QUICK
  ? [
    scenario("one-room-1k", "one room, 1,000 clients", 1000, 1000, false),
    scenario(
      "small-rooms-2k",
      "2,000 clients in rooms of 10 (idle, storm, traffic)",
      2000,
      10,
      true,
    ),
  ]
  : [
    scenario("one-room-1k", "one room, 1,000 clients", 1000, 1000, false),
    scenario("one-room-5k", "one room, 5,000 clients", 5000, 5000, false),
    scenario(
      "small-rooms-10k",
      "10,000 clients in rooms of 10 (idle, storm, traffic)",
      10000,
      10,
      true,
    ),
  ];

function scenario(
  id: string,
  title: string,
  clients: number,
  roomSize: number,
  idle: boolean,
): Scenario {
  return {
    id,
    title,
    clients,
    roomSize,
    sendersPerRoom: 100,
    ladderStart: 50_000,
    idle,
    traffic: true,
  };
}

// ---------------------------------------------------------------- processes

const decoder = new TextDecoder();

async function output(
  command: string,
  args: string[],
  cwd = ROOT,
): Promise<string | null> {
  try {
    const result = await new Deno.Command(command, {
      args,
      cwd,
      stdout: "piped",
      stderr: "piped",
    })
      .output();
    return result.success ? decoder.decode(result.stdout).trim() : null;
  } catch {
    return null;
  }
}

/** Runs `command` with the soft descriptor limit raised to the hard one, pinned to `core`. */
function pinned(
  core: number,
  command: string[],
): { cmd: string; args: string[] } {
  return {
    cmd: "bash",
    args: [
      "-c",
      `ulimit -Sn "$(ulimit -Hn)"; exec taskset -c ${core} "$@"`,
      "bench",
      ...command,
    ],
  };
}

/** Lines of a child's output, as they come; the last ones are kept for error messages. */
class Lines {
  readonly tail: string[] = [];
  #waiters: ((line: string | null) => void)[] = [];
  #queue: (string | null)[] = [];
  onLine?: (line: string) => boolean;

  constructor(stream: ReadableStream<Uint8Array>) {
    this.#pump(stream);
  }

  async #pump(stream: ReadableStream<Uint8Array>) {
    let rest = "";
    try {
      for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
        rest += chunk;
        let nl;
        while ((nl = rest.indexOf("\n")) >= 0) {
          this.#push(rest.slice(0, nl));
          rest = rest.slice(nl + 1);
        }
      }
    } catch {
      // The child is gone.
    }
    if (rest) this.#push(rest);
    this.#push(null);
  }

  #push(line: string | null) {
    if (line !== null) {
      this.tail.push(line);
      if (this.tail.length > 20) this.tail.shift();
      // A handler may consume a line (the generator's marks must be acted on at once).
      if (this.onLine?.(line)) return;
    }
    const waiter = this.#waiters.shift();
    if (waiter) waiter(line);
    else this.#queue.push(line);
  }

  /** The next line not consumed by `onLine`, or null at the end. */
  next(timeoutMs: number): Promise<string | null> {
    if (this.#queue.length > 0) return Promise.resolve(this.#queue.shift()!);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiters.splice(this.#waiters.indexOf(waiter), 1);
        reject(new Error(`no output for ${timeoutMs} ms`));
      }, timeoutMs);
      const waiter = (line: string | null) => {
        clearTimeout(timer);
        resolve(line);
      };
      this.#waiters.push(waiter);
    });
  }
}

interface Server {
  target: Target;
  child: Deno.ChildProcess;
  /** The process doing the serving (not a wrapper). */
  pid: number;
  port: number;
  stderr: Lines;
}

async function startServer(target: Target): Promise<Server> {
  const { cmd, args } = pinned(0, target.command);
  const child = new Deno.Command(cmd, {
    args,
    cwd: ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stdout = new Lines(child.stdout);
  const stderr = new Lines(child.stderr);
  const deadline = Date.now() + 20_000;
  for (;;) {
    let line: string | null;
    try {
      line = await stdout.next(Math.max(1, deadline - Date.now()));
    } catch {
      line = null;
    }
    if (line === null) {
      try {
        child.kill("SIGKILL");
      } catch { /* exited */ }
      await child.status;
      throw new Error(
        `${target.label} did not say it listens:\n${[...stdout.tail, ...stderr.tail].join("\n")}`,
      );
    }
    const match = /listening on http:\/\/(\S+?):(\d+)\//.exec(line);
    if (match) {
      // Keep reading stdout so that a chatty server never blocks on a full pipe.
      (async () => {
        while (await stdout.next(1e9).catch(() => null) !== null);
      })();
      return {
        target,
        child,
        pid: leafPid(child.pid),
        port: Number(match[2]),
        stderr,
      };
    }
  }
}

/** The process under wrappers such as npx: follow only children down to the last. */
function leafPid(pid: number): number {
  for (let depth = 0; depth < 5; depth++) {
    let children: string[];
    try {
      children = Deno.readTextFileSync(`/proc/${pid}/task/${pid}/children`)
        .trim().split(/\s+/)
        .filter(Boolean);
    } catch {
      return pid;
    }
    if (children.length !== 1) return pid;
    pid = Number(children[0]);
  }
  return pid;
}

async function stopServer(server: Server) {
  try {
    server.child.kill("SIGKILL");
  } catch {
    // Already gone.
  }
  await server.child.status;
}

// ---------------------------------------------------------------- /proc

const CLK_TCK = Number(await output("getconf", ["CLK_TCK"]) ?? "100");

interface Sample {
  at: number;
  /** The server's CPU time, in seconds. */
  serverCpu: number;
  rssKiB: number;
  /** Per core: [busy, total] jiffies. */
  cores: [number, number][];
}

function sample(pid: number): Sample {
  const at = performance.now();
  let serverCpu = NaN, rssKiB = NaN;
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    serverCpu = (Number(fields[11]) + Number(fields[12])) / CLK_TCK;
    const status = Deno.readTextFileSync(`/proc/${pid}/status`);
    rssKiB = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1]);
  } catch {
    // The server died; the figures say so as NaN.
  }
  const cores: [number, number][] = [];
  for (const line of Deno.readTextFileSync("/proc/stat").split("\n")) {
    const match = /^cpu(\d+)\s+(.*)$/.exec(line);
    if (!match) continue;
    const v = match[2].split(/\s+/).map(Number);
    const idle = v[3] + v[4];
    const total = v.slice(0, 8).reduce((a, b) => a + b, 0);
    cores[Number(match[1])] = [total - idle, total];
  }
  return { at, serverCpu, rssKiB, cores };
}

/**
 * Bytes waiting in the kernel on the server's connections, from /proc/net/tcp:
 * `toGenerator` is written by the server but not yet read by the generator
 * (in the clients' receive queues, or held in the server's send queues by a
 * full receive window); `toServer` is sent by the generator but not yet read
 * by the server. Bytes the server has not written yet are in its own memory,
 * where only its RSS shows them.
 */
function socketQueues(port: number): { toGenerator: number; toServer: number } {
  const portHex = `:${port.toString(16).toUpperCase().padStart(4, "0")}`;
  let toGenerator = 0, toServer = 0;
  let text = "";
  try {
    text = Deno.readTextFileSync("/proc/net/tcp");
  } catch {
    return { toGenerator: NaN, toServer: NaN };
  }
  for (const line of text.split("\n")) {
    // sl local rem st tx_queue:rx_queue ...; addresses are little-endian hex.
    const f = line.trim().split(/\s+/);
    if (f.length < 5 || f[3] !== "01") continue; // established only
    const [tx, rx] = f[4].split(":").map((h) => parseInt(h, 16));
    if (f[1].endsWith(portHex) && f[1].startsWith("0100007F")) {
      toGenerator += tx; // the server's send queue: the client's window is full
      toServer += rx;
    } else if (f[2].endsWith(portHex) && f[1].slice(2, 8) === "01007F") {
      toGenerator += rx; // a client's receive queue: the generator has not read it
      toServer += tx;
    }
  }
  return { toGenerator, toServer };
}

/** The server's CPU use between two samples, in cores (1 = one core all the time). */
const cpuBetween = (a: Sample, b: Sample) => (b.serverCpu - a.serverCpu) / ((b.at - a.at) / 1000);

/** How busy `core` was between two samples (0..1), whoever kept it busy (softirqs included). */
function coreBusy(a: Sample, b: Sample, core: number): number {
  const [busyA, totalA] = a.cores[core] ?? [0, 0];
  const [busyB, totalB] = b.cores[core] ?? [0, 0];
  return totalB > totalA ? (busyB - busyA) / (totalB - totalA) : NaN;
}

// ---------------------------------------------------------------- the generator

interface StepResult {
  rate: number;
  seconds: number;
  sent: number;
  skipped: number;
  offeredPerSec: number;
  expected: number;
  deliveredInWindow: number;
  deliveredPerSec: number;
  delivered: number;
  drained: boolean;
  missing: number;
  outOfOrder: number;
  gaps: number;
  errors: number;
  firstError: string;
  closed: number;
  closeCodes: Record<string, number>;
  p50Us: number | null;
  p99Us: number | null;
  maxUs: number;
  genCpu: number;
  bytesInWindow: number;
  // Filled in here:
  serverCpu: number;
  serverCore: number;
  genCore: number;
  rssKiB: number;
  /** hubbub only: WebSocket frames written per delivered message. */
  framesPerDelivery?: number;
  /** Of the deliveries still due when the window closed, the share the generator had not read. */
  genShare: number;
  /** The generator, not the server, set the pace (see `genVerdict`). */
  genBound: boolean;
  /** The largest share of a core that processes other than ours took during the window. */
  foreign: number;
  pass: boolean;
  why: string;
}

interface Ready {
  clients: number;
  opened: number;
  ready: number;
  failed: number;
  failures: Record<string, number>;
  allOpenMs: number | null;
  allReadyMs: number | null;
  connectP50Ms: number | null;
  connectP99Ms: number | null;
  readyP50Ms: number | null;
  readyP99Ms: number | null;
  errors: number;
  firstError: string;
}

class Generator {
  readonly child: Deno.ChildProcess;
  readonly lines: Lines;
  readonly stderr: Lines;
  #writer: WritableStreamDefaultWriter<Uint8Array>;
  /** Called at the generator's window marks, at once, to sample the server. */
  onMark?: (at: string) => void;

  constructor() {
    const { cmd, args } = pinned(1, ["node", `${BENCH}loadgen.mjs`]);
    this.child = new Deno.Command(cmd, {
      args,
      cwd: ROOT,
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.#writer = this.child.stdin.getWriter();
    this.lines = new Lines(this.child.stdout);
    this.stderr = new Lines(this.child.stderr);
    this.lines.onLine = (line) => {
      if (!line.startsWith('{"ev":"mark"')) return false;
      this.onMark?.(JSON.parse(line).at);
      return true;
    };
  }

  async command(command: Record<string, unknown>) {
    await this.#writer.write(
      new TextEncoder().encode(JSON.stringify(command) + "\n"),
    );
  }

  async event<T>(name: string, timeoutMs: number): Promise<T> {
    for (;;) {
      const line = await this.lines.next(timeoutMs);
      if (line === null) {
        throw new Error(
          `the load generator exited:\n${this.stderr.tail.join("\n")}`,
        );
      }
      const event = JSON.parse(line);
      if (event.ev === "error") {
        throw new Error(`the load generator failed: ${event.message}`);
      }
      if (event.ev === name) return event as T;
    }
  }

  async quit() {
    try {
      await this.command({ cmd: "quit" });
      await this.#writer.close();
    } catch {
      // Gone already.
    }
    const timer = setTimeout(() => {
      try {
        this.child.kill("SIGKILL");
      } catch { /* exited */ }
    }, 3000);
    await this.child.status;
    clearTimeout(timer);
  }
}

// ---------------------------------------------------------------- one server, one scenario

interface Run {
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
}

async function openSession(
  target: Target,
  sc: Scenario,
  run: Run,
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
    return { server, gen, ready };
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

/** hubbub's own counters, for how many frames it wrote per delivery. */
async function hubbubCounters(
  session: Session,
): Promise<[number, number] | null> {
  if (session.server.target.protocol !== "native") return null;
  try {
    const text = await (await fetch(`http://127.0.0.1:${session.server.port}/metrics`))
      .text();
    const frames = Number(/^hubbub_frames_out_total (\d+)/m.exec(text)?.[1]);
    const deliveries = Number(
      /^hubbub_deliveries_total (\d+)/m.exec(text)?.[1],
    );
    return [frames, deliveries];
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
  progress(
    `    ${fmtRate(deliveriesPerSec).padStart(6)}/s offered: ${
      fmtRate(result.deliveredPerSec).padStart(6)
    }/s delivered, p50 ${fmtMs(result.p50Us)} p99 ${fmtMs(result.p99Us)}, server ${
      pct(result.serverCpu)
    } gen ${pct(result.genCpu)} (core ${pct(result.genCore)})${
      result.framesPerDelivery === undefined
        ? ""
        : `, ${result.framesPerDelivery.toFixed(3)} frames/delivery`
    } ${result.pass ? "ok" : `FAIL (${result.why})`}${
      result.pass
        ? ""
        : result.genBound
        ? ` [generator-bound: ${pct(result.genShare)} of the due unread by us]`
        : ` [server-bound: ${pct(result.genShare)} of the due unread by us]`
    }${label ? ` (${label})` : ""}${
      disturbed(result) ? ` {other processes took ${pct(result.foreign)} of a core}` : ""
    }`,
  );
  return result;
}

/** Other processes took over a quarter of one of our cores: the step measured them too. */
const disturbed = (s: StepResult) => s.foreign > FOREIGN;

/**
 * Whether the generator rather than the server set the pace of a failed
 * step: it could not keep its own send schedule, or most of what was still
 * due when the window closed sat unread in its receive queues, or its own
 * CPU was over 95% while a fair share (≥ 10%) sat there. Otherwise the
 * server had not written what was due: the server was behind, however busy
 * the generator was. (A step that kept up always has its in-flight bytes
 * in our queues; the verdict is for failures.)
 */
function genVerdict(s: StepResult, rate: number): boolean {
  if (s.pass) return false;
  if (s.offeredPerSec < rate * 0.95) return true;
  if (s.genShare >= 0.5) return true;
  return s.genCpu > BUSY && s.genShare >= 0.1;
}

const genBound = (s: StepResult) => s.genBound;

async function runScenario(
  target: Target,
  sc: Scenario,
  hint?: number,
): Promise<Run> {
  const run: Run = {
    target,
    scenario: sc,
    steps: [],
    latency: [],
    restarts: 0,
  };
  progress(`  ${sc.id}`);
  let session = await openSession(target, sc, run);
  try {
    const ready = session.ready;
    progress(
      `    ${sc.clients} clients ready in ${fmtMs((ready.allReadyMs ?? NaN) * 1000)} (all open in ${
        fmtMs((ready.allOpenMs ?? NaN) * 1000)
      })`,
    );
    if (sc.idle) {
      run.storm = ready;
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
        }`,
      );
    }
    if (!sc.traffic) return run;
    // Warm up (JIT, and the garbage of the join storm) with a step that is not recorded.
    await sleep(500);
    await step(session, sc, sc.ladderStart / 4, "warm-up");

    /** After a failed step: let the backlog drain, or start over if it cannot. */
    const recover = async (failed: StepResult) => {
      await session.gen.command({ cmd: "settle", quietMs: 300, maxMs: 5000 });
      const settled = await session.gen.event<
        { missing: number; ready: number }
      >(
        "settled",
        30_000,
      );
      if (
        failed.closed > 0 || settled.ready < sc.clients || settled.missing > 0
      ) {
        progress(
          `    (restarting: ${settled.ready} clients left, ${settled.missing} missing)`,
        );
        await closeSession(session);
        session = await openSession(target, sc, run);
        run.restarts++;
      }
    };

    /** A step, repeated when other processes disturbed it. */
    const measure = async (deliveriesPerSec: number): Promise<StepResult> => {
      for (let attempt = 0;; attempt++) {
        const s = await step(session, sc, deliveriesPerSec);
        if (!disturbed(s) || attempt === 2) return s;
        if (!s.pass) await recover(s);
        progress("    (repeating the step: the machine is busy with something else)");
        await sleep(3000);
      }
    };

    // The ladder: double while the server keeps up; a failure is tried again
    // (STEP.retries: this 2-core box is noisy), and the search stops after that.
    let rate = hint ?? sc.ladderStart;
    let lo: StepResult | undefined;
    let hi: StepResult | undefined;
    let failures = 0;
    for (let n = 0; n < 12; n++) {
      const s = await measure(rate);
      run.steps.push(s);
      if (s.pass) {
        lo = s;
        failures = 0;
        rate *= 2;
        continue;
      }
      await recover(s);
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
    // Then halve the gap a few times (geometrically).
    for (let i = 0; lo && hi && i < STEP.bisections; i++) {
      const mid = Math.sqrt(offered(lo, sc) * offered(hi, sc));
      const s = await measure(mid);
      run.steps.push(s);
      if (s.pass) lo = s;
      else {
        hi = s;
        await recover(s);
      }
    }
    run.knee = lo;
    run.above = hi;
    if (lo === undefined) {
      run.kneeBelow = Math.min(...run.steps.map((s) => offered(s, sc)));
      return run;
    }
    // The knee is the server's when the step above it failed on the server's side.
    run.kneeGenBound = hi === undefined || genBound(hi);
    // Latency, CPU and RSS at 80% of the knee: a loaded server that keeps up.
    for (let i = 0; i < STEP.latencyRepeats; i++) {
      const s = await measure(offered(lo, sc) * 0.8);
      run.latency.push(s);
      if (!s.pass) await recover(s);
    }
    return run;
  } catch (error) {
    run.error = (error as Error).message;
    progress(`    error: ${run.error}`);
    return run;
  } finally {
    await closeSession(session);
  }
}

/** The deliveries per second a step offered (what the ladder asked for). */
const offered = (s: StepResult, sc: Scenario) => s.rate * sc.roomSize;

// ---------------------------------------------------------------- setup of the run

async function prepareTargets(): Promise<Target[]> {
  const deno = Deno.execPath();
  const bun = await output("bun", ["--version"]) !== null ? "bun" : null;
  const targets: Target[] = [
    {
      id: "hubbub-deno",
      label: "hubbub on Deno",
      protocol: "native",
      path: "/ws",
      command: [
        deno,
        "run",
        "--allow-net",
        "--allow-env",
        "main.ts",
        ...HUBBUB_FLAGS,
      ],
    },
    {
      id: "hubbub-bun",
      label: "hubbub on Bun",
      protocol: "native",
      path: "/ws",
      command: ["bun", "main.ts", ...HUBBUB_FLAGS],
      unavailable: bun ? undefined : "bun is not installed (npm install -g bun@1.4.5)",
    },
    {
      id: "ref-bun",
      label: "Bun server.publish (reference)",
      protocol: "room",
      path: "/",
      command: ["bun", `${BENCH}ref_bun_publish.ts`],
      unavailable: bun ? undefined : "bun is not installed (npm install -g bun@1.4.5)",
    },
    {
      id: "ref-node",
      label: "Node ws (reference)",
      protocol: "room",
      path: "/",
      command: ["node", `${BENCH}ref_node_ws.mjs`],
    },
    {
      id: "ref-deno",
      label: "Deno naive (reference)",
      protocol: "room",
      path: "/",
      command: [deno, "run", "--allow-net", `${BENCH}ref_deno_naive.ts`],
    },
    {
      // Dialect clients get one WebSocket frame per message, as the references' clients do.
      id: "hubbub-bun-wsify",
      label: "hubbub on Bun, wsify dialect",
      protocol: "wsify",
      path: "/compat/wsify/ws",
      command: ["bun", "main.ts", ...HUBBUB_FLAGS],
      scenarios: ["one-room-1k"],
      unavailable: bun ? undefined : "bun is not installed (npm install -g bun@1.4.5)",
    },
  ];
  // The Node reference needs ws; hubbub on Bun needs the npm packages it imports.
  if (!exists(`${BENCH}node/node_modules/ws/package.json`)) {
    progress("installing ws for the Node reference (npm ci --prefix bench/node)");
    const args = ["ci", "--prefix", `${BENCH}node`, "--no-audit", "--no-fund"];
    if (await output("npm", args) === null) {
      targets[3].unavailable = "npm ci --prefix bench/node failed";
    }
  }
  if (bun && !exists(`${ROOT}node_modules/zod/package.json`)) {
    progress(
      "installing hubbub's packages for Bun (bun install --frozen-lockfile)",
    );
    await output("bun", ["install", "--frozen-lockfile"]);
  }
  // hubbub on Bun is new: run it only once it starts and says it listens.
  if (bun) {
    try {
      await stopServer(await startServer(targets[1]));
    } catch (error) {
      targets[1].unavailable = `\`bun main.ts\` does not start yet: ${
        (error as Error).message.split("\n").slice(-3).join(" ")
      }`;
    }
  }
  return targets.filter((t) => !ONLY_TARGETS || ONLY_TARGETS.includes(t.id));
}

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

async function machine() {
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
    bun: await output("bun", ["--version"]) ?? "not installed",
    node: (await output("node", ["--version"]) ?? "?").replace(/^v/, ""),
    ws: wsVersion,
    date: new Date().toISOString().replace(/\.\d+Z$/, "Z"),
    commit: await output("git", ["rev-parse", "--short", "HEAD"]) ?? "?",
    loadavg: Deno.readTextFileSync("/proc/loadavg").split(" ").slice(0, 3).join(" "),
  };
}

// ---------------------------------------------------------------- formatting

function progress(line: string) {
  console.error(line);
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function median(values: number[]): number {
  const sorted = values.filter((v) => Number.isFinite(v)).sort((a, b) => a - b);
  return sorted.length === 0 ? NaN : sorted[Math.floor((sorted.length - 1) / 2)];
}

function fmtRate(n: number): string {
  if (!Number.isFinite(n)) return "—";
  if (n >= 1e6) return `${(n / 1e6).toFixed(n >= 1e7 ? 1 : 2)}M`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(n >= 1e5 ? 0 : 1)}k`;
  return n.toFixed(0);
}

function fmtMs(us: number | null | undefined): string {
  if (us === null || us === undefined || !Number.isFinite(us)) return "—";
  const ms = us / 1000;
  return ms >= 100
    ? `${ms.toFixed(0)} ms`
    : ms >= 10
    ? `${ms.toFixed(1)} ms`
    : `${ms.toFixed(2)} ms`;
}

function fmtKiB(kib: number): string {
  if (!Number.isFinite(kib)) return "—";
  return kib >= 1024 ? `${(kib / 1024).toFixed(1)} MiB` : `${kib.toFixed(1)} KiB`;
}

const pct = (x: number) => Number.isFinite(x) ? `${(x * 100).toFixed(0)}%` : "—";

function ratio(a: number | undefined, b: number | undefined): string {
  if (
    a === undefined || b === undefined || !Number.isFinite(a) ||
    !Number.isFinite(b) || b <= 0
  ) {
    return "—";
  }
  const r = a / b;
  return r >= 10 ? `${r.toFixed(0)}×` : r >= 1 ? `${r.toFixed(2)}×` : `${r.toFixed(2)}×`;
}

// ---------------------------------------------------------------- figures

interface Figures {
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

function figures(run: Run | undefined): Figures | undefined {
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

function kneeText(f: Figures | undefined): string {
  if (f === undefined) return "—";
  if (f.error) return "error";
  if (f.knee === undefined) {
    return f.kneeBelow ? `< ${fmtRate(f.kneeBelow)}` : "—";
  }
  return `${f.kneeGe ? "≥ " : ""}${fmtRate(f.knee)}`;
}

/** A ratio of two knees; "≈" when the generator bounded both, so neither is the server's. */
function kneeRatio(a: Figures | undefined, b: Figures | undefined): string {
  if (!a?.knee || !b?.knee) return "—";
  const r = ratio(a.knee, b.knee);
  if (a.kneeGe && b.kneeGe) return `≈ ${r}`;
  if (a.kneeGe) return `≥ ${r}`;
  if (b.kneeGe) return `≤ ${r}`;
  return r;
}

// ---------------------------------------------------------------- report

type Results = Map<string, Map<string, Run>>; // scenario → target → run

function report(
  targets: Target[],
  skipped: Target[],
  results: Results,
  info: Awaited<ReturnType<typeof machine>>,
  command: string,
  seconds: number,
): string {
  const out: string[] = [];
  const get = (sc: string, t: string) => figures(results.get(sc)?.get(t));
  const refs = ["ref-bun", "ref-node", "ref-deno"];
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
    ) => [...(r.repeats ?? [r]).flatMap((x) => [...x.steps, ...x.latency])])
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

  // Goals.
  const one = (t: string) => get("one-room-1k", t);
  const idleScenario = SCENARIOS.find((s) => s.idle)!;
  const perConn = (t: string) => {
    const run = results.get(idleScenario.id)?.get(t);
    if (!run || run.idleRssKiB === undefined || run.baseRssKiB === undefined) {
      return undefined;
    }
    return (run.idleRssKiB - run.baseRssKiB) / run.scenario.clients;
  };
  out.push("## Goals (native protocol, one room of 1,000 clients)");
  out.push("");
  out.push("| goal | measured | met? |");
  out.push("|---|---|---|");
  const hb = one("hubbub-bun"),
    rb = one("ref-bun"),
    hd = one("hubbub-deno"),
    rd = one("ref-deno");
  const goalRatio = (
    a: Figures | undefined,
    b: Figures | undefined,
    want: number,
  ) => {
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
  };
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
  const mb = perConn("hubbub-bun"), mr = perConn("ref-bun");
  out.push(
    `| idle memory per connection, hubbub on Bun ÷ Bun publish ≤ 2× (${
      idleScenario.clients.toLocaleString("en")
    } clients) | ${
      mb !== undefined && mr !== undefined
        ? `${ratio(mb, mr)} (${fmtKiB(mb)} vs ${fmtKiB(mr)})`
        : "not measured"
    } | ${mb !== undefined && mr !== undefined ? (mb <= 2 * mr ? "yes" : "**no**") : "—"} |`,
  );
  const hubbubRuns = [...results.values()].flatMap((m) =>
    ["hubbub-deno", "hubbub-bun"].map((t) => figures(m.get(t))).filter((f) => f !== undefined)
  );
  const lost = hubbubRuns.reduce((n, f) => n + f!.lost, 0);
  const ooo = hubbubRuns.reduce((n, f) => n + f!.outOfOrder, 0);
  out.push(
    `| no loss or reordering below the knee (hubbub, every scenario) | ${lost} lost, ${ooo} out of order | ${
      hubbubRuns.length === 0 ? "—" : lost === 0 && ooo === 0 ? "yes" : "**no**"
    } |`,
  );
  out.push("");
  if (skipped.length > 0) {
    out.push(
      skipped.map((t) => `- **${t.label} was not run**: ${t.unavailable}`).join(
        "\n",
      ),
    );
    out.push("");
  }

  // Fan-out scenarios.
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

  // Idle and storm.
  out.push(`## ${idleScenario.title}: idle memory and the connect storm`);
  out.push("");
  out.push(
    "| server | idle RSS per connection | ÷ Bun publish | ÷ Node ws | idle CPU | storm: all ready in | ready/s | ÷ Bun publish | ÷ Node ws | connect p50 / p99 | failed |",
  );
  out.push("|---|---|---|---|---|---|---|---|---|---|---|");
  for (const t of targets) {
    const run = results.get(idleScenario.id)?.get(t.id);
    if (!run) continue;
    const rate = (id: string) => {
      const r = results.get(idleScenario.id)?.get(id)?.storm;
      return r?.allReadyMs ? r.ready / (r.allReadyMs / 1000) : undefined;
    };
    const storm = run.storm;
    out.push(
      `| ${t.label} | ${fmtKiB(perConn(t.id) ?? NaN)} | ${
        ratio(perConn(t.id), perConn("ref-bun"))
      } | ${ratio(perConn(t.id), perConn("ref-node"))} | ${pct(run.idleCpu ?? NaN)} | ${
        storm?.allReadyMs ? fmtMs(storm.allReadyMs * 1000) : "—"
      } | ${fmtRate(rate(t.id) ?? NaN)} | ${ratio(rate(t.id), rate("ref-bun"))} | ${
        ratio(rate(t.id), rate("ref-node"))
      } | ${fmtMs((storm?.connectP50Ms ?? NaN) * 1000)} / ${
        fmtMs((storm?.connectP99Ms ?? NaN) * 1000)
      } | ${storm?.failed ?? "—"} |`,
    );
  }
  out.push("");
  out.push(
    ...NOTES.map((line) => line.replaceAll("$REF_PAD", String(REF_PAD))),
  );
  // Every step, for whoever wants to check a figure.
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
      for (const s of [...run.steps, ...run.latency]) {
        out.push(
          `| ${sc.id} | ${t.id} | ${fmtRate(offered(s, sc))} | ${fmtRate(s.deliveredPerSec)} | ${
            pct(s.deliveredInWindow / Math.max(1, s.expected))
          } | ${fmtMs(s.p50Us)} / ${fmtMs(s.p99Us)} | ${pct(s.serverCpu)} | ${pct(s.genCpu)} / ${
            pct(s.genCore)
          } | ${pct(s.genShare)} | ${fmtKiB(s.rssKiB)} | ${
            s.pass ? "ok" : `${s.why} (${s.genBound ? "generator" : "server"})`
          }${disturbed(s) ? ` † others took ${pct(s.foreign)} of a core` : ""}${
            run.latency.includes(s) ? " (80% of knee)" : ""
          } |`,
        );
      }
    }
  }
  out.push("");
  out.push("</details>");
  return out.join("\n") + "\n";
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
  "- The references speak a one-line protocol (`/?room=R`, every frame to every member) with",
  "  messages padded to $REF_PAD bytes, about what a hubbub `message` line weighs; hubbub speaks its",
  "  own JSON protocol (login, join, broadcast). **Lost** counts deliveries still missing 2 s after",
  "  a step at or below the knee; **out of order** counts messages that arrived after a later",
  "  one from the same sender.",
  "- **Idle RSS per connection** is (RSS with every client connected and joined, idle for 1 s) −",
  "  (RSS before any client), ÷ clients. The **storm** opens every client at once; for hubbub",
  "  'ready' means logged in and joined (three round trips), for the references the upgrade.",
  "- On this box identical runs differ by ±10–30% near the knee, so compare ratios within one run",
  "  rather than figures across runs. The full run repeats the one-room-1k scenario three times",
  "  for hubbub on Bun and Bun publish (whose ratio is a goal) and reports the median run;",
  "  everything else is one run.",
];

// ---------------------------------------------------------------- the SVG chart

function chart(targets: Target[], results: Results): string {
  const scenarios = SCENARIOS.filter((s) => s.roomSize === s.clients);
  const colors: Record<string, string> = {
    "hubbub-deno": "#2f6fdf",
    "hubbub-bun": "#f29d38",
    "ref-bun": "#c9a07a",
    "ref-node": "#7fb77e",
    "ref-deno": "#9aa9c2",
  };
  const W = 760, H = 380, left = 70, right = 20, top = 50, bottom = 90;
  const values = scenarios.flatMap((sc) =>
    targets.map((t) => figures(results.get(sc.id)?.get(t.id))?.knee ?? 0)
  );
  const max = Math.max(1, ...values);
  const step = niceStep(max / 5);
  const yMax = Math.ceil(max / step) * step;
  const plotH = H - top - bottom, plotW = W - left - right;
  const groupW = plotW / scenarios.length;
  const barW = Math.min(48, (groupW - 40) / Math.max(1, targets.length));
  const y = (v: number) => top + plotH - (v / yMax) * plotH;
  const esc = (s: string) => s.replaceAll("&", "&amp;").replaceAll("<", "&lt;");
  const parts: string[] = [];
  parts.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
  );
  parts.push(`<rect width="${W}" height="${H}" fill="#fff"/>`);
  parts.push(
    `<text x="${
      W / 2
    }" y="22" text-anchor="middle" font-size="15" font-weight="bold">Delivered messages per second at the knee, one room</text>`,
  );
  parts.push(
    `<text x="${W / 2}" y="38" text-anchor="middle" fill="#555">knee: highest rate with ≥${
      KEPT_UP * 100
    }% delivered within the step and p99 ≤ ${MAX_P99_MS} ms; ≥: the load generator, not the server, stopped it</text>`,
  );
  for (let v = 0; v <= yMax + 1e-9; v += step) {
    parts.push(
      `<line x1="${left}" x2="${W - right}" y1="${y(v)}" y2="${y(v)}" stroke="#e5e5e5"/>`,
      `<text x="${left - 6}" y="${y(v) + 4}" text-anchor="end" fill="#555">${
        v >= 1e6 ? `${+(v / 1e6).toFixed(2)}M` : v >= 1e3 ? `${+(v / 1e3).toFixed(1)}k` : v
      }</text>`,
    );
  }
  scenarios.forEach((sc, g) => {
    const x0 = left + g * groupW + (groupW - barW * targets.length) / 2;
    targets.forEach((t, i) => {
      const f = figures(results.get(sc.id)?.get(t.id));
      const v = f?.knee ?? 0;
      const x = x0 + i * barW;
      parts.push(
        `<rect x="${x + 3}" y="${y(v)}" width="${barW - 6}" height="${y(0) - y(v)}" fill="${
          colors[t.id]
        }"><title>${esc(t.label)}: ${esc(kneeText(f))}</title></rect>`,
        `<text x="${x + barW / 2}" y="${y(v) - 5}" text-anchor="middle" font-size="11">${
          esc(kneeText(f))
        }</text>`,
      );
    });
    parts.push(
      `<text x="${left + g * groupW + groupW / 2}" y="${
        top + plotH + 20
      }" text-anchor="middle" font-weight="bold">${esc(sc.title)}</text>`,
    );
  });
  // Legend.
  targets.forEach((t, i) => {
    const x = left + (i % 3) * 220, yy = H - 42 + Math.floor(i / 3) * 18;
    parts.push(
      `<rect x="${x}" y="${yy - 10}" width="12" height="12" fill="${colors[t.id]}"/>`,
      `<text x="${x + 18}" y="${yy}">${esc(t.label)}</text>`,
    );
  });
  parts.push("</svg>");
  return parts.join("\n") + "\n";
}

function niceStep(raw: number): number {
  const p = 10 ** Math.floor(Math.log10(raw));
  for (const m of [1, 2, 2.5, 5, 10]) if (raw <= m * p) return m * p;
  return 10 * p;
}

// ---------------------------------------------------------------- main

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
