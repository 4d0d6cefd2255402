/** GarinChat conformance, from docs/dialects.md §4: frames, order, audience, timers, auth, errors. */
import assert from "node:assert/strict";
import * as jose from "jose";
import { createManualClock, type ManualClock } from "../../lib/core/clock.ts";
import { type Config, parseConfig } from "../../lib/config.ts";
import { DIALECTS } from "../../lib/dialects/index.ts";
import type { Dialect } from "../../lib/dialects/dialect.ts";
import {
  AUTH_TIMEOUT_MS,
  garinchat,
  type GarinChatState,
  JOIN_TIMEOUT_MS,
  RATE_WINDOW_MS,
  roomChannel,
} from "../../lib/dialects/garinchat.ts";
import { CHANNEL_PATTERN } from "../../lib/core/protocol.ts";
import { startServer, type TestClient, type TestServer, withTimeout } from "../_helpers.ts";
import { type DialectClient, openDialectClient } from "./_client.ts";

const SECRET = "garinchat-test-secret-0123456789";
const START = Date.UTC(2026, 0, 1);
const NOW_S = START / 1000;

/** A token signed with `secret` (the test secret by default). */
async function token(
  claims: jose.JWTPayload = {},
  alg = "HS256",
  secret: Uint8Array | jose.CryptoKey = new TextEncoder().encode(SECRET),
): Promise<string> {
  return await new jose.SignJWT(claims).setProtectedHeader({ alg }).sign(secret);
}

/** A server with the GarinChat dialect on a manual clock, and its clients. */
interface Harness extends AsyncDisposable {
  readonly server: TestServer;
  readonly clock: ManualClock;
  /** Opens a GarinChat client at `/compat/garinchat<path>`. */
  connect(path?: string, origin?: string): Promise<DialectClient>;
  /** A client authenticated and in `room`; its own join frame is read and returned. */
  member(username: string, room: string): Promise<[DialectClient, string]>;
  /** A native client logged in (by name: the server requires no tokens) and in `channels`. */
  native(name: string, ...channels: string[]): Promise<TestClient>;
  /** Resolves once the server has handled the next GarinChat frame (call before sending). */
  handled(): Promise<void>;
}

function harness(overrides: Partial<Config> = {}): Harness {
  const clock = createManualClock(START);
  const waiters: (() => void)[] = [];
  const notify = () => waiters.shift()?.();
  // The same dialect, telling the test when a frame (and any token check) is done.
  const observed: Dialect<GarinChatState> = {
    ...garinchat,
    receive(ctx, session, state, text) {
      const result = garinchat.receive(ctx, session, state, text);
      Promise.resolve(result).then(notify, notify);
      return result;
    },
  };
  // GarinChat's own secret only: this suite pins the original's protocol, where any token lets a
  // client join under any free name. A server that also requires tokens of native logins binds
  // the username to the token (tests/dialects/impersonation_test.ts).
  const server = startServer({ garinchatJwtSecret: SECRET, ...overrides }, {
    clock,
    dialects: [observed],
  });
  const clients: DialectClient[] = [];
  const connect = async (path = "/", origin?: string) => {
    const url = `${server.url.replace("http", "ws")}/compat/garinchat${path}`;
    const client = await openDialectClient(url, { origin });
    clients.push(client);
    return client;
  };
  return {
    server,
    clock,
    connect,
    async member(username, room) {
      const client = await connect();
      client.send({ type: "auth", body: await token() });
      client.send({ type: "join", username, room });
      const own = await client.nextText();
      assert.equal(JSON.parse(own).username, username);
      return [client, own];
    },
    native: (name, ...channels) => server.user(name, ...channels),
    handled() {
      const { promise, resolve } = Promise.withResolvers<void>();
      waiters.push(resolve);
      return withTimeout(promise, "the server to handle a frame");
    },
    async [Symbol.asyncDispose]() {
      await Promise.all(clients.map((client) => client.close()));
      await server[Symbol.asyncDispose]();
    },
  };
}

