/**
 * No false acknowledgements during shutdown (issue 13 item 5): once the
 * server is shutting down, what changes something (`POST /api/broadcast`,
 * `POST /api/disconnect`, wsify's `POST /broadcast`) answers 503 with
 * `Retry-After` and sends nothing, so callers retry elsewhere.
 */
import assert from "node:assert/strict";
import { createApi } from "../../lib/http/api.ts";
import { createManualClock } from "../../lib/core/clock.ts";
import { wsify } from "../../lib/dialects/wsify.ts";
import { CloseCode } from "../../lib/core/protocol.ts";
import { startServer, type TestServer } from "../_helpers.ts";

const API_KEY = "api-key-0123456789abcdef";
const BROADCASTING_KEY = "the-broadcasting-key";

function post(server: TestServer, path: string, body: unknown): Promise<Response> {
  return fetch(`${server.url}${path}`, {
    method: "POST",
    headers: { authorization: `Bearer ${API_KEY}`, "content-type": "application/json" },
    body: JSON.stringify(body),
  });
}

/** Asserts a 503 `shutting_down` answer with a `Retry-After` of whole seconds. */
async function assertShuttingDown(response: Response): Promise<void> {
  assert.equal(response.status, 503);
  assert.match(response.headers.get("retry-after") ?? "", /^[1-9]\d*$/);
  const body = await response.json();
  assert.equal(body.error.code, "shutting_down");
}

Deno.test("shutdown api: broadcast and disconnect answer 503 with Retry-After once shutdown has begun", async () => {
  await using server = startServer({ apiKey: API_KEY });
  const alice = await server.user("alice", "lobby");
  const before = await post(server, "/api/broadcast", { channel: "lobby", text: "before" });
  assert.equal(before.status, 202);
  const body = await before.json();
  assert.deepEqual(body, { delivered: 1, id: body.id, seq: 1 });
  const message = await alice.nextOf("message");
  assert.equal(message.text, "before");
  assert.equal(message.id, body.id);
  const { messagesIn, deliveries } = server.app.metrics;

  server.app.shutdown(CloseCode.ServiceRestart, "Server restarting");
  await assertShuttingDown(await post(server, "/api/broadcast", { channel: "lobby", text: "x" }));
  await assertShuttingDown(
    await post(server, "/api/broadcast", { messages: [{ channel: "lobby", text: "x" }] }),
  );
  await assertShuttingDown(await post(server, "/api/disconnect", { name: "alice" }));
  // Nothing was published or sent for the refused calls.
  assert.equal(server.app.metrics.messagesIn, messagesIn);
  assert.equal(server.app.metrics.deliveries, deliveries);
  assert.equal((await alice.closed).code, CloseCode.ServiceRestart);
  assert.ok(alice.buffered.every((frame) => frame.type !== "message"), "no message after");

  // What changes nothing still answers, and a wrong key is still a 401, not an invitation.
  const channels = await fetch(`${server.url}/api/channels`, {
    headers: { authorization: `Bearer ${API_KEY}` },
  });
  assert.equal(channels.status, 200);
  await channels.body?.cancel();
  const wrongKey = await fetch(`${server.url}/api/broadcast`, {
    method: "POST",
    headers: { authorization: "Bearer wrong-key-0123456789" },
    body: JSON.stringify({ channel: "lobby", text: "x" }),
  });
  assert.equal(wrongKey.status, 401);
  await wrongKey.body?.cancel();
});

Deno.test("shutdown api: a broadcast whose body was still arriving when shutdown began is refused", async () => {
  let shuttingDown = false;
  const published: string[] = [];
  const api = createApi({
    apiKey: API_KEY,
    maxBodyBytes: 65536,
    maxTextLength: 4096,
    broadcast(_channel, _from, text) {
      published.push(text);
      return Promise.resolve({ delivered: 1, id: "m1", seq: 1, duplicate: false });
    },
    kick: () => true,
    channels: () => [],
    members: () => null,
    shuttingDown: () => shuttingDown,
  });
  const { promise: reading, resolve: startedReading } = Promise.withResolvers<void>();
  let sent = false;
  const body = new ReadableStream<Uint8Array>({
    // Pulled only once the API reads the body: it has passed every check made before reading.
    pull(controller) {
      if (sent) return controller.close();
      sent = true;
      startedReading();
      return reading.then(() => {
        controller.enqueue(new TextEncoder().encode('{"channel":"lobby","text":"late"}'));
      });
    },
  });
  const answer = api(
    new Request("http://hubbub.test/api/broadcast", {
      method: "POST",
      headers: { authorization: `Bearer ${API_KEY}` },
      body,
    }),
    "/api/broadcast",
  );
  await reading;
  shuttingDown = true;
  await assertShuttingDown(await answer);
  assert.deepEqual(published, []);
});

Deno.test("shutdown api: wsify's POST /broadcast answers 503 with Retry-After once shutdown has begun", async () => {
  await using server = startServer(
    { broadcastingKey: BROADCASTING_KEY },
    { clock: createManualClock(), dialects: [wsify] },
  );
  const broadcast = () =>
    fetch(`${server.url}/compat/wsify/broadcast?key=${BROADCASTING_KEY}`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ channel: "news", content: "hello" }),
    });
  const before = await broadcast();
  assert.equal(before.status, 201);
  await before.body?.cancel();
  const { messagesIn } = server.app.metrics;
  server.app.shutdown(CloseCode.ServiceRestart, "Server restarting");
  const during = await broadcast();
  assert.equal(during.status, 503);
  assert.match(during.headers.get("retry-after") ?? "", /^[1-9]\d*$/);
  await during.body?.cancel();
  assert.equal(server.app.metrics.messagesIn, messagesIn);
});
