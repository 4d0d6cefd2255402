/**
 * The load generator (bench/loadgen.mjs, Node) as a child process: its
 * commands, its events, and what it reports for a step.
 *
 * @module
 */
import { BENCH, ROOT } from "./options.ts";
import { Lines, pinned } from "./processes.ts";

/** What one step measured: the generator's figures, then the server's. */
export interface StepResult {
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
  /** hubbub only: messages stored per write to the history store (a transaction). */
  messagesPerWrite?: number;
  /** Of the deliveries still due when the window closed, the share the generator had not read. */
  genShare: number;
  /** The generator, not the server, set the pace (see `genVerdict`). */
  genBound: boolean;
  /** The largest share of a core that processes other than ours took during the window. */
  foreign: number;
  pass: boolean;
  why: string;
}

/** The generator's report on opening its clients (the connect storm). */
export interface Ready {
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

/** The running load generator, pinned to core 1 (or to `core`), driven by JSON lines. */
export class Generator {
  readonly child: Deno.ChildProcess;
  readonly lines: Lines;
  readonly stderr: Lines;
  #writer: WritableStreamDefaultWriter<Uint8Array>;
  /** Called at the generator's window marks, at once, to sample the server. */
  onMark?: (at: string) => void;

  constructor(core: number | string = 1) {
    const { cmd, args } = pinned(core, ["node", `${BENCH}loadgen.mjs`]);
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