const joinText = (username: string, totalUsers: number) =>
  JSON.stringify({ type: "join", username, totalUsers });
const leaveText = (username: string, totalUsers: number) =>
  JSON.stringify({ type: "userleave", username, totalUsers });
const messageText = (body: string, username: string) =>
  JSON.stringify({ type: "message", body, username });

Deno.test("garinchat: any path is the WebSocket endpoint", async (t) => {
  assert.equal(garinchat.path, null);
  assert.equal(garinchat.defaultPort, 8080);
  await using h = harness();
  for (const path of ["/", "/chat", "/a/b/c?room=x"]) {
    await t.step(path, async () => {
      const client = await h.connect(path);
      client.send({ type: "auth", body: await token() });
      client.send({ type: "join", username: `user${path.length}`, room: "paths" });
      assert.equal(JSON.parse(await client.nextText()).type, "join");
      await client.close();
    });
  }
});

Deno.test("garinchat: a join goes to the whole room, joiner included, with totalUsers", async () => {
  await using h = harness();
  const [alice, aliceOwn] = await h.member("alice", "room1");
  assert.equal(aliceOwn, joinText("alice", 1), "keys type, username, totalUsers; no body or room");
  const [, bobOwn] = await h.member("bob", "room1");
  assert.equal(bobOwn, joinText("bob", 2));
  assert.equal(await alice.nextText(), joinText("bob", 2));
  const [, carolOwn] = await h.member("carol", "room2");
  assert.equal(carolOwn, joinText("carol", 1), "another room counts apart");
});

Deno.test("garinchat: a message reaches everyone in the room except the sender", async () => {
  await using h = harness();
  const [alice] = await h.member("alice", "room1");
  const [bob] = await h.member("bob", "room1");
  const [carol] = await h.member("carol", "room1");
  const [dave] = await h.member("dave", "room2");
  const [eve] = await h.member("eve", "room2");
  await alice.nextText(); // bob's join
  await alice.nextText(); // carol's join
  await bob.nextText(); // carol's join
  await dave.nextText(); // eve's join

  alice.send({ type: "message", body: "hi all" });
  assert.equal(await bob.nextText(), messageText("hi all", "alice"));
  assert.equal(await carol.nextText(), messageText("hi all", "alice"));
  eve.send({ type: "message", body: "other room" });
  assert.equal(await dave.nextText(), messageText("other room", "eve"), "room2 got nothing else");
  bob.send({ type: "message", body: "back" });
  assert.equal(await alice.nextText(), messageText("back", "bob"), "alice got no echo of hers");
  assert.equal(await carol.nextText(), messageText("back", "bob"));
});

Deno.test("garinchat: an empty or null body is ignored and the connection stays", async () => {
  await using h = harness();
  const [alice] = await h.member("alice", "room1");
  const [bob] = await h.member("bob", "room1");
  await alice.nextText();
  for (const frame of [{ body: "" }, {}, { body: null }]) {
    const done = h.handled();
    alice.send({ type: "message", ...frame });
    await done;
    h.clock.advance(RATE_WINDOW_MS + 1);
  }
  alice.send({ type: "message", body: "now" });
  assert.equal(await bob.nextText(), messageText("now", "alice"));
});

Deno.test("garinchat: key names match case-insensitively; other keys are ignored", async () => {
  await using h = harness();
  const [bob] = await h.member("bob", "room1");
  const alice = await h.connect();
  alice.send({ TYPE: "auth", Body: await token(), extra: [1] });
  alice.send({ Type: "join", UserName: "alice", ROOM: "room1", totalUsers: 99 });
  assert.equal(await alice.nextText(), joinText("alice", 2));
  assert.equal(await bob.nextText(), joinText("alice", 2));
  alice.send({ tYpE: "message", bOdY: "hello", username: "mallory", room: "elsewhere" });
  assert.equal(await bob.nextText(), messageText("hello", "alice"), "the joined name is used");
});

