/** JWT login over real sockets: names from claims, channel limits, expiry, refresh, failures. */
import assert from "node:assert/strict";
import * as jose from "jose";
import { createManualClock } from "../../lib/core/clock.ts";
import { startServer } from "../_helpers.ts";

const SECRET = "socket-test-secret-0123456789abcdef";
const KEY = new TextEncoder().encode(SECRET);
const START = Date.UTC(2026, 10, 23, 12, 0, 0);

/** A token for `claims`, valid for `ttlSeconds` from `now`. */
function token(claims: jose.JWTPayload, now = START, ttlSeconds = 600): Promise<string> {
  return new jose.SignJWT({ exp: Math.floor(now / 1000) + ttlSeconds, ...claims })
    .setProtectedHeader({ alg: "HS256" })
    .sign(KEY);
}

/** A server requiring tokens signed with SECRET, on a manual clock. */
function jwtServer(extra = {}) {
  const clock = createManualClock(START);
  return {
    clock,
    server: startServer({ jwtSecret: SECRET, jwtClockSkew: 0, loginTimeout: 5, ...extra }, {
      clock,
    }),
  };
}

Deno.test("auth: the name comes from the token's name claim, else sub; a client name is ignored", async () => {
  const { server } = jwtServer();
  await using _ = server;
  const alice = await server.connect();
  alice.send({
    type: "login",
    token: await token({ name: "alice", sub: "u1" }),
    name: "root",
    ref: 1,
  });
  assert.deepEqual(await alice.next(), { type: "welcome", name: "alice", ref: 1 });
  const bob = await server.connect();
  bob.send({ type: "login", token: await token({ sub: "bob" }) });
  assert.equal((await bob.next()).name, "bob");
  const thief = await server.connect();
  thief.send({ type: "login", token: await token({ name: "ALICE" }) });
  assert.equal((await thief.next()).code, "name_taken", "token names are unique like any name");
});

Deno.test("auth: logins without a valid token are refused with the exact code", async (t) => {
  const { server } = jwtServer();
  await using _ = server;
  const cases: [string, () => Promise<unknown>, string][] = [
    ["no token", () => Promise.resolve({ type: "login", name: "alice" }), "unauthorized"],
    [
      "forged token",
      async () => ({ type: "login", token: (await token({ name: "a" })).slice(0, -4) + "AAAA" }),
      "unauthorized",
    ],
    [
      "expired token",
      async () => ({ type: "login", token: await token({ name: "a" }, START - 3600_000) }),
      "token_expired",
    ],
    [
      "a name the rules refuse",
      async () => ({ type: "login", token: await token({ name: "a b" }) }),
      "invalid_name",
    ],
  ];
  for (const [name, frame, code] of cases) {
    await t.step(name, async () => {
      const client = await server.connect();
      client.send(await frame());
      assert.equal((await client.next()).code, code);
      client.send({ type: "ping" });
      assert.equal((await client.next()).type, "pong", "the connection stays open");
      await client.close();
    });
  }
});

Deno.test("auth: five failed logins in a row close with 4401", async () => {
  const { server } = jwtServer();
  await using _ = server;
  const client = await server.connect();
  for (let i = 0; i < 4; i++) {
    client.send({ type: "login", token: "not.a.token" });
    assert.equal((await client.next()).code, "unauthorized");
  }
  client.send({ type: "login", token: "not.a.token" });
  assert.equal((await client.nextOf("error")).code, "unauthorized");
  assert.equal((await client.closed).code, 4401);
});

Deno.test("auth: the channels claim limits join and broadcast", async () => {
  const { server } = jwtServer();
  await using _ = server;
  const client = await server.connect();
  client.send({ type: "login", token: await token({ name: "teamer", channels: ["team-*"] }) });
  await client.nextOf("welcome");
  assert.equal((await client.join("team-red")).channel, "team-red");
  client.send({ type: "join", channel: "lobby", ref: "j" });
  assert.deepEqual(await client.next(), {
    type: "error",
    code: "forbidden",
    message: 'Your token does not allow channel "lobby"',
    ref: "j",
  });
  // A refresh can narrow what the token allows, even for channels already joined.
  client.send({ type: "refresh", token: await token({ name: "teamer", channels: ["team-blue"] }) });
  await client.nextOf("refreshed");
  client.send({ type: "broadcast", channel: "team-red", text: "hi" });
  assert.equal((await client.next()).code, "forbidden");
});

Deno.test("auth: a token that expires while connected closes with 4401; refresh extends it", async () => {
  const { server, clock } = jwtServer();
  await using _ = server;
  const short = await server.connect();
  const renewed = await server.connect();
  short.send({ type: "login", token: await token({ name: "short" }, START, 60) });
  renewed.send({ type: "login", token: await token({ name: "renewed" }, START, 60) });
  await short.nextOf("welcome");
  await renewed.nextOf("welcome");
  clock.advance(30_000);
  renewed.send({
    type: "refresh",
    token: await token({ name: "renewed" }, clock.now(), 600),
    ref: 2,
  });
  assert.deepEqual(await renewed.next(), {
    type: "refreshed",
    expires: new Date(Math.floor(clock.now() / 1000) * 1000 + 600_000).toISOString(),
    ref: 2,
  });
  clock.advance(31_000);
  assert.equal((await short.closed).code, 4401);
  renewed.send({ type: "ping" });
  assert.equal((await renewed.next()).type, "pong", "the refreshed session lives on");
});

Deno.test("auth: refresh needs a login and a token for the same user", async () => {
  const { server } = jwtServer();
  await using _ = server;
  const client = await server.connect();
  client.send({ type: "refresh", token: await token({ name: "alice" }) });
  assert.equal((await client.next()).code, "not_logged_in");
  client.send({ type: "login", token: await token({ name: "alice" }) });
  await client.nextOf("welcome");
  client.send({ type: "refresh", token: await token({ name: "mallory" }) });
  const refused = await client.next();
  assert.equal(refused.code, "unauthorized");
  assert.match(refused.message, /mallory/);
  client.send({ type: "refresh", token: await token({ name: "Alice" }) });
  assert.equal((await client.next()).type, "refreshed", "names compare case-insensitively");
});

Deno.test("auth: refresh on a server without JWT is a bad request", async () => {
  await using server = startServer();
  const client = await server.user("plain");
  client.send({ type: "refresh", token: "x.y.z" });
  assert.equal((await client.next()).code, "bad_request");
});

Deno.test("auth: with JWT, a connection that does not log in within 5 s is closed with 4408", async () => {
  const { server, clock } = jwtServer();
  await using _ = server;
  const client = await server.connect();
  clock.advance(4000);
  client.send({ type: "ping" });
  assert.equal((await client.next()).type, "pong");
  clock.advance(1000);
  assert.equal((await client.closed).code, 4408);
});

Deno.test("auth: commands wait for the token check, so they take effect in order", async () => {
  const { server } = jwtServer();
  await using _ = server;
  const client = await server.connect();
  client.send({ type: "login", token: await token({ name: "quick" }) });
  client.send({ type: "join", channel: "c" });
  client.send({ type: "broadcast", channel: "c", text: "first" });
  assert.deepEqual([
    (await client.next()).type,
    (await client.next()).type,
    (await client.next()).type,
  ], [
    "welcome",
    "joined",
    "message",
  ]);
});
