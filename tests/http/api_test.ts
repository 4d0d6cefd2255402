/**
 * The server API (lib/http/api.ts) over a real listener: batch broadcasts,
 * disconnecting a user, listing channels and members, and the errors every
 * route shares.
 */
import assert from "node:assert/strict";
import { MAX_BATCH } from "../../lib/http/api.ts";
import { CloseCode } from "../../lib/core/protocol.ts";
import {
  assertJsonError,
  type Frame,
  startServer,
  type TestClient,
  type TestServer,
  withTimeout,
} from "../_helpers.ts";

const API_KEY = "api-key-0123456789abcdef";

/** Calls the API; `auth` null sends no Authorization header. */
function call(
  server: TestServer,
  method: string,
  path: string,
  { body, auth = `Bearer ${API_KEY}` }: { body?: unknown; auth?: string | null } = {},
): Promise<Response> {
  return fetch(`${server.url}${path}`, {
    method,
    headers: auth === null ? {} : { authorization: auth },
    // fetch refuses a body on GET and HEAD.
    body: body === undefined || method === "GET" || method === "HEAD"
      ? undefined
      : typeof body === "string"
      ? body
      : JSON.stringify(body),
  });
}

/** Asserts a JSON answer with exactly `expected` as its body. */
async function assertJson(response: Response, status: number, expected: unknown): Promise<void> {
  assert.equal(response.status, status);
  assert.match(response.headers.get("content-type") ?? "", /^application\/json/);
  assert.deepEqual(await response.json(), expected);
}

/**
 * Reads the next frame, which must be a message of `channel` from `from` with `text`, and
 * `seq` when given (else any positive seq: every API message is stored).
 */
async function assertMessage(
  client: TestClient,
  expected: { channel: string; from: string; text: string; seq?: number },
): Promise<Frame> {
  const frame = await client.next();
  assert.equal(frame.type, "message", `expected a message, got ${JSON.stringify(frame)}`);
  const { id, ts, seq, ...rest } = frame;
  const { seq: expectedSeq, ...fields } = expected;
  assert.deepEqual(rest, { type: "message", ...fields });
  if (expectedSeq === undefined) assert.ok(Number.isInteger(seq) && seq > 0, `seq ${seq}`);
  else assert.equal(seq, expectedSeq);
  assert.equal(typeof id, "string");
  assert.match(ts, /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/);
  return frame;
}

/** Pings; the pong must be the next frame, so nothing else was sent to `client` before it. */
async function assertPongNext(client: TestClient): Promise<void> {
  client.send({ type: "ping", ref: "sentinel" });
  assert.deepEqual(await client.next(), { type: "pong", ref: "sentinel" });
}

// ---------------------------------------------------------------------------
// POST /api/broadcast

Deno.test("api: a batch broadcast reaches every member, each message in order", async () => {
  await using server = startServer({ apiKey: API_KEY });
  const alice = await server.user("alice", "lobby", "news");
  const bob = await server.user("bob", "lobby");
  const carol = await server.user("carol", "news");
  assert.equal((await alice.nextOf("presence")).name, "bob");
  assert.equal((await alice.nextOf("presence")).name, "carol");

  const messages = [
    { channel: "lobby", text: "one" },
    { channel: "news", text: "two", from: "ci" },
    { channel: "lobby", text: "three", from: "deploy-bot" },
    { channel: "nobody-here", text: "lost" },
    { channel: "news", text: "four" },
  ];
  const response = await call(server, "POST", "/api/broadcast", { body: { messages } });
  assert.equal(response.status, 202);
  const body = await response.json();
  // Each message is stored under its id and its channel's next seq, the memberless one too.
  const id = (i: number) => body.messages[i].id;
  assert.deepEqual(body, {
    delivered: 2 + 2 + 2 + 0 + 2,
    messages: [
      { id: id(0), seq: 1 },
      { id: id(1), seq: 1 },
      { id: id(2), seq: 2 },
      { id: id(3), seq: 1 },
      { id: id(4), seq: 2 },
    ],
  });

  const lobby1 = { channel: "lobby", from: "server", text: "one", seq: 1 };
  const news2 = { channel: "news", from: "ci", text: "two", seq: 1 };
  const lobby3 = { channel: "lobby", from: "deploy-bot", text: "three", seq: 2 };
  const news4 = { channel: "news", from: "server", text: "four", seq: 2 };
  const expected: [TestClient, (typeof lobby1)[]][] = [
    [alice, [lobby1, news2, lobby3, news4]],
    [bob, [lobby1, lobby3]],
    [carol, [news2, news4]],
  ];
  const ids = new Map<string, string>();
  for (const [client, frames] of expected) {
    for (const frame of frames) {
      const { id } = await assertMessage(client, frame);
      // Every member sees one message under one id; different messages have different ids.
      assert.equal(ids.get(frame.text) ?? id, id);
      ids.set(frame.text, id);
    }
  }
  assert.equal(new Set(ids.values()).size, 4);
  // The answer named the ids the members got.
  assert.deepEqual([0, 1, 2, 4].map(id), ["one", "two", "three", "four"].map((t) => ids.get(t)));
  // Nothing else: a pong comes after anything the server had queued for the socket.
  for (const client of [alice, bob, carol]) await assertPongNext(client);
});