Deno.test("garinchat: userleave leaves the room; those left hear it with totalUsers", async () => {
  await using h = harness();
  const [alice] = await h.member("alice", "room1");
  const [bob] = await h.member("bob", "room1");
  const [carol] = await h.member("carol", "room1");
  await alice.nextText();
  await alice.nextText();
  await bob.nextText();

  carol.send({ type: "userleave" });
  assert.equal(await alice.nextText(), leaveText("carol", 2));
  assert.equal(await bob.nextText(), leaveText("carol", 2));

  h.clock.advance(RATE_WINDOW_MS + 1);
  const done = h.handled();
  carol.send({ type: "userleave" });
  await done;
  assert.equal(carol.socket.readyState, WebSocket.OPEN, "a second userleave is ignored");

  const [, own] = await h.member("carol", "room1");
  assert.equal(own, joinText("carol", 3), "the name was freed and the old carol is not counted");
  await alice.nextText();

  h.clock.advance(RATE_WINDOW_MS + 1);
  carol.send({ type: "message", body: "still here?" });
  const closed = await carol.closed;
  assert.equal(closed.code, 1008);
  assert.equal(closed.reason, "Not in a room");
});

Deno.test("garinchat: the last one out deletes the room and nobody hears it", async () => {
  await using h = harness();
  const [alice] = await h.member("alice", "solo");
  const native = await h.native("nat");
  native.send({ type: "channels" });
  assert.deepEqual((await native.nextOf("channels")).channels, [{ name: "solo", members: 1 }]);
  const done = h.handled();
  alice.send({ type: "userleave" });
  await done;
  native.send({ type: "channels" });
  assert.deepEqual((await native.nextOf("channels")).channels, []);
  const [, own] = await h.member("bob", "solo");
  assert.equal(own, joinText("bob", 1));
});

Deno.test("garinchat: a closed connection leaves the room at once, whatever its close code (no ghosts)", async (t) => {
  await using h = harness();
  const [alice] = await h.member("alice", "room1");
  const closes: [string, (client: DialectClient) => void][] = [
    ["1000", (client) => client.socket.close(1000)],
    ["4000 (a ghost in the original)", (client) => client.socket.close(4000)],
    ["no code, seen as 1005 (a ghost in the original)", (client) => client.socket.close()],
  ];
  for (const [name, close] of closes) {
    await t.step(name, async () => {
      const [bob] = await h.member("bob", "room1");
      assert.equal(await alice.nextText(), joinText("bob", 2), "the earlier bob is not counted");
      close(bob);
      await bob.closed;
      assert.equal(await alice.nextText(), leaveText("bob", 1));
    });
  }
});

Deno.test("garinchat: auth accepts HS256/384/512 tokens of the secret, exp and nbf checked when present", async (t) => {
  const rsa = await jose.generateKeyPair("RS256");
  const ec = await jose.generateKeyPair("ES256");
  const accepted: [string, () => Promise<string>][] = [
    ["HS256", () => token()],
    ["HS384", () => token({}, "HS384")],
    ["HS512", () => token({ sub: "x" }, "HS512")],
    ["exp in the future", () => token({ exp: NOW_S + 60 })],
    ["nbf in the past", () => token({ nbf: NOW_S - 60 })],
  ];
  const refused: [string, () => Promise<unknown>][] = [
    ["another secret", () => token({}, "HS256", new TextEncoder().encode("x".repeat(32)))],
    ["alg none", () => Promise.resolve(new jose.UnsecuredJWT({}).encode())],
    ["RS256", () => token({}, "RS256", rsa.privateKey)],
    ["ES256", () => token({}, "ES256", ec.privateKey)],
    ["expired", () => token({ exp: NOW_S - 1 })],
    ["nbf in the future", () => token({ nbf: NOW_S + 60 })],
    ["malformed", () => Promise.resolve("not.a.jwt")],
    ["empty", () => Promise.resolve("")],
    ["missing", () => Promise.resolve(undefined)],
  ];
  await using h = harness();
  for (const [i, [name, make]] of accepted.entries()) {
    await t.step(`accepts ${name}`, async () => {
      const client = await h.connect();
      client.send({ type: "auth", body: await make() });
      client.send({ type: "join", username: `alice${i}`, room: `accepted${i}` });
      assert.equal(await client.nextText(), joinText(`alice${i}`, 1));
      await client.close();
    });
  }
  for (const [name, make] of refused) {
    await t.step(`refuses ${name} with 4401`, async () => {
      const client = await h.connect();
      client.send({ type: "auth", body: await make() });
      const closed = await client.closed;
      assert.equal(closed.code, 4401);
      assert.ok(closed.reason.length > 0);
    });
  }
});

