/**
 * Conformance of the wsify dialect with customr/wsify as
 * `/work/shared/dialects.md` §3 records it: `/ws` on its own port, join /
 * leave / broadcast with only the content delivered, `POST /broadcast?key=`,
 * the authorizer webhook (against a stub whose answers each test picks), the
 * fork's 30 s text ping and its close on invalid JSON.
 */
import assert from "node:assert/strict";
import { createManualClock } from "../../lib/core/clock.ts";
import type { Config } from "../../lib/config.ts";
import { PING_MS, wsify, wsifyChannel } from "../../lib/dialects/wsify.ts";
import { CHANNEL_PATTERN, CloseCode } from "../../lib/core/protocol.ts";
import { serveDeno } from "../../lib/runtime/deno.ts";
import { startServer, type TestServer, withTimeout } from "../_helpers.ts";
import { type DialectClient, openDialectClient } from "./_client.ts";

const KEY = "the-broadcasting-key";

/**
 * A server speaking wsify on a manual clock, with `overrides`. The burst is
 * raised because the clock never refills the rate limit and the markers
 * below cost three frames each.
 */
function serve(overrides: Partial<Config> = {}, clock = createManualClock()): TestServer {
  const config = { broadcastingKey: KEY, rateBurst: 100_000, ...overrides };
  return startServer(config, { clock, dialects: [wsify] });
}

/** Opens a wsify client on the main port's `/compat/wsify/ws`, with a query when given. */
function connect(server: TestServer, query = ""): Promise<DialectClient> {
  return openDialectClient(`${server.url.replace("http", "ws")}/compat/wsify/ws${query}`);
}

/** Sends one wsify command. */
function command(client: DialectClient, name: string, args: Record<string, unknown>): void {
  client.send({ command: name, args });
}

let markers = 0;

/**
 * Proves nothing else reached `client` since its last read and that its
 * earlier frames have been processed: it joins a channel of its own,
 * broadcasts to it, and its marker must be the next frame.
 */
async function assertQuiet(client: DialectClient): Promise<void> {
  const channel = `marker${++markers}`;
  command(client, "join", { channel });
  command(client, "broadcast", { channel, content: channel });
  command(client, "leave", { channel });
  assert.equal(await client.nextText(), JSON.stringify(channel));
}

/** POSTs to `/compat/wsify/broadcast`. */
function post(
  server: TestServer,
  query: string,
  body: string,
  contentType: string | null = "application/json",
): Promise<Response> {
  return fetch(`${server.url}/compat/wsify/broadcast${query}`, {
    method: "POST",
    headers: contentType === null ? {} : { "content-type": contentType },
    body: contentType === null ? new TextEncoder().encode(body) : body,
  });
}

Deno.test("wsify: maps channel names to valid, distinct core channels", async (t) => {
  const names = ["news", "a b", "user:1", "wsify:news", "ü", "x".repeat(58), "x".repeat(59)];
  const channels = names.map(wsifyChannel);
  for (const [i, name] of names.entries()) {
    await t.step(`"${name.slice(0, 20)}" → ${channels[i]}`, () => {
      assert.match(channels[i], CHANNEL_PATTERN);
      assert.equal(wsifyChannel(name), channels[i], "deterministic");
    });
  }
  assert.match(wsifyChannel("y".repeat(1000)), CHANNEL_PATTERN);
  assert.equal(new Set(channels).size, names.length, "distinct names, distinct channels");
  assert.equal(
    wsifyChannel("news"),
    "news",
    "a valid core channel name is that channel, shared with other protocols",
  );
});

