/**
 * Conformance of the wschat dialect with the `wschat` crate as
 * `/work/shared/dialects.md` §1 records it: one global room, `{"usr","msg"}`
 * in, the object with `"tim"` out to every socket, the optional HS256 JWT
 * check, and invalid messages dropped with the connection kept.
 */
import assert from "node:assert/strict";
import * as jose from "jose";
import { createManualClock, type ManualClock } from "../../lib/core/clock.ts";
import type { Config } from "../../lib/config.ts";
import { formatTim, wschat } from "../../lib/dialects/wschat.ts";
import { CloseCode } from "../../lib/core/protocol.ts";
import { startServer, type TestClient, type TestServer } from "../_helpers.ts";
import { type DialectClient, openDialectClient } from "./_client.ts";

const SECRET = "wschat-test-secret-0123456789";
const API_KEY = "wschat-test-api-key-0123456789";
const START = Date.UTC(2026, 0, 1, 12, 34, 56, 789);
const TIM = "2026-01-01T12:34:56.789000000Z";

/** A server speaking wschat on a manual clock, and its clients, closed on dispose. */
interface Harness extends AsyncDisposable {
  readonly server: TestServer;
  readonly clock: ManualClock;
  /** Opens a wschat client at `/compat/wschat<path>`. */
  connect(path?: string): Promise<DialectClient>;
  /** A native client logged in as `name` and in `channels`. */
  native(name: string, ...channels: string[]): Promise<TestClient>;
}

function harness(overrides: Partial<Config> = {}): Harness {
  const clock = createManualClock(START);
  // The manual clock never refills the rate limit, so the burst must cover a whole test.
  const server = startServer({ rateBurst: 100_000, apiKey: API_KEY, ...overrides }, {
    clock,
    dialects: [wschat],
  });
  const clients: DialectClient[] = [];
  return {
    server,
    clock,
    async connect(path = "/") {
      const client = await openDialectClient(
        `${server.url.replace("http", "ws")}/compat/wschat${path}`,
      );
      clients.push(client);
      return client;
    },
    native: (name, ...channels) => server.user(name, ...channels),
    async [Symbol.asyncDispose]() {
      await Promise.all(clients.map((client) => client.close()));
      await server[Symbol.asyncDispose]();
    },
  };
}

/** What every socket gets for `{"usr","msg"}` sent at `tim`. */
const out = (usr: string, msg: string, tim = TIM) => JSON.stringify({ usr, msg, tim });

/** A token signed with the test secret. */
function token(claims: jose.JWTPayload = {}, alg = "HS256", secret = SECRET): Promise<string> {
  return new jose.SignJWT(claims).setProtectedHeader({ alg }).sign(
    new TextEncoder().encode(secret),
  );
}

Deno.test("wschat: any path is the WebSocket endpoint", async (t) => {
  assert.equal(wschat.path, null);
  assert.equal(wschat.defaultPort, 8080);
  await using h = harness();
  for (const path of ["/", "/ws", "/a/b/c?x=1"]) {
    await t.step(path, async () => {
      const client = await h.connect(path);
      client.send({ usr: "ann", msg: path });
      assert.equal(await client.nextText(), out("ann", path));
      await client.close();
    });
  }
});

Deno.test("wschat: a message reaches every socket, the sender included; nothing on open", async () => {
  await using h = harness();
  const listener = await h.connect();
  const other = await h.connect("/elsewhere");
  const sender = await h.connect();
  sender.send({ usr: "ann", msg: "hello" });
  // Each socket's first frame is the message: nothing was sent on open.
  for (const client of [listener, other, sender]) {
    assert.equal(await client.nextText(), out("ann", "hello"));
  }
  other.send({ usr: "bob", msg: "hi ann" });
  for (const client of [listener, other, sender]) {
    assert.equal(await client.nextText(), out("bob", "hi ann"));
  }
});

Deno.test("wschat: tim is UTC RFC 3339 with nine fractional digits, from the server clock", async (t) => {
  await t.step("formatTim", () => {
    assert.equal(formatTim(0), "1970-01-01T00:00:00.000000000Z");
    assert.equal(formatTim(START), TIM);
    assert.match(formatTim(START + 1), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$/);
  });
  await t.step("on the wire, as time passes", async () => {
    await using h = harness();
    const client = await h.connect();
    client.send({ usr: "ann", msg: "one" });
    assert.equal(JSON.parse(await client.nextText()).tim, TIM);
    h.clock.advance(1500);
    client.send({ usr: "ann", msg: "two" });
    assert.equal(JSON.parse(await client.nextText()).tim, "2026-01-01T12:34:58.289000000Z");
  });
});