Deno.test("garinchat: without a JWT secret every auth is refused with 4401", async () => {
  await using h = harness({ garinchatJwtSecret: null, jwtSecret: null });
  const client = await h.connect();
  client.send({ type: "auth", body: await token() });
  assert.deepEqual(await client.closed, { code: 4401, reason: "No JWT secret is configured" });
});

Deno.test("garinchat: the original's env names JWT_DECODE_SECRET and ALLOWED_ORIGINS are read", () => {
  const result = parseConfig([], {
    JWT_DECODE_SECRET: SECRET,
    ALLOWED_ORIGINS: "https://chat.example.com,https://www.example.com",
  }, DIALECTS);
  assert.equal(result.kind, "config");
  if (result.kind !== "config") return;
  assert.equal(result.config.garinchatJwtSecret, SECRET);
  assert.equal(result.config.jwtSecret, null, "GarinChat's secret is not hubbub's");
  assert.deepEqual(result.config.allowedOrigins, [
    "https://chat.example.com",
    "https://www.example.com",
  ]);
});

Deno.test("garinchat: auth must succeed within 2 s of connecting", async () => {
  await using h = harness();
  const late = await h.connect();
  h.clock.advance(AUTH_TIMEOUT_MS - 250);
  const [timely] = await h.member("alice", "room1");
  h.clock.advance(250);
  assert.deepEqual(await late.closed, { code: 4408, reason: "Auth timeout" });
  h.clock.advance(10 * AUTH_TIMEOUT_MS);
  await h.member("bob", "room1");
  assert.equal(await timely.nextText(), joinText("bob", 2), "a member has no deadline");
});

Deno.test("garinchat: join must follow a successful auth within 2 s", async () => {
  await using h = harness();
  const timely = await h.connect();
  const late = await h.connect();
  for (const client of [timely, late]) {
    const done = h.handled();
    client.send({ type: "auth", body: await token() });
    await done;
  }
  h.clock.advance(JOIN_TIMEOUT_MS - 250);
  timely.send({ type: "join", username: "alice", room: "room1" });
  assert.equal(await timely.nextText(), joinText("alice", 1));
  h.clock.advance(250);
  assert.deepEqual(await late.closed, { code: 4408, reason: "Join timeout" });
});

Deno.test("garinchat: a frame arriving after the deadline is refused before the next tick", async () => {
  await using h = harness();
  // Ticks fall every 250 ms from the start; this deadline falls 100 ms after one.
  h.clock.advance(100);
  const client = await h.connect();
  h.clock.advance(AUTH_TIMEOUT_MS + 50);
  client.send({ type: "auth", body: await token() });
  assert.deepEqual(await client.closed, { code: 4408, reason: "Auth timeout" });
});