Deno.test("wsify: its own port serves the WebSocket at /ws only; a plain GET /ws is 400", async (t) => {
  await using server = serve();
  const abort = new AbortController();
  const own = serveDeno(server.app, {
    port: 0,
    hostname: "127.0.0.1",
    pingTimeout: 30,
    listener: "wsify",
    signal: abort.signal,
  });
  const base = `127.0.0.1:${own.port}`;
  try {
    await t.step("an upgrade at /ws speaks wsify", async () => {
      const client = await openDialectClient(`ws://${base}/ws`);
      try {
        await assertQuiet(client);
      } finally {
        await client.close();
      }
    });
    const cases: [method: string, path: string, status: number][] = [
      ["GET", "/ws", 400],
      ["POST", "/ws", 405],
      ["GET", "/", 404],
      ["GET", "/other", 404],
      ["GET", "/broadcast", 405],
    ];
    for (const [method, path, status] of cases) {
      await t.step(`${method} ${path} is ${status}`, async () => {
        const response = await fetch(`http://${base}${path}`, { method });
        await response.body?.cancel();
        assert.equal(response.status, status);
      });
    }
    await t.step("an upgrade elsewhere is refused", async () => {
      await assert.rejects(openDialectClient(`ws://${base}/other`));
    });
  } finally {
    abort.abort();
    await own.finished;
  }
});

Deno.test("wsify: nothing is sent on open; a broadcast delivers only the content, JSON-encoded", async (t) => {
  await using server = serve();
  const client = await connect(server);
  try {
    await assertQuiet(client); // the marker is the first frame: nothing came on open
    command(client, "join", { channel: "room" });
    const contents: [string, unknown][] = [
      ["a string", "hello"],
      ["a number", 42.5],
      ["an object", { b: 1, a: [true, null, "x"] }],
      ["an array", [1, "two", { three: 3 }]],
      ["null", null],
      ["false", false],
      ["an empty string", ""],
    ];
    for (const [name, content] of contents) {
      await t.step(name, async () => {
        command(client, "broadcast", { channel: "room", content });
        const text = await client.nextText();
        assert.deepEqual(JSON.parse(text), content, "no envelope, channel, sender or time");
        assert.equal(text, JSON.stringify(content));
      });
    }
    await t.step("a missing content is null", async () => {
      command(client, "broadcast", { channel: "room" });
      assert.equal(await client.nextText(), "null");
    });
  } finally {
    await client.close();
  }
});

Deno.test("wsify: a broadcast reaches the channel's members; the sender only when it joined", async () => {
  await using server = serve();
  const [member, sender, outsider] = await Promise.all([
    connect(server),
    connect(server),
    connect(server),
  ]);
  try {
    command(member, "join", { channel: "room" });
    command(outsider, "join", { channel: "elsewhere" });
    await assertQuiet(member);
    await assertQuiet(outsider);
    command(sender, "broadcast", { channel: "room", content: "from outside" });
    assert.equal(await member.nextText(), '"from outside"', "the sender need not be joined");
    await assertQuiet(sender);
    command(sender, "join", { channel: "room" });
    command(sender, "broadcast", { channel: "room", content: "joined now" });
    assert.equal(await sender.nextText(), '"joined now"', "a joined sender hears itself");
    assert.equal(await member.nextText(), '"joined now"');
    await assertQuiet(outsider);
  } finally {
    await Promise.all([member.close(), sender.close(), outsider.close()]);
  }
});