Deno.test("api: a batch with one invalid message is 400 and delivers nothing", async (t) => {
  await using server = startServer({ apiKey: API_KEY, maxTextLength: 50 });
  const alice = await server.user("alice", "lobby");
  const good = { channel: "lobby", text: "should not arrive" };
  const cases: { name: string; body: unknown }[] = [
    { name: "an invalid channel", body: { messages: [good, { channel: "a b", text: "x" }] } },
    { name: "an empty text", body: { messages: [good, { channel: "lobby", text: "" }] } },
    {
      name: "a text over maxTextLength",
      body: { messages: [good, { channel: "lobby", text: "x".repeat(51) }] },
    },
    {
      name: "an invalid from",
      body: { messages: [good, { channel: "lobby", text: "x", from: "two words" }] },
    },
    { name: "a missing text", body: { messages: [good, { channel: "lobby" }] } },
    {
      name: "an unknown field",
      body: { messages: [good, { channel: "lobby", text: "x", html: true }] },
    },
    { name: "a message that is not an object", body: { messages: [good, "hello"] } },
    { name: "the last message invalid", body: { messages: [good, good, { channel: "" }] } },
    { name: "an empty batch", body: { messages: [] } },
    {
      name: `${MAX_BATCH + 1} messages`,
      body: { messages: Array.from({ length: MAX_BATCH + 1 }, () => good) },
    },
    { name: "a batch with a top-level field too", body: { messages: [good], channel: "lobby" } },
    { name: "messages that is not an array", body: { messages: good } },
  ];
  for (const [i, c] of cases.entries()) {
    await t.step(c.name, async () => {
      await assertJsonError(
        await call(server, "POST", "/api/broadcast", { body: c.body }),
        400,
        "bad_request",
      );
      // Nothing was delivered: the next message alice gets is this marker.
      // Nor stored: each marker takes the next seq, as if the refused batch had never come.
      const marker = { channel: "lobby", text: `after ${c.name}` };
      const response = await call(server, "POST", "/api/broadcast", { body: marker });
      assert.equal(response.status, 202);
      const body = await response.json();
      assert.deepEqual(body, { delivered: 1, id: body.id, seq: i + 1 });
      const frame = await assertMessage(alice, { ...marker, from: "server", seq: i + 1 });
      assert.equal(frame.id, body.id);
    });
  }
});

Deno.test(`api: a batch of exactly ${MAX_BATCH} messages is accepted and delivered in order`, async () => {
  await using server = startServer({ apiKey: API_KEY });
  const alice = await server.user("alice", "lobby");
  const messages = Array.from(
    { length: MAX_BATCH },
    (_, i) => ({ channel: "lobby", text: `${i}` }),
  );
  const response = await call(server, "POST", "/api/broadcast", { body: { messages } });
  assert.equal(response.status, 202);
  const body = await response.json();
  assert.equal(body.delivered, MAX_BATCH);
  assert.deepEqual(body.messages.map((m: Frame) => m.seq), messages.map((_, i) => i + 1));
  for (let i = 0; i < MAX_BATCH; i++) {
    const frame = await assertMessage(alice, {
      channel: "lobby",
      from: "server",
      text: `${i}`,
      seq: i + 1,
    });
    assert.equal(frame.id, body.messages[i].id);
  }
});

// ---------------------------------------------------------------------------
// POST /api/disconnect

Deno.test("api: disconnect closes the user's socket with 4403 and its channels hear it leave", async () => {
  await using server = startServer({ apiKey: API_KEY });
  const alice = await server.user("alice", "lobby", "news");
  const bob = await server.user("bob", "lobby");
  const carol = await server.user("carol", "news");

  const response = await call(server, "POST", "/api/disconnect", { body: { name: "Alice" } });
  await assertJson(response, 200, { disconnected: "Alice" });
  assert.deepEqual(await withTimeout(alice.closed, "alice's close"), {
    code: CloseCode.Kicked,
    reason: "Removed by an operator",
  });
  for (const [client, channel] of [[bob, "lobby"], [carol, "news"]] as const) {
    assert.deepEqual(await client.nextOf("presence"), {
      type: "presence",
      channel,
      event: "leave",
      name: "alice",
    });
  }
  await assertJson(await call(server, "GET", "/api/channels/lobby"), 200, {
    name: "lobby",
    members: ["bob"],
  });
  await assertJsonError(
    await call(server, "POST", "/api/disconnect", { body: { name: "alice" } }),
    404,
    "not_found",
  );
  const again = await server.connect();
  assert.equal((await again.login("alice")).name, "alice", "the name is free again");
});