Deno.test("garinchat: one frame per 1 s window after join; one more closes and removes the user", async () => {
  await using h = harness();
  const [alice] = await h.member("alice", "room1");
  const [bob] = await h.member("bob", "room1");
  const [carol] = await h.member("carol", "room1");
  for (const text of [joinText("bob", 2), joinText("carol", 3)]) {
    assert.equal(await alice.nextText(), text);
  }
  await bob.nextText();

  // auth and join reset the window, so a message right after joining is fine.
  alice.send({ type: "message", body: "a1" });
  assert.equal(await bob.nextText(), messageText("a1", "alice"));
  assert.equal(await carol.nextText(), messageText("a1", "alice"));

  h.clock.advance(RATE_WINDOW_MS + 1);
  alice.send({ type: "message", body: "a2" });
  assert.equal(await bob.nextText(), messageText("a2", "alice"), "a new window");
  alice.send({ type: "message", body: "a3" });
  assert.deepEqual(await alice.closed, { code: 4429, reason: "Rate limit exceeded" });
  assert.equal(await bob.nextText(), leaveText("alice", 2));
  assert.equal(await carol.nextText(), messageText("a2", "alice"));
  assert.equal(await carol.nextText(), leaveText("alice", 2), "a3 reached nobody");

  bob.send({ type: "message", body: "b1" });
  assert.equal(await carol.nextText(), messageText("b1", "bob"));
  h.clock.advance(RATE_WINDOW_MS);
  bob.send({ type: "userleave" });
  assert.equal((await bob.closed).code, 4429, "exactly 1 s later is still the same window");
  assert.equal(await carol.nextText(), leaveText("bob", 1));
});

Deno.test("garinchat: every violation closes with a code and a reason", async (t) => {
  await using h = harness();
  const valid = await token();
  type Phase = "connected" | "authenticated" | "joined";
  const cases: [string, Phase, unknown, number, string?][] = [
    ["invalid JSON", "connected", "{", 1008, "Invalid JSON"],
    ["an array", "connected", "[]", 1008],
    ["null", "connected", "null", 1008],
    ["a number", "connected", "42", 1008],
    ["a string", "connected", '"auth"', 1008],
    ["a non-string type", "connected", { type: 5 }, 1008],
    ["a non-string body", "connected", { type: "auth", body: 7 }, 1008],
    ["no type", "connected", {}, 1008, 'Missing "type"'],
    ["an unknown type", "connected", { type: "ping" }, 1008, "Unknown type"],
    ["a type in other case", "connected", { type: "AUTH", body: valid }, 1008, "Unknown type"],
    ["join before auth", "connected", { type: "join", username: "abc", room: "abc" }, 1008],
    ["message before auth", "connected", { type: "message", body: "hi" }, 1008],
    ["a binary frame without a type", "connected", new Uint8Array([123, 125]), 1008],
    ["a binary frame that is not UTF-8", "connected", new Uint8Array([0xff]), 1008, "Invalid JSON"],
    [
      "message before join (kills the original)",
      "authenticated",
      { type: "message", body: "hi" },
      1008,
      "Join a room first",
    ],
    ["a second auth", "authenticated", { type: "auth", body: valid }, 1008],
    ["a short username", "authenticated", { type: "join", username: "ab", room: "abc" }, 1008],
    ["a short room", "authenticated", { type: "join", username: "abc", room: "ab" }, 1008],
    ["no username", "authenticated", { type: "join", room: "abc" }, 1008],
    ["a second join", "joined", { type: "join", username: "other", room: "abc" }, 1008],
    ["an unknown type in a room (a ghost in the original)", "joined", { type: "x" }, 1008],
    ["invalid JSON in a room", "joined", "{", 1008],
  ];
  for (const [i, [name, phase, frame, code, reason]] of cases.entries()) {
    await t.step(name, async () => {
      const room = `violations${i}`;
      let watcher: DialectClient | undefined;
      let client: DialectClient;
      if (phase === "joined") {
        [watcher] = await h.member(`watcher${i}`, room);
        [client] = await h.member(`user${i}`, room);
        assert.equal(await watcher.nextText(), joinText(`user${i}`, 2));
      } else {
        client = await h.connect();
        if (phase === "authenticated") {
          const done = h.handled();
          client.send({ type: "auth", body: valid });
          await done;
        }
      }
      client.send(frame);
      const closed = await client.closed;
      assert.equal(closed.code, code);
      if (reason === undefined) assert.ok(closed.reason.length > 0);
      else assert.equal(closed.reason, reason);
      if (watcher !== undefined) {
        assert.equal(await watcher.nextText(), leaveText(`user${i}`, 1), "no ghost");
        await watcher.close();
      }
    });
  }
  await t.step("the server still serves new clients", async () => {
    const [alice] = await h.member("alice", "after");
    const [bob] = await h.member("bob", "after");
    await alice.nextText();
    bob.send({ type: "message", body: "still up" });
    assert.equal(await alice.nextText(), messageText("still up", "bob"));
  });
});

