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
  /** Opens a connection to it that speaks RESP, closed by `using`. */
  connect(): Promise<RedisConnection>;
}

/** A reply as RESP2 encodes it. */
export type RedisReply = string | number | null | RedisReply[];

/** A bare Redis connection: the few commands the tests check Redis's own state with. */
export interface RedisConnection extends Disposable {
  /** Sends one command and resolves with its reply (a Redis error rejects). */
  command(...args: string[]): Promise<RedisReply>;
  /** The next reply Redis pushes unasked (a pub/sub message after SUBSCRIBE). */
  next(): Promise<RedisReply>;
}

/** Connects to the Redis on `port`: commands in, RESP2 replies out, in order. */
async function connectRedis(port: number): Promise<RedisConnection> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const encoder = new TextEncoder();
  const decoder = new TextDecoder();
  let buffer = new Uint8Array(0);
  /** Reads until `buffer` holds at least `n` bytes; false at end of stream. */
  const fill = async (n: number) => {
    while (buffer.length < n) {
      const chunk = new Uint8Array(4096);
      const read = await conn.read(chunk);
      if (read === null) return false;
      const merged = new Uint8Array(buffer.length + read);
      merged.set(buffer);
      merged.set(chunk.subarray(0, read), buffer.length);
      buffer = merged;
    }
    return true;
  };
  const line = async (): Promise<string> => {
    for (let end = buffer.indexOf(10);; end = buffer.indexOf(10)) {
      if (end >= 0) {
        const text = decoder.decode(buffer.subarray(0, end - 1)); // without \r\n
        buffer = buffer.slice(end + 1);
        return text;
      }
      if (!(await fill(buffer.length + 1))) throw new Error("Redis closed the connection");
    }
  };
  const reply = async (): Promise<RedisReply> => {
    const head = await line();
    const rest = head.slice(1);
    switch (head[0]) {
      case "+":
        return rest;
      case "-":
        throw new Error(`Redis: ${rest}`);
      case ":":
        return Number(rest);
      case "$": {
        const length = Number(rest);
        if (length < 0) return null;
        if (!(await fill(length + 2))) throw new Error("Redis closed the connection");
        const text = decoder.decode(buffer.subarray(0, length));
        buffer = buffer.slice(length + 2);
        return text;
      }
      case "*": {
        const count = Number(rest);
        if (count < 0) return null;
        const items: RedisReply[] = [];
        for (let i = 0; i < count; i++) items.push(await reply());
        return items;
      }
      default:
        throw new Error(`Redis sent an unknown reply: ${head}`);
    }
  };
  // One reader at a time, so that replies are taken in the order they were asked for.
  let queue: Promise<unknown> = Promise.resolve();
  const read = () => {
    const next = queue.then(reply);
    queue = next.catch(() => {});
    return next;
  };
  return {
    async command(...args) {
      const frame = `*${args.length}\r\n` +
        args.map((arg) => `$${encoder.encode(arg).length}\r\n${arg}\r\n`).join("");
      const data = encoder.encode(frame);
      for (let written = 0; written < data.length;) {
        written += await conn.write(data.subarray(written));
      }
      return await read();
    },
    next: read,
    [Symbol.dispose]() {
      conn.close();
    },
  };
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
    connect: () => connectRedis(port),
    [Symbol.asyncDispose]: stop,
  };
}
