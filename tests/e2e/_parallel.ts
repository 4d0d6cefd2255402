/**
 * `deno task start:parallel` as a child process: `deno serve --parallel`
 * running serve.ts in several workers on one port, on a Deno KV file in a
 * temporary directory. Connections land on a worker chosen by the kernel
 * (SO_REUSEPORT hashes each connection's addresses and ports), so a test
 * that needs a given worker opens connections until one lands there: each
 * says which worker it reached in `hello`'s `node`.
 *
 * @module
 */
import assert from "node:assert/strict";
import { openClient, type TestClient, withTimeout } from "../_helpers.ts";
import { EXIT_TIMEOUT_MS, STARTUP_TIMEOUT_MS } from "./_process.ts";

const ROOT = new URL("../../", import.meta.url);

/** Connections opened, at most, to land one on a given worker (each lands on it by chance). */
const MAX_TRIES = 64;

/** The command of `deno task start:parallel`, split into words (deno.json holds it). */
export async function parallelTask(): Promise<string[]> {
  const config = JSON.parse(await Deno.readTextFile(new URL("deno.json", ROOT)));
  return (config.tasks["start:parallel"] as string).split(/\s+/);
}

/** A running `deno serve --parallel` of hubbub. */
export interface ParallelServer extends AsyncDisposable {
  readonly child: Deno.ChildProcess;
  readonly url: string;
  readonly wsUrl: string;
  /** Each worker's node id, in the order they said they were ready. */
  readonly nodes: string[];
  /** The KV file the workers share. */
  readonly kvPath: string;
  /** Everything written to stdout and stderr so far. */
  output(): string;
  /** Every client `clientOn` opened, on any worker. */
  readonly clients: readonly TestClient[];
  /**
   * A client on worker `node` (it has read its hello); connections that land
   * elsewhere are kept for later calls.
   */
  clientOn(node: string): Promise<TestClient>;
  /** Sends `signal` and waits for the exit: its status and the milliseconds it took. */
  signal(signal: Deno.Signal): Promise<{ code: number; ms: number }>;
}

/**
 * `deno task start:parallel`'s command with `workers` workers on a free port of 127.0.0.1, its
 * KV file at `kvPath` instead of ./data, and `args` after its own.
 */
export async function parallelCommand(
  { workers, kvPath, args }: { workers: number; kvPath: string; args: readonly string[] },
): Promise<Deno.Command> {
  const task = await parallelTask();
  const module = task.indexOf("serve.ts");
  assert.ok(task[0] === "deno" && task[1] === "serve" && module > 0, task.join(" "));
  const serveOptions = task.slice(2, module).map((word, i, words) =>
    words[i - 1] === "--port" ? "0" : word
  );
  const hubbubOptions = task.slice(module + 1).map((word, i, words) =>
    words[i - 1] === "--kv-path" ? kvPath : word
  );
  return new Deno.Command(Deno.execPath(), {
    args: ["serve", ...serveOptions, "--host", "127.0.0.1", "serve.ts", ...hubbubOptions, ...args],
    cwd: ROOT,
    env: { DENO_JOBS: String(workers) },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  });
}

