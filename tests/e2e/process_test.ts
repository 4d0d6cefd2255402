/**
 * The real entry point as a user runs it: `main.ts` in its own process with
 * only net and env permissions (no --allow-read, as in a compiled binary).
 */
import assert from "node:assert/strict";
import { openClient } from "../_helpers.ts";
import { hubbub, spawnServer } from "./_server.ts";

Deno.test("process: serves the client and chat without read permission; SIGTERM closes with 1012", async () => {
  await using server = await spawnServer();
  const page = await fetch(`${server.url}/`);
  assert.equal(page.status, 200);
  assert.match(await page.text(), /<html/i);
  const client = await openClient(server.wsUrl);
  assert.equal(client.hello.type, "hello");
  await client.login("procuser");
  server.child.kill("SIGTERM");
  const closed = await client.closed;
  assert.equal(closed.code, 1012);
  const status = await server.child.status;
  assert.equal(status.code, 0);
  assert.match(await server.stdout, /SIGTERM/);
  assert.doesNotMatch(await server.stderr, /PermissionDenied|NotCapable/);
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
