/**
 * A private `redis-server` for the cluster tests: a free port on 127.0.0.1,
 * no persistence (a restart forgets everything, the harshest case), stopped
 * by `await using`. `deno task test` installs redis-server when it is
 * missing (tools/test_deps.ts).
 *
 * @module
 */
import { readUntil, terminate } from "./_process.ts";

/** A running Redis that can be stopped and started again on the same port. */
export interface TestRedis extends AsyncDisposable {
  readonly port: number;
  /** `redis://127.0.0.1:PORT` */
  readonly url: string;
  /** Stops the server (SIGTERM, no save). */
  stop(): Promise<void>;
  /** Starts it again on the same port, empty. */
  start(): Promise<void>;
}

/** A port nobody listens on right now. */
function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

/** Starts a redis-server on a free port and resolves once it accepts connections. */
export async function startRedis(): Promise<TestRedis> {
  const port = freePort();
  let child: Deno.ChildProcess | undefined;
  let output: Promise<string> | undefined;
  const start = async () => {
    let command: Deno.Command;
    try {
      command = new Deno.Command(Deno.env.get("REDIS_SERVER_PATH") ?? "redis-server", {
        args: ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdin: "null",
        stdout: "piped",
        stderr: "inherit",
      });
      child = command.spawn();
    } catch (error) {
      throw new Error(
        `redis-server could not be started (${error}); install it: apt-get install -y redis-server`,
      );
    }
    const ready = await readUntil(child.stdout, /(Ready to accept connections)/, "redis-server");
    output = ready.output;
  };
  const stop = async () => {
    if (child === undefined) return;
    const stopping = child;
    child = undefined;
    await terminate(stopping, "redis-server");
    await output;
  };
  await start();
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    stop,
    start,
    [Symbol.asyncDispose]: stop,
  };
}
