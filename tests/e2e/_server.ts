/**
 * Spawns `main.ts` with net and env permissions only: a missing --allow-read
 * must not break it, as a compiled binary has no files to read.
 *
 * @module
 */
import { WAIT_MS, waitFor, withTimeout } from "../_helpers.ts";
import { readUntil, STARTUP_TIMEOUT_MS, terminate } from "./_process.ts";

const ROOT = new URL("../../", import.meta.url);

/**
 * What the end-to-end tests run, from `HUBBUB_TARGET`: `deno` (the default:
 * `deno run main.ts` with net and env permissions only), `bun` (`bun
 * main.ts`), or the path of a compiled binary such as `dist/hubbub-bun`.
 */
export const TARGET = Deno.env.get("HUBBUB_TARGET") ?? "deno";

/** On Deno, `dirs` are granted for reading and writing, as a user grants a `--data-dir`. */
function targetCommand(dirs: readonly string[] = []): string[] {
  if (TARGET === "deno") {
    const files = dirs.length === 0
      ? []
      : [`--allow-read=${dirs.join(",")}`, `--allow-write=${dirs.join(",")}`];
    return [Deno.execPath(), "run", "--allow-net", "--allow-env", ...files, "main.ts"];
  }
  if (TARGET === "bun") return ["bun", "main.ts"];
  return [new URL(TARGET, ROOT).pathname];
}

/**
 * `args` with `--data-dir none` (history in memory) unless they or the environment name a data
 * directory: the default `./data` would leave a database in the repository (Bun, binaries) or
 * an error line in every log (Deno without write permission).
 */
function withDataDir(args: string[], env: Record<string, string>): string[] {
  const named = args.some((arg) => arg === "--data-dir" || arg.startsWith("--data-dir=")) ||
    ["HUBBUB_DATA_DIR", "DATA_DIR"].some((name) => name in env || Deno.env.has(name));
  return named ? args : [...args, "--data-dir", "none"];
}

/**
 * The server command with `args` (with no data directory unless they name one), its output
 * piped; `maxFiles` caps its descriptors, and on Deno `allowDirs` may be read and written (a
 * history `--data-dir`).
 */
export function hubbub(
  args: string[],
  env: Record<string, string> = {},
  { maxFiles, allowDirs }: { maxFiles?: number; allowDirs?: readonly string[] } = {},
): Deno.Command {
  const command = [...targetCommand(allowDirs), ...withDataDir(args, env)];
  if (maxFiles !== undefined) command.unshift("prlimit", `--nofile=${maxFiles}`);
  return new Deno.Command(command[0], {
    args: command.slice(1),
    cwd: ROOT,
    env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  });
}

/**
 * Runs the server command with `args` to its exit and returns its exit code and output; one
 * that has not exited within `STARTUP_TIMEOUT_MS` (a configuration it should have refused, say)
 * is killed and fails the test instead of hanging the suite.
 */
export async function runHubbub(
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const child = hubbub(args, env).spawn();
  const stdout = new Response(child.stdout).text();
  const stderr = new Response(child.stderr).text();
  const exited = await withTimeout(
    child.status,
    `hubbub ${args.join(" ")} to exit`,
    STARTUP_TIMEOUT_MS,
  )
    .catch(async (error) => {
      child.kill("SIGKILL");
      await Promise.all([child.status, stdout, stderr]);
      throw error;
    });
  return { code: exited.code, stdout: await stdout, stderr: await stderr };
}

/** A `main.ts` process that has said it listens, stopped by `await using`. */
export interface SpawnedServer extends AsyncDisposable {
  readonly child: Deno.ChildProcess;
  /** `http://127.0.0.1:PORT` */
  readonly url: string;
  /** `ws://127.0.0.1:PORT/ws` */
  readonly wsUrl: string;
  readonly port: number;
  /** All of stdout, once the process has closed it. */
  readonly stdout: Promise<string>;
  /** All of stderr, once the process has closed it. */
  readonly stderr: Promise<string>;
  /** SIGTERM, then waits for the exit and the output. */
  stop(): Promise<void>;
}

/**
 * Starts `main.ts` on `port` (0: a free one) with `env` added to the environment, and resolves
 * once it prints its listening line; on Deno it may read and write `allowDirs`.
 */
export async function spawnServer(
  { port = 0, args = [], env = {}, maxFiles, allowDirs }: {
    port?: number;
    args?: string[];
    env?: Record<string, string>;
    maxFiles?: number;
    allowDirs?: readonly string[];
  } = {},
): Promise<SpawnedServer> {
  const child = hubbub(["--port", String(port), "--hostname", "127.0.0.1", ...args], env, {
    maxFiles,
    allowDirs,
  })
    .spawn();
  // Read from the start, so that a chatty process cannot block on a full pipe.
  const stderr = new Response(child.stderr).text();
  let listening;
  try {
    listening = await readUntil(child.stdout, /listening on (http:\/\/\S+)/, "the server");
  } catch (err) {
    await terminate(child, "the server", "SIGKILL");
    throw new Error(`${(err as Error).message}\nstderr:\n${await stderr}`);
  }
  const url = new URL(listening.match);
  const stdout = listening.output;
  let stopping: Promise<void> | undefined;
  const stop = () =>
    // Idempotent: a test may stop the server early and the teardown again.
    stopping ??= (async () => {
      try {
        await terminate(child, "the server");
      } finally {
        await Promise.all([stdout, stderr]);
      }
    })();
  return {
    child,
    url: url.origin,
    wsUrl: `ws://${url.host}/ws`,
    port: Number(url.port),
    stdout,
    stderr,
    stop,
    [Symbol.asyncDispose]: stop,
  };
}

/** A metric's value on `node`, from `GET /metrics`; undefined when it is not there. */
export async function metric(node: SpawnedServer, name: string): Promise<number | undefined> {
  const text = await (await fetch(`${node.url}/metrics`)).text();
  const line = text.split("\n").find((line) => line.startsWith(`${name} `));
  return line === undefined ? undefined : Number(line.split(" ")[1]);
}

/** Waits until `node`'s metric `name` reads `value`. */
export function waitForMetric(node: SpawnedServer, name: string, value: number, ms = WAIT_MS) {
  return waitFor(
    `${name} = ${value} on :${node.port}`,
    async () => (await metric(node, name)) === value,
    ms,
  );
}