Deno.test("wsify: join, leave and channel names behave as in the original", async (t) => {
  await using server = serve();
  const listener = await connect(server);
  const sender = await connect(server);
  const say = (channel: string, content: unknown) =>
    command(sender, "broadcast", { channel, content });
  try {
    await t.step("joining twice delivers once", async () => {
      command(listener, "join", { channel: "twice" });
      command(listener, "join", { channel: "twice" });
      await assertQuiet(listener);
      say("twice", 1);
      assert.equal(await listener.nextText(), "1");
      await assertQuiet(listener);
    });
    await t.step("leave stops delivery", async () => {
      command(listener, "leave", { channel: "twice" });
      await assertQuiet(listener);
      say("twice", 2);
      await assertQuiet(listener);
    });
    await t.step("leaving a channel never joined is a no-op (the original hangs)", async () => {
      command(listener, "leave", { channel: "never" });
      await assertQuiet(listener);
    });
    await t.step("channel names are trimmed", async () => {
      command(listener, "join", { channel: "  spaced\t" });
      await assertQuiet(listener);
      say("spaced", "trimmed");
      assert.equal(await listener.nextText(), '"trimmed"');
    });
    await t.step("names outside the core's alphabet work", async () => {
      command(listener, "join", { channel: "user:42 / ü" });
      await assertQuiet(listener);
      say(" user:42 / ü ", "any name");
      assert.equal(await listener.nextText(), '"any name"');
    });
    await t.step("keys match case-insensitively, as Go's decoder does", async () => {
      listener.send({ COMMAND: "join", Args: { channel: "cased" } });
      await assertQuiet(listener);
      say("cased", "cased");
      assert.equal(await listener.nextText(), '"cased"');
    });
    const ignored: [string, unknown][] = [
      ["an empty channel", { command: "join", args: { channel: "" } }],
      ["a blank channel", { command: "broadcast", args: { channel: "  ", content: "x" } }],
      ["no args", { command: "join" }],
      ["args null", { command: "join", args: null }],
      ["a channel that is not a string", { command: "join", args: { channel: 5 } }],
      ["an unknown command", { command: "shout", args: { channel: "x" } }],
      ["a command in another case", { command: "JOIN", args: { channel: "x" } }],
      ["no command", { args: { channel: "x" } }],
      ["top-level null", "null"],
    ];
    for (const [name, frame] of ignored) {
      await t.step(`${name} is ignored`, async () => {
        listener.send(frame);
        await assertQuiet(listener);
        say("x", "not for the listener");
        await assertQuiet(listener);
      });
    }
  } finally {
    await Promise.all([listener.close(), sender.close()]);
  }
});

Deno.test("wsify: joins over the core's limits are ignored silently", async () => {
  await using server = serve({ maxChannelsPerConnection: 1 });
  const client = await connect(server);
  const sender = await connect(server);
  try {
    command(client, "join", { channel: "one" });
    command(client, "join", { channel: "two" });
    // Its own broadcast coming back proves both joins were handled before sender's frames are.
    command(client, "broadcast", { channel: "one", content: "joined" });
    assert.equal(await client.nextText(), '"joined"');
    command(sender, "broadcast", { channel: "two", content: "two" });
    command(sender, "broadcast", { channel: "one", content: "one" });
    assert.equal(await client.nextText(), '"one"');
  } finally {
    await Promise.all([client.close(), sender.close()]);
  }
});

Deno.test("wsify: an invalid frame closes the connection with 1000 and the server serves on", async (t) => {
  await using server = serve();
  const cases: [string, string][] = [
    ["invalid JSON", "{nope"],
    ["a partial message (the original re-runs the previous command)", '{"command":"join"'],
    ["an empty frame", ""],
    ["an array", '[{"command":"join"}]'],
    ["a string", '"join"'],
    ["a number", "1"],
    ["a command that is not a string", '{"command":1,"args":{"channel":"x"}}'],
    ["args that are not an object", '{"command":"join","args":["x"]}'],
  ];
  for (const [name, frame] of cases) {
    await t.step(name, async () => {
      const client = await connect(server);
      command(client, "join", { channel: "room" });
      client.send(frame);
      assert.equal((await client.closed).code, CloseCode.Normal);
      const fresh = await connect(server);
      await assertQuiet(fresh);
      await fresh.close();
    });
  }
});

Deno.test('wsify: the server sends a text {"type":"ping"} every 30 s', async () => {
  const clock = createManualClock();
  await using server = serve({}, clock);
  const client = await connect(server);
  try {
    await assertQuiet(client); // the session is open: its timer started at 0
    clock.advance(PING_MS - 250);
    await assertQuiet(client);
    clock.advance(250);
    assert.equal(await client.nextText(), '{"type":"ping"}');
    clock.advance(PING_MS);
    assert.equal(await client.nextText(), '{"type":"ping"}');
    await assertQuiet(client);
  } finally {
    await client.close();
  }
});

