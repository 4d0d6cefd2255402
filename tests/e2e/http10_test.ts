/**
 * HTTP/1.0 without `Host`, as HAProxy's default health check sends it
 * (issue 13 item 6): answered like any request on every target, never with
 * a 500 or Bun's development error page (stack frames, the working
 * directory, source lines).
 */
import assert from "node:assert/strict";
import { parseAnswer, rawHttp } from "./_raw_http.ts";
import { spawnServer } from "./_server.ts";

const ROOT = new URL("../../", import.meta.url).pathname.replace(/\/$/, "");

/** Fails when `text` shows anything of the server's insides. */
function assertNoInsides(text: string): void {
  assert.ok(!text.includes(ROOT), "the working directory");
  assert.doesNotMatch(text, /\bat .+:\d+:\d+|\.ts:\d+/, "a stack frame or source position");
  assert.doesNotMatch(text, /<!doctype|__bunfallback/i, "an HTML error page");
}

Deno.test("http/1.0: requests without Host get their normal answer, never a 500 or a stack", async (t) => {
  await using server = await spawnServer();
  const ask = async (request: string) => {
    using conn = await rawHttp(server.port);
    await conn.write(request);
    const text = await conn.readAll();
    assertNoInsides(text);
    return parseAnswer(text);
  };

  await t.step("GET /healthz HTTP/1.0 is 200", async () => {
    const answer = await ask("GET /healthz HTTP/1.0\r\n\r\n");
    assert.equal(answer.status, 200, `${answer.status} ${answer.body.slice(0, 200)}`);
    assert.deepEqual(JSON.parse(answer.body), { status: "ok" });
  });

  await t.step("GET /readyz HTTP/1.0 is 200", async () => {
    const answer = await ask("GET /readyz HTTP/1.0\r\n\r\n");
    assert.equal(answer.status, 200, `${answer.status} ${answer.body.slice(0, 200)}`);
  });

  await t.step(
    "OPTIONS / HTTP/1.0 (HAProxy's default check) is a 404 like any unknown route",
    async () => {
      const answer = await ask("OPTIONS / HTTP/1.0\r\n\r\n");
      assert.equal(answer.status, 404, `${answer.status} ${answer.body.slice(0, 200)}`);
    },
  );

  await t.step("GET /healthz HTTP/1.0 with Host is 200", async () => {
    const answer = await ask(`GET /healthz HTTP/1.0\r\nHost: 127.0.0.1:${server.port}\r\n\r\n`);
    assert.equal(answer.status, 200);
  });

  // Still serving: nothing above hurt the process.
  const health = await fetch(`${server.url}/healthz`);
  assert.equal(health.status, 200);
  await health.body?.cancel();
});