Deno.test("wschat: the object comes back as sent, tim replaced and last", async (t) => {
  await using h = harness();
  const client = await h.connect();
  const cases: [string, Record<string, unknown>, string][] = [
    ["usr, msg order kept", { msg: "m", usr: "u" }, `{"msg":"m","usr":"u","tim":"${TIM}"}`],
    [
      "extra fields kept in place",
      { usr: "u", color: "red", msg: "m", n: [1, { a: null }] },
      `{"usr":"u","color":"red","msg":"m","n":[1,{"a":null}],"tim":"${TIM}"}`,
    ],
    [
      "a client tim is replaced",
      { tim: "1999-01-01T00:00:00Z", usr: "u", msg: "m" },
      `{"usr":"u","msg":"m","tim":"${TIM}"}`,
    ],
    [
      "jwt is not forwarded when JWT is off",
      { usr: "u", jwt: "x.y.z", msg: "m" },
      `{"usr":"u","msg":"m","tim":"${TIM}"}`,
    ],
    ["an empty msg is a message too", { usr: "u", msg: "" }, `{"usr":"u","msg":"","tim":"${TIM}"}`],
    ["usr as every protocol shows it (NFKC)", { usr: "\uFF55", msg: "m" }, out("u", "m")],
  ];
  for (const [name, frame, expected] of cases) {
    await t.step(name, async () => {
      client.send(frame);
      assert.equal(await client.nextText(), expected);
    });
  }
});

Deno.test("wschat: invalid JSON or a wrong shape is dropped and the connection stays", async (t) => {
  await using h = harness({ maxTextLength: 10 });
  const sender = await h.connect();
  const listener = await h.connect();
  const cases: [string, unknown][] = [
    ["invalid JSON", "{usr: ann"],
    ["empty frame", ""],
    ["null", "null"],
    ["a number", "42"],
    ["a string", '"hello"'],
    ["an array", '[{"usr":"u","msg":"m"}]'],
    ["usr missing", { msg: "m" }],
    ["msg missing", { usr: "u" }],
    ["usr not a string", { usr: 1, msg: "m" }],
    ["msg null", { usr: "u", msg: null }],
    ["msg an object", { usr: "u", msg: { text: "m" } }],
    ["msg over --max-text-length", { usr: "u", msg: "12345678901" }],
    ["usr over --max-text-length", { usr: "12345678901", msg: "m" }],
    // usr becomes a native name, so it keeps to the name rules.
    ["usr empty", { usr: "", msg: "m" }],
    ["usr with a space", { usr: "a b", msg: "m" }],
    ["usr with an invisible mark", { usr: "u\u034F", msg: "m" }],
    ["usr with a bidi override", { usr: "u\u202Ex", msg: "m" }],
    ["a binary frame", new Uint8Array([123, 125])],
  ];
  for (const [name, frame] of cases) {
    await t.step(name, async () => {
      sender.send(frame);
      // Frames are handled in order, so the marker being next proves the bad one went nowhere.
      sender.send({ usr: "u", msg: name.slice(0, 10) });
      assert.equal(await sender.nextText(), out("u", name.slice(0, 10)));
      assert.equal(await listener.nextText(), out("u", name.slice(0, 10)));
    });
  }
  await t.step("a new client still works", async () => {
    const late = await h.connect();
    late.send({ usr: "new", msg: "still up" });
    assert.equal(await late.nextText(), out("new", "still up"));
    assert.equal(await sender.nextText(), out("new", "still up"));
  });
});

Deno.test("wschat: with JWT_SECRET, only messages whose HS256 token proves usr go out", async (t) => {
  // The secret makes native logins need tokens too, so a token proves usr by the same rules.
  await using h = harness({ jwtSecret: SECRET });
  const sender = await h.connect();
  const listener = await h.connect();
  const exp = START / 1000 + 3600;
  const passes: [string, string, () => Promise<string>][] = [
    ["a token whose sub is usr", "ann", () => token({ sub: "ann", exp })],
    ["a token whose name is usr", "ann", () => token({ sub: "id-1", name: "ann", exp })],
    ["usr in another case", "ANN", () => token({ sub: "ann", exp })],
  ];
  for (const [name, usr, jwt] of passes) {
    await t.step(`delivered: ${name}`, async () => {
      sender.send({ usr, jwt: await jwt(), msg: "signed" });
      const expected = out(usr, "signed");
      assert.equal(await sender.nextText(), expected, "the jwt is not forwarded");
      assert.equal(await listener.nextText(), expected);
    });
  }
  const drops: [string, () => Promise<unknown>][] = [
    ["no token", () => Promise.resolve(undefined)],
    ["a token that is not a string", () => Promise.resolve(42)],
    ["an empty token", () => Promise.resolve("")],
    ["garbage", () => Promise.resolve("not.a.jwt")],
    ["another secret", () => token({ sub: "eve", exp }, "HS256", "another-secret-0123456789")],
    ["HS512, not HS256", () => token({ sub: "eve", exp }, "HS512")],
    ["an unsecured token (alg none)", () => Promise.resolve(new jose.UnsecuredJWT({}).encode())],
    ["a tampered payload", async () => {
      const [header, , signature] = (await token({ sub: "ann", exp })).split(".");
      return `${header}.${btoa(`{"sub":"eve","exp":${exp}}`).replaceAll("=", "")}.${signature}`;
    }],
    ["another user's token", () => token({ sub: "ann", exp })],
    ["a token naming nobody", () => token({ exp })],
    ["a token without exp (a native login needs one)", () => token({ sub: "eve" })],
    ["an expired token", () => token({ sub: "eve", exp: 1 })],
    ["a token not valid yet", () => token({ sub: "eve", exp, nbf: START / 1000 + 600 })],
    [
      "a token whose channels leave out the room",
      () => token({ sub: "eve", exp, channels: ["team-*"] }),
    ],
  ];
  for (const [name, jwt] of drops) {
    await t.step(`dropped: ${name}`, async () => {
      sender.send({ usr: "eve", jwt: await jwt(), msg: "forged" });
      // Checks settle in arrival order, so the marker being next proves the other was dropped.
      sender.send({ usr: "ann", jwt: await token({ sub: "ann", exp }), msg: "marker" });
      assert.equal(await sender.nextText(), out("ann", "marker"));
      assert.equal(await listener.nextText(), out("ann", "marker"));
    });
  }
});