Deno.test("wsify: POST /broadcast?key= checks key, content type and body", async (t) => {
  await using server = serve();
  const listener = await connect(server);
  command(listener, "join", { channel: "news" });
  await assertQuiet(listener);
  const body = JSON.stringify({ channel: "news", content: { headline: "hi" } });
  const cases: [name: string, query: string, body: string, type: string | null, status: number][] =
    [
      ["no key", "", body, "application/json", 403],
      ["a wrong key", "?key=nope", body, "application/json", 403],
      ["a wrong key of the same length", `?key=${"x".repeat(KEY.length)}`, body, null, 403],
      ["the key is checked before the content type", "?key=nope", body, "text/plain", 403],
      ["a text/plain body", `?key=${KEY}`, body, "text/plain", 415],
      ["no content type", `?key=${KEY}`, body, null, 415],
      ["application/jsonx", `?key=${KEY}`, body, "application/jsonx", 415],
      ["invalid JSON", `?key=${KEY}`, "{nope", "application/json", 400],
      ["an array", `?key=${KEY}`, "[]", "application/json", 400],
      ["a channel that is not a string", `?key=${KEY}`, '{"channel":1}', "application/json", 400],
      ["an empty channel", `?key=${KEY}`, '{"channel":"","content":1}', "application/json", 201],
    ];
  for (const [name, query, text, type, status] of cases) {
    await t.step(`${name}: ${status}`, async () => {
      const response = await post(server, query, text, type);
      await response.body?.cancel();
      assert.equal(response.status, status);
      await assertQuiet(listener);
    });
  }
  for (const type of ["application/json", "application/json; charset=utf-8", "Application/JSON"]) {
    await t.step(`${type}: 201 with an empty body, delivered as the content`, async () => {
      const response = await post(server, `?key=${KEY}`, body, type);
      assert.equal(response.status, 201);
      assert.equal(await response.text(), "");
      assert.equal(await listener.nextText(), '{"headline":"hi"}');
    });
  }
  await listener.close();
});

Deno.test("wsify: POST /broadcast is 403 when no broadcasting key is set", async () => {
  await using server = serve({ broadcastingKey: null });
  const response = await post(server, "?key=", '{"channel":"news","content":1}');
  await response.body?.cancel();
  assert.equal(response.status, 403);
});

Deno.test("wsify: a native client and a wsify client see each other, each in its own format", async () => {
  await using server = serve();
  const channel = wsifyChannel("news");
  const alice = await server.user("alice", channel);
  const client = await connect(server);
  try {
    command(client, "join", { channel: "news" });
    await assertQuiet(client);
    command(client, "broadcast", { channel: "news", content: { score: 3 } });
    assert.equal(await client.nextText(), '{"score":3}');
    const native = await alice.nextOf("message");
    assert.deepEqual(
      { channel: native.channel, from: native.from, text: native.text },
      { channel, from: "", text: '{"score":3}' },
      "nameless sender; non-string content as its JSON",
    );
    command(client, "broadcast", { channel: "news", content: "plain" });
    assert.equal((await alice.nextOf("message")).text, "plain", "string content as it is");
    await client.nextText();

    alice.send({ type: "broadcast", channel, text: "hello wsify" });
    assert.equal(await client.nextText(), '"hello wsify"', "a native text is the content");
    await alice.nextOf("message");

    const response = await post(server, `?key=${KEY}`, '{"channel":"news","content":"via http"}');
    assert.equal(response.status, 201);
    await response.body?.cancel();
    assert.equal(await client.nextText(), '"via http"');
    assert.equal((await alice.nextOf("message")).text, "via http");

    alice.send({ type: "channels" });
    const { channels } = await alice.nextOf("channels");
    assert.deepEqual(channels, [{ name: channel, members: 2 }], "no presence, but counted");
  } finally {
    await client.close();
    await alice.close();
  }
});

// ---------------------------------------------------------------------------
// The authorizer webhook