/** Runs the parallel command with `args` to its exit (a configuration it must refuse). */
export async function runParallel(
  args: readonly string[],
): Promise<{ code: number; stdout: string; stderr: string }> {
  const dir = await Deno.makeTempDir({ prefix: "hubbub-parallel-" });
  try {
    const command = await parallelCommand({ workers: 2, kvPath: `${dir}/kv.sqlite3`, args });
    const child = command.spawn();
    const output = Promise.all([
      new Response(child.stdout).text(),
      new Response(child.stderr).text(),
    ]);
    const status = await withTimeout(child.status, "deno serve to exit", STARTUP_TIMEOUT_MS)
      .catch(async (error) => {
        child.kill("SIGKILL");
        await Promise.all([child.status, output]);
        throw error;
      });
    const [stdout, stderr] = await output;
    return { code: status.code, stdout, stderr };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/**
 * Starts `deno task start:parallel`'s command (see {@linkcode parallelCommand}) in a new
 * temporary directory; resolves once every worker is ready, connected to the KV, and deno
 * serve listens.
 */
export async function startParallel(
  { workers = 2, args = [] }: { workers?: number; args?: string[] } = {},
): Promise<ParallelServer> {
  const dir = await Deno.makeTempDir({ prefix: "hubbub-parallel-" });
  const kvPath = `${dir}/kv.sqlite3`;
  const child = (await parallelCommand({ workers, kvPath, args })).spawn();
  let text = "";
  const readAll = async (stream: ReadableStream<Uint8Array>) => {
    for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
      text += chunk;
      changed();
    }
  };
  let changed = () => {};
  const reading = Promise.all([readAll(child.stdout), readAll(child.stderr)]);
  const nodes: string[] = [];
  let url: string | undefined;
  const status = child.status;
  let exited = false;
  status.then(() => {
    exited = true;
    changed();
  });
  try {
    await withTimeout(
      new Promise<void>((resolve, reject) => {
        changed = () => {
          const lines = text.slice(0, text.lastIndexOf("\n") + 1);
          const ready = [...lines.matchAll(/worker (\w+) ready/g)].map((m) => m[1]);
          nodes.splice(0, nodes.length, ...ready);
          const connected = new Set(
            [...lines.matchAll(/cluster: connected to kv .*node=(\w+)/g)].map((m) => m[1]),
          );
          url = /listening on (http:\/\/\S+)/.exec(lines)?.[1];
          if (
            nodes.length === workers && nodes.every((node) => connected.has(node)) &&
            url !== undefined
          ) resolve();
          else if (exited) reject(new Error("deno serve exited before it was ready"));
        };
        changed();
      }),
      `${workers} workers to be ready`,
      STARTUP_TIMEOUT_MS,
    );
  } catch (error) {
    try {
      child.kill("SIGKILL");
    } catch { /* exited */ }
    await Promise.all([status, reading]);
    await Deno.remove(dir, { recursive: true });
    throw new Error(`${(error as Error).message}\noutput:\n${text}`);
  }
  const base = new URL(url!);
  const origin = `http://127.0.0.1:${base.port}`;
  const wsUrl = `ws://127.0.0.1:${base.port}/ws`;
  const spare = new Map<string, TestClient[]>();
  const clients: TestClient[] = [];
  let ended: Promise<{ code: number; ms: number }> | undefined;
  const signal = (name: Deno.Signal) =>
    ended ??= (async () => {
      const start = performance.now();
      try {
        child.kill(name);
      } catch { /* already exited */ }
      const done = await withTimeout(status, `deno serve to exit on ${name}`, EXIT_TIMEOUT_MS)
        .catch(async (error) => {
          child.kill("SIGKILL");
          await status;
          throw error;
        });
      const ms = performance.now() - start;
      await reading;
      return { code: done.code, ms };
    })();
  return {
    child,
    url: origin,
    wsUrl,
    nodes,
    kvPath,
    output: () => text,
    clients,
    async clientOn(node) {
      assert.ok(nodes.includes(node), `no worker ${node}`);
      for (let tries = 0; tries < MAX_TRIES; tries++) {
        const waiting = spare.get(node);
        if (waiting !== undefined && waiting.length > 0) return waiting.shift()!;
        const client = await openClient(wsUrl);
        clients.push(client);
        const reached = client.hello.node;
        assert.ok(nodes.includes(reached), `hello names a worker: ${JSON.stringify(client.hello)}`);
        if (reached === node) return client;
        spare.set(reached, [...spare.get(reached) ?? [], client]);
      }
      throw new Error(`No connection of ${MAX_TRIES} landed on worker ${node}`);
    },
    signal,
    async [Symbol.asyncDispose]() {
      await Promise.all(clients.map((client) => client.close()));
      try {
        await signal("SIGTERM");
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    },
  };
}
