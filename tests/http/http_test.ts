/** HTTP routes over a real listener: client, health, API, upgrade checks. */
import assert from "node:assert/strict";
import { openClient, startServer } from "../_helpers.ts";

const API_KEY = "k".repeat(24);

Deno.test("http: GET / serves the embedded client with a CSP", async () => {
  await using server = startServer();
  const response = await fetch(`${server.url}/`);
  assert.equal(response.status, 200);
  assert.match(response.headers.get("content-type")!, /^text\/html/);
  assert.match(response.headers.get("content-security-policy")!, /default-src 'self'/);
  assert.match(await response.text(), /<script[^>]+src="\/app\.js"/);
  for (const path of ["/app.js", "/style.css"]) {
    const asset = await fetch(`${server.url}${path}`);
    assert.equal(asset.status, 200, path);
    await asset.body?.cancel();
  }
});

Deno.test("http: GET /healthz answers ok", async () => {
  await using server = startServer();
  const response = await fetch(`${server.url}/healthz`);
  assert.equal(response.status, 200);
  assert.deepEqual(await response.json(), { status: "ok" });
});

Deno.test("http: unknown paths are 404 with a JSON error", async () => {
  await using server = startServer();
  const response = await fetch(`${server.url}/nope`);
  assert.equal(response.status, 404);
  assert.equal((await response.json()).error.code, "not_found");
});

Deno.test("http: a plain GET /ws is 426", async () => {
  await using server = startServer();
  const response = await fetch(`${server.url}/ws`);
  assert.equal(response.status, 426);
  assert.equal(response.headers.get("upgrade"), "websocket");
  await response.body?.cancel();
});

Deno.test("http: with ALLOWED_ORIGINS, an upgrade from another origin is 403", async () => {
  await using server = startServer({ allowedOrigins: ["https://chat.example"] });
  const upgrade = (origin: string) =>
    server.app.fetch(
      new Request(server.wsUrl.replace("ws:", "http:"), {
        headers: { upgrade: "websocket", origin },
      }),
      { ip: "127.0.0.1" },
    );
  const refused = await upgrade("https://evil.example");
  assert.ok(refused instanceof Response);
  assert.equal(refused.status, 403);
  assert.deepEqual(
    await upgrade("https://chat.example"),
    { upgrade: true, ip: "127.0.0.1", dialect: undefined, path: "/ws", search: "" },
    "the allowed origin may upgrade",
  );
  const allowed = await openClient(server.wsUrl, { origin: "https://chat.example" });
  await allowed.close();
  await assert.rejects(openClient(server.wsUrl, { origin: "https://evil.example" }));
});

Deno.test("http: POST /api/broadcast is 404 when no API key is configured", async () => {
  await using server = startServer();
  const response = await fetch(`${server.url}/api/broadcast`, { method: "POST", body: "{}" });
  assert.equal(response.status, 404);
  await response.body?.cancel();
});

Deno.test("http: POST /api/broadcast delivers to members and counts them", async () => {
  await using server = startServer({ apiKey: API_KEY });
  const alice = await server.user("alice", "news");
  const bob = await server.user("bob", "news");
  const response = await fetch(`${server.url}/api/broadcast`, {
    method: "POST",
    headers: { authorization: `Bearer ${API_KEY}`, "content-type": "application/json" },
    body: JSON.stringify({ channel: "news", text: "release!", from: "ops" }),
  });
  assert.equal(response.status, 202);
  const body = await response.json();
  assert.equal(typeof body.id, "string");
  assert.deepEqual(body, { delivered: 2, id: body.id, seq: 1 });
  for (const client of [alice, bob]) {
    const message = await client.nextOf("message");
    assert.equal(message.from, "ops");
    assert.equal(message.text, "release!");
    assert.equal(message.id, body.id);
    assert.equal(message.seq, 1);
  }
});

Deno.test("http: POST /api/broadcast refuses bad keys and bad bodies", async (t) => {
  await using server = startServer({ apiKey: API_KEY, maxMessageBytes: 1024 });
  const cases: { name: string; auth?: string; body: string; status: number; code: string }[] = [
    { name: "no key", body: '{"channel":"c","text":"t"}', status: 401, code: "unauthorized" },
    {
      name: "wrong key",
      auth: `Bearer ${"x".repeat(24)}`,
      body: '{"channel":"c","text":"t"}',
      status: 401,
      code: "unauthorized",
    },
    {
      name: "not bearer",
      auth: `Basic ${API_KEY}`,
      body: '{"channel":"c","text":"t"}',
      status: 401,
      code: "unauthorized",
    },
    { name: "bad json", auth: `Bearer ${API_KEY}`, body: "{", status: 400, code: "bad_json" },
    {
      name: "bad channel",
      auth: `Bearer ${API_KEY}`,
      body: '{"channel":"a b","text":"t"}',
      status: 400,
      code: "bad_request",
    },
    {
      name: "extra field",
      auth: `Bearer ${API_KEY}`,
      body: '{"channel":"c","text":"t","x":1}',
      status: 400,
      code: "bad_request",
    },
    {
      name: "too large",
      auth: `Bearer ${API_KEY}`,
      body: JSON.stringify({ channel: "c", text: "x".repeat(2000) }),
      status: 413,
      code: "too_large",
    },
  ];
  for (const c of cases) {
    await t.step(c.name, async () => {
      const headers: Record<string, string> = c.auth ? { authorization: c.auth } : {};
      const response = await fetch(`${server.url}/api/broadcast`, {
        method: "POST",
        headers,
        body: c.body,
      });
      assert.equal(response.status, c.status);
      assert.equal((await response.json()).error.code, c.code);
    });
  }
  const response = await fetch(`${server.url}/api/broadcast`, {
    method: "POST",
    headers: { authorization: `Bearer ${API_KEY}` },
    body: '{"channel":"empty","text":"t"}',
  });
  const body = await response.json();
  // A channel nobody is in gets nothing live, yet keeps the message for whoever joins later.
  assert.deepEqual(body, { delivered: 0, id: body.id, seq: 1 });
  assert.equal(typeof body.id, "string");
});