Deno.test("garinchat: a name already held is refused with 4409, across protocols", async (t) => {
  await using h = harness();
  await h.member("alice", "room1");
  await h.native("nat");
  for (const username of ["ALICE", "nat"]) {
    await t.step(username, async () => {
      const client = await h.connect();
      client.send({ type: "auth", body: await token() });
      client.send({ type: "join", username, room: "room2" });
      assert.deepEqual(await client.closed, { code: 4409, reason: "Username is taken" });
    });
  }
});

Deno.test("garinchat: usernames and rooms count UTF-8 bytes", async () => {
  await using h = harness();
  const [, own] = await h.member("é1", "ñ!");
  assert.equal(own, joinText("é1", 1), "2 characters, 3 bytes");
});

Deno.test("garinchat: a message over --max-text-length closes with 1009", async () => {
  await using h = harness({ maxTextLength: 8 });
  const [alice] = await h.member("alice", "room1");
  const [bob] = await h.member("bob", "room1");
  await alice.nextText();
  alice.send({ type: "message", body: "123456789" });
  assert.deepEqual(await alice.closed, { code: 1009, reason: "Message over 8 characters" });
  assert.equal(await bob.nextText(), leaveText("alice", 1));
});

Deno.test("garinchat: a full room closes the joiner with 1013", async () => {
  await using h = harness({ maxChannelMembers: 1 });
  await h.member("alice", "room1");
  const bob = await h.connect();
  bob.send({ type: "auth", body: await token() });
  bob.send({ type: "join", username: "bob", room: "room1" });
  assert.deepEqual(await bob.closed, { code: 1013, reason: "Room is full" });
});

Deno.test("garinchat: rooms map to core channels, valid channel names to themselves", async (t) => {
  await t.step("the mapping", () => {
    assert.equal(roomChannel("general"), "general");
    assert.equal(roomChannel("a.b:c-d_e"), "a.b:c-d_e");
    const mapped = ["my room", "my room!", "x".repeat(65), "日本語"].map(roomChannel);
    for (const channel of mapped) {
      assert.match(channel, /^garinchat:[A-Za-z0-9_-]{43}$/);
      assert.match(channel, CHANNEL_PATTERN);
    }
    assert.equal(new Set(mapped).size, mapped.length);
    assert.equal(roomChannel("my room"), mapped[0], "deterministic");
  });
  await t.step("clients of a mapped room meet, and a native client can join it", async () => {
    await using h = harness();
    const native = await h.native("nat", roomChannel("my room!"));
    const [alice, own] = await h.member("alice", "my room!");
    assert.equal(own, joinText("alice", 2));
    const [bob] = await h.member("bob", "my room!");
    await alice.nextText();
    bob.send({ type: "message", body: "hi" });
    assert.equal(await alice.nextText(), messageText("hi", "bob"));
    const frame = await native.nextOf("message");
    assert.equal(frame.channel, roomChannel("my room!"));
    assert.equal(frame.text, "hi");
  });
});