Deno.test("api: disconnect refuses unknown names and bad bodies", async (t) => {
  await using server = startServer({ apiKey: API_KEY, maxMessageBytes: 1024 });
  const bob = await server.user("bob", "lobby");
  const anonymous = await server.connect(); // connected, never logged in
  const cases: { name: string; body: unknown; status: number; code: string }[] = [
    { name: "a name nobody holds", body: { name: "zoe" }, status: 404, code: "not_found" },
    {
      name: "a name that is not valid",
      body: { name: "no such name" },
      status: 404,
      code: "not_found",
    },
    { name: "an empty name", body: { name: "" }, status: 400, code: "bad_request" },
    { name: "no name", body: {}, status: 400, code: "bad_request" },
    { name: "a name that is not a string", body: { name: 7 }, status: 400, code: "bad_request" },
    {
      name: "an unknown field",
      body: { name: "bob", why: "spam" },
      status: 400,
      code: "bad_request",
    },
    { name: "invalid JSON", body: "{", status: 400, code: "bad_json" },
    {
      name: "a body over the limit",
      body: { name: "x".repeat(2000) },
      status: 413,
      code: "too_large",
    },
  ];
  for (const c of cases) {
    await t.step(c.name, async () => {
      await assertJsonError(
        await call(server, "POST", "/api/disconnect", { body: c.body }),
        c.status,
        c.code,
      );
    });
  }
  bob.send({ type: "ping" });
  assert.deepEqual(await bob.next(), { type: "pong" }, "nobody was disconnected");
  anonymous.send({ type: "ping" });
  assert.deepEqual(await anonymous.next(), { type: "pong" });
});

// ---------------------------------------------------------------------------
// GET /api/channels

Deno.test("api: channels lists every channel and its member count, sorted by name", async () => {
  await using server = startServer({ apiKey: API_KEY });
  await assertJson(await call(server, "GET", "/api/channels"), 200, { channels: [] });
  await server.user("alice", "news", "lobby");
  await server.user("bob", "lobby", "team:dev");
  await assertJson(await call(server, "GET", "/api/channels"), 200, {
    channels: [
      { name: "lobby", members: 2 },
      { name: "news", members: 1 },
      { name: "team:dev", members: 1 },
    ],
  });
});

Deno.test("api: a channel lists its member names in join order", async (t) => {
  await using server = startServer({ apiKey: API_KEY });
  await server.user("carol", "lobby");
  await server.user("Alice", "lobby", "team:dev");
  await server.user("bob", "lobby");
  const cases: { name: string; path: string; status: number; body?: unknown }[] = [
    {
      name: "lobby",
      path: "/api/channels/lobby",
      status: 200,
      body: { name: "lobby", members: ["carol", "Alice", "bob"] },
    },
    {
      name: "a channel with a colon",
      path: "/api/channels/team:dev",
      status: 200,
      body: { name: "team:dev", members: ["Alice"] },
    },
    {
      name: "a percent-encoded channel",
      path: "/api/channels/team%3Adev",
      status: 200,
      body: { name: "team:dev", members: ["Alice"] },
    },
    { name: "an unknown channel", path: "/api/channels/nowhere", status: 404 },
    { name: "channels are case-sensitive", path: "/api/channels/LOBBY", status: 404 },
    { name: "an invalid channel name", path: "/api/channels/a%20b", status: 404 },
    { name: "a deeper path", path: "/api/channels/lobby/members", status: 404 },
  ];
  for (const c of cases) {
    await t.step(c.name, async () => {
      const response = await call(server, "GET", c.path);
      if (c.status === 200) await assertJson(response, 200, c.body);
      else await assertJsonError(response, c.status, "not_found");
    });
  }
});

// ---------------------------------------------------------------------------
// Errors every route shares

/** Every API route with its method and a body it accepts. */
const ROUTES: { method: string; path: string; body?: unknown; status: number }[] = [
  { method: "POST", path: "/api/broadcast", body: { channel: "lobby", text: "t" }, status: 202 },
  { method: "POST", path: "/api/disconnect", body: { name: "ghost" }, status: 404 },
  { method: "GET", path: "/api/channels", status: 200 },
  { method: "GET", path: "/api/channels/lobby", status: 200 },
];