// deno-lint-ignore no-explicit-any
type Body = Record<string, any>;

/** A local authorizer answering each call with `policy(body)`'s status. */
interface Stub extends AsyncDisposable {
  readonly url: string;
  readonly bodies: Body[];
  policy: (body: Body) => number;
  /** Resolves once `count` calls have arrived. */
  received(count: number): Promise<void>;
}

function startAuthorizer(policy: (body: Body) => number = () => 200): Stub {
  const bodies: Body[] = [];
  const waiters: { count: number; resolve: () => void }[] = [];
  const server = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen() {} }, async (request) => {
    const body = await request.json();
    bodies.push(body);
    for (const waiter of waiters.filter((w) => bodies.length >= w.count)) {
      waiters.splice(waiters.indexOf(waiter), 1);
      waiter.resolve();
    }
    return new Response(null, { status: stub.policy(body) });
  });
  const stub: Stub = {
    url: `http://127.0.0.1:${server.addr.port}/authorize`,
    bodies,
    policy,
    received(count) {
      if (bodies.length >= count) return Promise.resolve();
      const { promise, resolve } = Promise.withResolvers<void>();
      waiters.push({ count, resolve });
      return withTimeout(promise, `${count} authorizer calls`);
    },
    async [Symbol.asyncDispose]() {
      await server.shutdown();
    },
  };
  return stub;
}

/** Sends an upgrade request by hand to read the HTTP answer. */
async function upgradeStatus(server: TestServer): Promise<number> {
  const response = await fetch(`${server.url}/compat/wsify/ws`, {
    headers: {
      upgrade: "websocket",
      connection: "upgrade",
      "sec-websocket-version": "13",
      "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
    },
  });
  await response.body?.cancel();
  return response.status;
}

Deno.test("wsify: the authorizer gets wsify's connect body, then each message in wsify's form", async () => {
  await using stub = startAuthorizer();
  await using server = serve({ authorizerUrl: stub.url });
  const client = await connect(server, "?token=abc&token=def");
  try {
    const connect = stub.bodies[0];
    assert.deepEqual(Object.keys(connect), ["command", "args", "dialect"]);
    assert.equal(connect.command, "connect");
    assert.equal(connect.dialect, "wsify", "which protocol, for an authorizer that serves several");
    assert.deepEqual(Object.keys(connect.args), ["headers", "query", "path"]);
    assert.equal(connect.args.path, "/ws", "the path after /compat/wsify");
    assert.deepEqual(connect.args.query, { token: ["abc", "def"] });
    assert.deepEqual(connect.args.headers["Upgrade"], ["websocket"]);
    assert.deepEqual(connect.args.headers["Sec-Websocket-Version"], ["13"]);
    for (const values of Object.values(connect.args.headers)) {
      assert.ok(Array.isArray(values) && values.every((v) => typeof v === "string"));
    }

    command(client, "join", { channel: "room" });
    command(client, "broadcast", { channel: " room\t", content: { n: 1 } });
    assert.equal(await client.nextText(), '{"n":1}');
    assert.deepEqual(stub.bodies.slice(1), [
      { command: "join", args: { channel: "room" }, dialect: "wsify" },
      // The channel as the message acts on it: " room\t" is the channel room.
      { command: "broadcast", args: { channel: "room", content: { n: 1 } }, dialect: "wsify" },
    ]);
    assert.deepEqual(Object.keys(stub.bodies[1]), ["command", "args", "dialect"]);

    client.send("{nope");
    assert.equal((await client.closed).code, CloseCode.Normal);
    assert.equal(stub.bodies.length, 3, "an invalid frame is not sent to the authorizer");
  } finally {
    await client.close();
  }
});