Deno.test("garinchat: native and GarinChat clients in one channel see each other, each in its format", async () => {
  await using h = harness();
  const nat = await h.native("nat", "general");
  const [alice, own] = await h.member("alice", "general");
  assert.equal(own, joinText("alice", 2), "the native member is counted");
  assert.deepEqual(await nat.next(), {
    type: "presence",
    channel: "general",
    event: "join",
    name: "alice",
  });

  alice.send({ type: "message", body: "hello native" });
  const message = await nat.next();
  assert.deepEqual(Object.keys(message), ["type", "channel", "from", "text", "id", "ts", "seq"]);
  assert.equal(message.seq, 1, "dialect traffic is stored and numbered like native traffic");
  assert.equal(message.from, "alice");
  assert.equal(message.text, "hello native");
  assert.equal(message.ts, new Date(START).toISOString());

  nat.send({ type: "broadcast", channel: "general", text: "hello garin" });
  assert.equal(await alice.nextText(), messageText("hello garin", "nat"));
  const own2 = await nat.next();
  assert.equal(own2.text, "hello garin", "native senders get their own copy");
  assert.equal(own2.seq, 2, "one sequence for both formats");

  const zed = await h.native("zed", "general");
  assert.equal(await alice.nextText(), joinText("zed", 3));
  nat.send({ type: "leave", channel: "general" });
  assert.equal(await alice.nextText(), leaveText("nat", 2));
  assert.equal((await zed.nextOf("presence")).name, "nat");
  await alice.close();
  assert.deepEqual(await zed.nextOf("presence"), {
    type: "presence",
    channel: "general",
    event: "leave",
    name: "alice",
  });
});

Deno.test("garinchat: with allowed origins, another origin gets 403 before the upgrade", async () => {
  const allowed = "https://chat.example.com";
  await using h = harness({ allowedOrigins: [allowed] });
  const upgrade = (origin?: string) =>
    h.server.app.fetch(
      new Request(`${h.server.url}/compat/garinchat/any`, {
        headers: { upgrade: "websocket", ...(origin === undefined ? {} : { origin }) },
      }),
      { ip: "127.0.0.1" },
    );
  const refused = await upgrade("https://evil.example.com");
  assert.ok(refused instanceof Response);
  assert.equal(refused.status, 403);
  await refused.body?.cancel();
  const accepted = await upgrade(allowed);
  assert.ok(!(accepted instanceof Response));
  assert.equal(accepted.dialect, "garinchat");
  h.server.app.abandon(accepted);
  // The core lets a request without Origin through (no page can forge it); the original refuses it.
  const bare = await upgrade();
  assert.ok(!(bare instanceof Response));
  h.server.app.abandon(bare);

  const client = await h.connect("/", allowed);
  client.send({ type: "auth", body: await token() });
  client.send({ type: "join", username: "alice", room: "room1" });
  assert.equal(await client.nextText(), joinText("alice", 1));
  await assert.rejects(h.connect("/", "https://evil.example.com"));
});

Deno.test("garinchat: a username follows the native name rules, look-alikes included", async (t) => {
  await using h = harness();
  const nat = await h.native("alice");
  const refused: [string, string, number][] = [
    ["an invisible mark", "bob\u034F", 1008],
    ["a right-to-left override", "\u202Ebob", 1008],
    ["NUL", "bob\u0000", 1008],
    ["HTML", "<b>bob</b>", 1008],
    ["60,000 characters", "b".repeat(60_000), 1008],
    ["Hangul fillers only", "\u3164\u3164\u3164", 1008],
    ["a look-alike of a native name (Cyrillic а)", "\u0430lice", 4409],
    ["the native name in capitals", "ALICE", 4409],
  ];
  for (const [i, [what, username, code]] of refused.entries()) {
    await t.step(what, async () => {
      const client = await h.connect();
      const done = h.handled();
      client.send({ type: "auth", body: await token() });
      await done;
      client.send({ type: "join", username, room: `names${i}` });
      assert.equal((await client.closed).code, code);
    });
  }
  await t.step("a name in another script that only looks different is fine", async () => {
    const [client, own] = await h.member("\u0410\u043B\u0438\u0441\u0430", "names-ok");
    assert.equal(own, joinText("\u0410\u043B\u0438\u0441\u0430", 1));
    await client.close();
  });
  await nat.close();
});
