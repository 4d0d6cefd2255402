/**
 * Start-up as an operator meets it, in a real process (Deno, Bun or a
 * compiled binary, by `HUBBUB_TARGET`): which environment names are read,
 * one clear line and exit code 2 when a port cannot be had, the log formats,
 * and Redis' state in the log.
 */
import assert from "node:assert/strict";
import { withTimeout } from "../_helpers.ts";
import { terminate } from "./_process.ts";
import { startRedis } from "./_redis.ts";
import { hubbub } from "./_server.ts";

/** The lines of a child's output stream as they arrive, waited on by pattern. */
class Lines {
  readonly lines: string[] = [];
  readonly done: Promise<void>;
  #waiters = new Set<() => void>();

  constructor(stream: ReadableStream<Uint8Array>) {
    this.done = (async () => {
      let rest = "";
      for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
        const parts = (rest + chunk).split("\n");
        rest = parts.pop()!;
        this.lines.push(...parts);
        for (const wake of this.#waiters) wake();
      }
      if (rest !== "") this.lines.push(rest);
      for (const wake of this.#waiters) wake();
    })();
  }

  /** The first line from index `from` on that matches, once it has arrived. */
  async waitFor(pattern: RegExp, from = 0): Promise<{ line: string; index: number }> {
    let ended = false;
    this.done.then(() => ended = true);
    return await withTimeout(
      (async () => {
        for (;;) {
          const index = this.lines.findIndex((line, i) => i >= from && pattern.test(line));
          if (index >= 0) return { line: this.lines[index], index };
          if (ended) throw new Error(`the output ended without ${pattern}:\n${this.text()}`);
          await new Promise<void>((resolve) => {
            const wake = () => {
              this.#waiters.delete(wake);
              resolve();
            };
            this.#waiters.add(wake);
            this.done.then(wake);
          });
        }
      })(),
      `a line matching ${pattern}`,
      30_000,
    );
  }

  text(): string {
    return this.lines.join("\n");
  }
}

/** A running hubbub whose stdout and stderr are read line by line; on Deno it may use `allowDirs`. */
function start(
  args: string[],
  env: Record<string, string> = {},
  allowDirs: readonly string[] = [],
) {
  const child = hubbub(args, env, { allowDirs }).spawn();
  const stdout = new Lines(child.stdout);
  const stderr = new Lines(child.stderr);
  return {
    child,
    stdout,
    stderr,
    /** The main listener's URL, from the text-format listening line. */
    async url(): Promise<URL> {
      const { line } = await stdout.waitFor(/listening on http:\/\/\S+/);
      return new URL(line.match(/listening on (http:\/\/\S+)/)![1]);
    },
    async [Symbol.asyncDispose]() {
      await terminate(child, "hubbub");
      await Promise.all([stdout.done, stderr.done]);
    },
  };
}

/** A port that was free a moment ago. */
function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

/** Runs hubbub to its exit; its code and output. */
async function run(args: string[], env: Record<string, string> = {}) {
  const output = await withTimeout(hubbub(args, env).output(), "hubbub to exit", 30_000);
  const decoder = new TextDecoder();
  return {
    code: output.code,
    stdout: decoder.decode(output.stdout),
    stderr: decoder.decode(output.stderr),
  };
}

Deno.test("startup: an exported HOSTNAME (as Docker and Kubernetes set it) is ignored", async () => {
  await using server = start(["--port", "0"], { HOSTNAME: "somepod" });
  const url = await server.url();
  assert.equal(url.hostname, "0.0.0.0");
  const health = await fetch(`http://127.0.0.1:${url.port}/healthz`);
  assert.equal(health.status, 200);
  await health.body?.cancel();
});

Deno.test("startup: HUBBUB_PORT and PORT set the port; the flag wins over both", async (t) => {
  for (const name of ["HUBBUB_PORT", "PORT"]) {
    await t.step(name, async () => {
      const port = freePort();
      await using server = start(["--hostname", "127.0.0.1"], { [name]: String(port) });
      assert.equal(Number((await server.url()).port), port);
    });
  }
  await t.step("--port over HUBBUB_PORT and PORT", async () => {
    // Both variables name a port that is taken: only the flag's port 0 can start.
    using taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const busy = String((taken.addr as Deno.NetAddr).port);
    await using server = start(["--hostname", "127.0.0.1", "--port", "0"], {
      HUBBUB_PORT: busy,
      PORT: busy,
    });
    assert.notEqual((await server.url()).port, busy);
  });
});

Deno.test("startup: a port in use ends with one line naming the option and the port, exit 2", async (t) => {
  using taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (taken.addr as Deno.NetAddr).port;
  const cases: [string, string[], RegExp][] = [
    ["the main port", ["--port", String(port)], new RegExp(`Port ${port} \\(--port\\)`)],
    [
      "a dialect's port",
      ["--port", "0", "--dialect", `wschat=${port}`],
      new RegExp(`Port ${port} \\(--dialect wschat=${port}\\)`),
    ],
  ];
  for (const [name, args, pattern] of cases) {
    await t.step(name, async () => {
      const { code, stdout, stderr } = await run(["--hostname", "127.0.0.1", ...args]);
      assert.equal(code, 2, stderr);
      const lines = stderr.trim().split("\n");
      assert.equal(lines.length, 1, `one line, got:\n${stderr}`);
      assert.match(lines[0], pattern);
      assert.match(lines[0], /already in use/);
      assert.doesNotMatch(stderr, /AddrInUse|EADDRINUSE|\bat .*:\d+/);
      assert.doesNotMatch(stdout, /listening on/);
    });
  }
});

Deno.test("startup: the same port given twice is refused before listening, in one line, exit 2", async (t) => {
  const cases: [string[], RegExp][] = [
    [
      ["--port", "0", "--dialect", "wschat=18080", "--dialect", "garinchat=18080"],
      /^hubbub: Port 18080 is given twice, to --dialect wschat and to --dialect garinchat/,
    ],
    [["--port", "18081", "--dialect", "wsify=18081"], /to --port and to --dialect wsify/],
  ];
  for (const [args, pattern] of cases) {
    await t.step(args.join(" "), async () => {
      const { code, stderr } = await run(args);
      assert.equal(code, 2);
      assert.equal(stderr.trim().split("\n").length, 1, stderr);
      assert.match(stderr, pattern);
    });
  }
});

Deno.test("startup: --log-format json writes one object per line, from the summary to the last", async () => {
  const server = start(
    ["--port", "0", "--hostname", "127.0.0.1", "--log-format", "json", "--dialect", "wsify=0"],
    { HUBBUB_API_KEY: "startup-test-api-key-0123456789" },
  );
  let closed = false;
  try {
    const { line } = await server.stdout.waitFor(/"msg":"[^"]*listening on/);
    const summary = JSON.parse(line);
    assert.match(summary.time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    assert.equal(summary.level, "info");
    assert.equal(typeof summary.version, "string");
    assert.ok(["deno", "bun"].includes(summary.runtime));
    assert.match(summary.url, /^http:\/\/127\.0\.0\.1:\d+\/$/);
    assert.match(summary.dialects, /^wsify=http:\/\/127\.0\.0\.1:\d+\/$/);
    assert.equal(summary.auth, "none");
    assert.equal(summary.authorizer, "off");
    assert.equal(summary.api, "on");
    assert.equal(summary.engine, "memory");
    assert.equal(summary.store, "memory");
    await server.stdout.waitFor(/"msg":"wsify clients on/);
    server.child.kill("SIGTERM");
    assert.equal((await server.child.status).code, 0);
    closed = true;
    await Promise.all([server.stdout.done, server.stderr.done]);
    const lines = [...server.stdout.lines, ...server.stderr.lines].filter((line) => line !== "");
    for (const line of lines) {
      const entry = JSON.parse(line);
      assert.deepEqual(Object.keys(entry).slice(0, 3), ["time", "level", "msg"], line);
    }
    assert.equal(JSON.parse(server.stdout.lines.filter(Boolean).at(-1)!).msg, "stopped");
    assert.ok(!lines.join("\n").includes("startup-test-api-key"));
  } finally {
    if (!closed) await terminate(server.child, "hubbub");
    await Promise.all([server.stdout.done, server.stderr.done]);
  }
});

Deno.test("startup: --log-level warn keeps info lines out; the summary is an info line", async () => {
  await using server = start(["--port", "0", "--hostname", "127.0.0.1", "--log-level", "warn"], {
    // Read by earlier versions: a warning says so.
    API_KEY: "an-old-api-key-0123456789",
  });
  await server.stderr.waitFor(
    /WARN +API_KEY is set but no longer read; hubbub reads HUBBUB_API_KEY/,
  );
  server.child.kill("SIGTERM");
  await server.child.status;
  await server.stdout.done;
  assert.deepEqual(server.stdout.lines.filter(Boolean), []);
});

Deno.test("startup: Redis unreachable at start is logged once, and so is every change of its state", async () => {
  await using redis = await startRedis();
  await redis.stop();
  await using server = start(["--port", "0", "--hostname", "127.0.0.1", "--redis-url", redis.url]);
  const { line } = await server.stdout.waitFor(/listening on/);
  assert.match(line, /engine=redis redis=redis:\/\/127\.0\.0\.1:\d+ /);
  await server.stderr.waitFor(/ERROR cluster: cannot reach redis; serving locally, retrying/);
  await redis.start();
  const up = await server.stdout.waitFor(/INFO +cluster: connected to redis/);
  await redis.stop();
  await server.stderr.waitFor(/ERROR cluster: lost the redis connection; serving locally/);
  await redis.start();
  await server.stdout.waitFor(/INFO +cluster: connected to redis/, up.index + 1);
  // Said once while it was retrying, however many retries failed.
  assert.equal(server.stderr.lines.filter((line) => line.includes("cannot reach")).length, 1);
});

Deno.test("startup: the summary names the history store it opened", async (t) => {
  await t.step("--data-dir none: memory", async () => {
    await using server = start(["--port", "0", "--hostname", "127.0.0.1", "--data-dir", "none"]);
    assert.match((await server.stdout.waitFor(/listening on/)).line, / store=memory( |$)/);
  });
  await t.step("a directory it may write: SQLite in it, created with its parents", async () => {
    const root = await Deno.makeTempDir({ prefix: "hubbub-startup-" });
    try {
      const dataDir = `${root}/nested/data`;
      await using server = start(
        ["--port", "0", "--hostname", "127.0.0.1", "--data-dir", dataDir],
        {},
        [root],
      );
      const { line } = await server.stdout.waitFor(/listening on/);
      assert.ok(line.includes(` store=sqlite:${dataDir}/history.db`), line);
      assert.ok((await Deno.stat(`${dataDir}/history.db`)).isFile);
    } finally {
      await Deno.remove(root, { recursive: true });
    }
  });
});