Deno.test("api: a missing or wrong bearer key is 401 on every route", async (t) => {
  await using server = startServer({ apiKey: API_KEY });
  const alice = await server.user("alice", "lobby");
  const auths: [string, string | null][] = [
    ["no Authorization header", null],
    ["a wrong key", `Bearer ${"x".repeat(API_KEY.length)}`],
    ["the key with a suffix", `Bearer ${API_KEY}x`],
    ["a prefix of the key", `Bearer ${API_KEY.slice(0, -1)}`],
    ["the key without the Bearer scheme", API_KEY],
    ["the key under another scheme", `Basic ${API_KEY}`],
    ["an empty bearer", "Bearer "],
  ];
  for (const route of ROUTES) {
    for (const [name, auth] of auths) {
      await t.step(`${route.method} ${route.path}: ${name}`, async () => {
        const response = await call(server, route.method, route.path, { body: route.body, auth });
        await assertJsonError(response, 401, "unauthorized");
        assert.equal(response.headers.get("www-authenticate"), "Bearer");
      });
    }
    await t.step(
      `${route.method} ${route.path}: the wrong method without a key is 401 too`,
      async () => {
        const method = route.method === "GET" ? "POST" : "GET";
        await assertJsonError(
          await call(server, method, route.path, { auth: null }),
          401,
          "unauthorized",
        );
      },
    );
    await t.step(
      `${route.method} ${route.path}: the right key works, any scheme case`,
      async () => {
        const response = await call(server, route.method, route.path, {
          body: route.body,
          auth: `bearer ${API_KEY}`,
        });
        assert.equal(response.status, route.status);
        await response.body?.cancel();
      },
    );
  }
  // Refused broadcasts delivered (and stored) nothing: alice's next message is the one the right
  // key sent, the channel's first.
  await assertMessage(alice, { channel: "lobby", from: "server", text: "t", seq: 1 });
  await assertPongNext(alice);
});

Deno.test("api: a wrong method is 405 with Allow on every route", async (t) => {
  await using server = startServer({ apiKey: API_KEY });
  await server.user("alice", "lobby");
  for (const route of ROUTES) {
    const others = route.method === "GET" ? ["POST", "PUT", "DELETE"] : ["GET", "PUT", "DELETE"];
    for (const method of others) {
      await t.step(`${method} ${route.path}`, async () => {
        const response = await call(server, method, route.path, { body: route.body });
        await assertJsonError(response, 405, "method_not_allowed");
        assert.equal(response.headers.get("allow"), route.method);
      });
    }
  }
});

Deno.test("api: without an API key every route is 404", async (t) => {
  await using server = startServer();
  await server.user("alice", "lobby");
  for (const route of ROUTES) {
    for (const auth of [null, `Bearer ${API_KEY}`]) {
      await t.step(
        `${route.method} ${route.path} ${auth === null ? "without" : "with"} a key`,
        async () => {
          const response = await call(server, route.method, route.path, { body: route.body, auth });
          await assertJsonError(response, 404, "not_found");
          assert.equal(response.headers.get("www-authenticate"), null);
        },
      );
    }
  }
});

Deno.test("api: unknown API paths are 404, with or without a key", async (t) => {
  await using server = startServer({ apiKey: API_KEY });
  const paths = [
    "/api/whatever",
    "/api",
    "/api/",
    "/api/broadcast/extra",
    "/api/disconnect/alice",
    "/api/channels/a/b",
    "/api/Channels",
  ];
  for (const path of paths) {
    for (const auth of [null, `Bearer ${API_KEY}`]) {
      await t.step(`GET ${path} ${auth === null ? "without" : "with"} a key`, async () => {
        await assertJsonError(await call(server, "GET", path, { auth }), 404, "not_found");
      });
    }
  }
});

Deno.test({
  name: "api: route names inherited from Object.prototype are unknown paths",
  async fn(t) {
    await using server = startServer({ apiKey: API_KEY });
    for (const path of ["/api/toString", "/api/constructor", "/api/hasOwnProperty"]) {
      for (const auth of [null, `Bearer ${API_KEY}`]) {
        await t.step(`GET ${path} ${auth === null ? "without" : "with"} a key`, async () => {
          await assertJsonError(await call(server, "GET", path, { auth }), 404, "not_found");
        });
      }
    }
  },
});

Deno.test({
  name: "api: a malformed percent-encoding in a channel path is a JSON 404",
  async fn() {
    await using server = startServer({ apiKey: API_KEY });
    await assertJsonError(await call(server, "GET", "/api/channels/%E0"), 404, "not_found");
  },
});