Deno.test("wsify: a denied message is dropped silently and later ones keep their order", async () => {
  await using stub = startAuthorizer((body) => body.args?.content === "secret" ? 403 : 200);
  await using server = serve({ authorizerUrl: stub.url });
  const client = await connect(server);
  try {
    command(client, "join", { channel: "room" });
    command(client, "broadcast", { channel: "room", content: "secret" });
    command(client, "broadcast", { channel: "room", content: "public" });
    assert.equal(await client.nextText(), '"public"', "no error frame, nothing for the denied one");
    stub.policy = (body) => body.command === "join" ? 401 : 200;
    command(client, "join", { channel: "closed" });
    command(client, "broadcast", { channel: "closed", content: "unheard" });
    command(client, "broadcast", { channel: "room", content: "heard" });
    assert.equal(await client.nextText(), '"heard"', "a denied join joins nothing");
  } finally {
    await client.close();
  }
});

Deno.test("wsify: an authorizer that is down closes the connection so the client reconnects", async (t) => {
  await using stub = startAuthorizer();
  await using server = serve({ authorizerUrl: stub.url });
  for (const status of [500, 503]) {
    await t.step(`${status} on a message closes with 1013`, async () => {
      stub.policy = () => 200;
      const client = await connect(server);
      stub.policy = () => status;
      command(client, "join", { channel: "room" });
      assert.deepEqual(await client.closed, {
        code: CloseCode.TryAgainLater,
        reason: "Authorizer unavailable",
      });
      stub.policy = () => 200;
      const again = await connect(server);
      await assertQuiet(again);
      await again.close();
    });
  }
  await t.step("a denied upgrade is 403", async () => {
    stub.policy = () => 403;
    assert.equal(await upgradeStatus(server), 403);
  });
  await t.step("an upgrade while the authorizer is down is refused (503)", async () => {
    stub.policy = () => 502;
    assert.equal(await upgradeStatus(server), 503);
  });
});

Deno.test("wsify: content over --max-text-length is ignored from a socket and 413 over HTTP", async () => {
  await using server = serve({ maxTextLength: 10 });
  const channel = wsifyChannel("news");
  const alice = await server.user("alice", channel);
  const client = await connect(server);
  try {
    command(client, "join", { channel: "news" });
    await assertQuiet(client);
    command(client, "broadcast", { channel: "news", content: "x".repeat(11) });
    command(client, "broadcast", { channel: "news", content: { n: 123456789 } }); // 15 as JSON
    const tooLong = await post(server, `?key=${KEY}`, '{"channel":"news","content":"01234567890"}');
    assert.equal(tooLong.status, 413);
    await tooLong.body?.cancel();
    command(client, "broadcast", { channel: "news", content: "x".repeat(10) });
    assert.equal((await alice.nextOf("message")).text, "x".repeat(10), "the first to arrive");
    assert.equal(await client.nextText(), JSON.stringify("x".repeat(10)));
    alice.send({ type: "history", channel });
    const { messages } = await alice.nextOf("history");
    assert.deepEqual(messages.map((m: { text: string }) => m.text), ["x".repeat(10)]);
  } finally {
    await client.close();
    await alice.close();
  }
});

Deno.test("wsify: a channel name with spaces around it is asked about as the channel it is", async () => {
  // wsify clients may not use "secret"; native ones may.
  const policy = (body: Body) => body.dialect === "wsify" && body.args?.channel === "secret";
  await using stub = startAuthorizer((body) => policy(body) ? 403 : 200);
  await using server = serve({ authorizerUrl: stub.url });
  const alice = await server.user("alice", "secret", "open");
  const client = await connect(server);
  try {
    for (const channel of [" secret", "secret\t", "secret"]) {
      command(client, "join", { channel });
      command(client, "broadcast", { channel, content: `into ${JSON.stringify(channel)}` });
    }
    command(client, "join", { channel: "open" });
    command(client, "broadcast", { channel: "open", content: "allowed" });
    // Nothing of "secret" got through: the first message anyone gets is the allowed one.
    assert.equal(await client.nextText(), '"allowed"');
    assert.equal((await alice.nextOf("message")).text, "allowed");
  } finally {
    await client.close();
    await alice.close();
  }
});
