/**
 * No false acknowledgements in the shutdown grace (issue 13 item 5), in a
 * real process: after SIGTERM, with a client connected, the API answers
 * 503 with `Retry-After` where it used to answer `202 {"delivered":1}` and
 * deliver nothing.
 */
import assert from "node:assert/strict";
import { openClient } from "../_helpers.ts";
import { rawConnect } from "../_raw_ws.ts";
import { parseAnswer, rawHttp } from "./_raw_http.ts";
import { spawnServer, TARGET } from "./_server.ts";

const API_KEY = "api-key-0123456789abcdef";

/** The head of `POST path` with a JSON body of `length` bytes. */
function postHead(port: number, path: string, length: number): string {
  return `POST ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n` +
    `Authorization: Bearer ${API_KEY}\r\nContent-Type: application/json\r\n` +
    `Content-Length: ${length}\r\nConnection: close\r\n\r\n`;
}

Deno.test("shutdown api: in the SIGTERM grace, POST /api/broadcast answers 503 with Retry-After and delivers nothing", async () => {
  await using server = await spawnServer({ args: ["--api-key", API_KEY] });
  const alice = await openClient(server.wsUrl);
  await alice.login("alice");
  await alice.join("lobby");
  // A peer that never answers the close frame keeps the process in its grace period.
  await using stubborn = await rawConnect(server.port);
  const body = JSON.stringify({ channel: "lobby", text: "during shutdown" });
  // A call already under way at the signal: its head is in, its body is not.
  using early = await rawHttp(server.port);
  await early.write(postHead(server.port, "/api/broadcast", body.length) + body.slice(0, 10));
  // A connection made before the signal, used only after it.
  using late = await rawHttp(server.port);

  server.child.kill("SIGTERM");
  assert.equal(await stubborn.readClose(), 1012, "shutdown has begun");

  await late.write(postHead(server.port, "/api/broadcast", body.length) + body);
  const lateText = await late.readAll();
  // Deno keeps listening through the grace, which the stubborn peer holds open. Bun ends it as
  // soon as its close frames are out (uWebSockets does not wait for the peer's), closing idle
  // connections unanswered: nothing is acknowledged either way.
  const closedUnanswered = TARGET !== "deno" && lateText === "";
  if (!closedUnanswered) {
    const lateAnswer = parseAnswer(lateText);
    assert.equal(lateAnswer.status, 503, `${lateAnswer.status} ${lateAnswer.body}`);
    assert.match(lateAnswer.headers.get("retry-after") ?? "", /^[1-9]\d*$/);
    assert.equal(JSON.parse(lateAnswer.body).error.code, "shutting_down");
  }

  await early.write(body.slice(10));
  const earlyAnswer = parseAnswer(await early.readAll());
  assert.equal(earlyAnswer.status, 503, `${earlyAnswer.status} ${earlyAnswer.body}`);
  assert.match(earlyAnswer.headers.get("retry-after") ?? "", /^[1-9]\d*$/);

  assert.equal((await alice.closed).code, 1012);
  assert.ok(alice.buffered.every((frame) => frame.type !== "message"), "alice got no message");
  stubborn.close();
  assert.equal((await server.child.status).code, 0);
});