Deno.test("wschat: native and wschat clients in the compat channel hear each other", async () => {
  await using h = harness();
  const alice = await h.native("alice", "lobby");
  const elsewhere = await h.native("dave", "elsewhere");
  const client = await h.connect();

  client.send({ usr: "bob", msg: "hey", extra: true });
  const message = await alice.nextOf("message");
  assert.deepEqual(Object.keys(message), ["type", "channel", "from", "text", "id", "ts", "seq"]);
  assert.equal(message.seq, 1, "dialect traffic is stored and numbered like native traffic");
  assert.equal(message.channel, "lobby");
  assert.equal(message.from, "bob");
  assert.equal(message.text, "hey");
  assert.equal(message.ts, new Date(START).toISOString());
  assert.equal(await client.nextText(), `{"usr":"bob","msg":"hey","extra":true,"tim":"${TIM}"}`);

  // A presence join is not a wschat frame: the next frame is carol's message.
  const carol = await h.native("carol", "lobby");
  elsewhere.send({ type: "broadcast", channel: "elsewhere", text: "not for wschat" });
  carol.send({ type: "broadcast", channel: "lobby", text: "hi all" });
  assert.equal(await client.nextText(), out("carol", "hi all"));

  const response = await fetch(`${h.server.url}/api/broadcast`, {
    method: "POST",
    headers: { authorization: `Bearer ${API_KEY}`, "content-type": "application/json" },
    body: JSON.stringify({ channel: "lobby", text: "from the API", from: "ops" }),
  });
  assert.equal(response.status, 202);
  const { id, seq } = await response.json();
  assert.equal(typeof id, "string");
  assert.equal(seq, 3, "after bob's (wschat) and carol's (native) messages");
  assert.equal(await client.nextText(), out("ops", "from the API"));
});

Deno.test("wschat: the room is the configured compat channel", async () => {
  await using h = harness({ compatChannel: "town" });
  const lobby = await h.native("alice", "lobby");
  const town = await h.native("bob", "town");
  const client = await h.connect();
  client.send({ usr: "ann", msg: "to town" });
  assert.equal((await town.nextOf("message")).text, "to town");
  lobby.send({ type: "broadcast", channel: "lobby", text: "lobby only" });
  town.send({ type: "broadcast", channel: "town", text: "town too" });
  assert.equal(await client.nextText(), out("ann", "to town"));
  assert.equal(await client.nextText(), out("bob", "town too"));
});

Deno.test("wschat: a closed connection leaves the room (no ghosts)", async () => {
  await using h = harness();
  const client = await h.connect();
  client.send({ usr: "ann", msg: "hi" });
  await client.nextText();
  const channels = async () => {
    const response = await fetch(`${h.server.url}/api/channels`, {
      headers: { authorization: `Bearer ${API_KEY}` },
    });
    return (await response.json()).channels;
  };
  assert.deepEqual(await channels(), [{ name: "lobby", members: 1 }]);
  await client.close();
  await h.server.app.idle();
  assert.deepEqual(await channels(), []);
});

Deno.test("wschat: a full room closes new connections with 1013", async () => {
  await using h = harness({ maxChannelMembers: 1 });
  const first = await h.connect();
  const second = await h.connect();
  assert.deepEqual(await second.closed, { code: CloseCode.TryAgainLater, reason: "Room is full" });
  first.send({ usr: "ann", msg: "still here" });
  assert.equal(await first.nextText(), out("ann", "still here"));
});
