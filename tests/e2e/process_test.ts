/**
 * The real entry point as a user runs it: `main.ts` in its own process with
 * only net and env permissions (no --allow-read, as in a compiled binary).
 */
import assert from "node:assert/strict";
import { openClient, withTimeout } from "../_helpers.ts";

const ROOT = new URL("../../", import.meta.url);

function hubbub(args: string[], env: Record<string, string> = {}) {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-net", "--allow-env", "main.ts", ...args],
    cwd: ROOT,
    env,
    stdout: "piped",
    stderr: "piped",
  });
}

/** Starts the server on a free port and returns its URL once it says it listens. */
async function spawnServer(args: string[] = []) {
  const child = hubbub(["--port", "0", "--hostname", "127.0.0.1", ...args]).spawn();
  const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let seen = "";
  let url: string | undefined;
  while (url === undefined) {
    const { done, value } = await withTimeout(lines.read(), "the listening line", 20000);
    if (done) throw new Error(`Server exited before listening: ${seen}`);
    seen += value;
    url = /listening on (http:\/\/\S+?)\/?\s/.exec(seen)?.[1];
  }
  const rest = (async () => {
    for (;;) {
      const { done, value } = await lines.read();
      if (done) return seen;
      seen += value;
    }
  })();
  const stderr = new Response(child.stderr).text();
  return { child, url, stdout: rest, stderr };
}

Deno.test("process: serves the client and chat without read permission; SIGTERM closes with 1012", async () => {
  const server = await spawnServer();
  try {
    const page = await fetch(`${server.url}/`);
    assert.equal(page.status, 200);
    assert.match(await page.text(), /<html/i);
    const client = await openClient(`${server.url.replace("http", "ws")}/ws`);
    assert.equal(client.hello.type, "hello");
    await client.login("procuser");
    server.child.kill("SIGTERM");
    const closed = await client.closed;
    assert.equal(closed.code, 1012);
    const status = await server.child.status;
    assert.equal(status.code, 0);
    assert.match(await server.stdout, /SIGTERM/);
    assert.doesNotMatch(await server.stderr, /PermissionDenied|NotCapable/);
  } finally {
    try {
      server.child.kill("SIGKILL");
    } catch {
      // Already gone.
    }
    await server.child.status;
    await server.stdout;
    await server.stderr;
  }
});

Deno.test("process: --help lists the options and exits 0", async () => {
  const output = await hubbub(["--help"]).output();
  assert.equal(output.code, 0);
  const text = new TextDecoder().decode(output.stdout);
  for (
    const flag of ["--port", "--hostname", "--allowed-origins", "--api-key", "--max-message-bytes"]
  ) {
    assert.ok(text.includes(flag), flag);
  }
});

Deno.test("process: bad configuration names the option and exits 2", async (t) => {
  const cases: [string[], Record<string, string>, RegExp][] = [
    [["--port", "eighty"], {}, /--port/],
    [[], { MAX_MESSAGE_BYTES: "lots" }, /MAX_MESSAGE_BYTES/],
    [["--nope"], {}, /--nope/],
  ];
  for (const [args, env, pattern] of cases) {
    await t.step(`${args.join(" ")} ${JSON.stringify(env)}`, async () => {
      const output = await hubbub(args, env).output();
      assert.equal(output.code, 2);
      assert.match(new TextDecoder().decode(output.stderr), pattern);
    });
  }
});
