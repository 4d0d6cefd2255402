/**
 * `hubbub --healthcheck` as a container runs it: its own process, given the
 * server's flags or environment, exiting 0 when `/readyz` answers 200 and 1
 * otherwise.
 */
import assert from "node:assert/strict";
import { CloseCode } from "../../lib/core/protocol.ts";
import { startServer } from "../_helpers.ts";
import { hubbub, spawnServer } from "./_server.ts";

/** Runs the health check with `args` and `env`; its exit code and its one line of output. */
async function healthcheck(
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const output = await hubbub(["--healthcheck", "--hostname", "127.0.0.1", ...args], env).output();
  const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
  return { code: output.code, stdout: decode(output.stdout), stderr: decode(output.stderr) };
}

/** A port nothing listens on: taken from the kernel, then given back. */
function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr;
  listener.close();
  return port;
}

Deno.test("healthcheck: a running server: exits 0 with one line", async () => {
  await using server = await spawnServer();
  const result = await healthcheck(["--port", String(server.port)]);
  assert.equal(result.code, 0, result.stderr);
  assert.match(result.stdout, /^hubbub: ready: http:\/\/127\.0\.0\.1:\d+\/readyz answered 200\n$/);
});

Deno.test("healthcheck: the port comes from the environment, as the server's does", async () => {
  await using server = await spawnServer();
  const result = await healthcheck([], { PORT: String(server.port) });
  assert.equal(result.code, 0, result.stderr);
});

Deno.test("healthcheck: nothing listening on the port: exits 1 saying so", async () => {
  const result = await healthcheck(["--port", String(freePort())]);
  assert.equal(result.code, 1);
  assert.match(result.stderr, /^hubbub: not ready: http:\/\/127\.0\.0\.1:\d+\/readyz unreachable/);
  assert.equal(result.stderr.trim().split("\n").length, 1, result.stderr);
});

Deno.test("healthcheck: a server shutting down: exits 1 naming the failed check", async () => {
  await using server = startServer();
  server.app.shutdown(CloseCode.ServiceRestart, "Server restarting");
  const result = await healthcheck(["--port", new URL(server.url).port]);
  assert.equal(result.code, 1);
  assert.match(result.stderr, /answered 503 .*"failed":\["shutdown"\]/);
});
