/**
 * Token edge cases over real sockets: time claims no date can hold, and
 * what a connection may learn before it logs in on a server that requires
 * tokens.
 */
import assert from "node:assert/strict";
import * as jose from "jose";
import { createManualClock } from "../../lib/core/clock.ts";
import { startServer, type TestClient } from "../_helpers.ts";

const SECRET = "edge-test-secret-0123456789abcdef";
const KEY = new TextEncoder().encode(SECRET);
const START = Date.UTC(2026, 10, 23, 12, 0, 0);
const NOW_S = START / 1000;

/** Signs the claims exactly as written, so numbers such as `1e999` reach the server as sent. */
function signJson(json: string): Promise<string> {
  return new jose.CompactSign(new TextEncoder().encode(json))
    .setProtectedHeader({ alg: "HS256" })
    .sign(KEY);
}

/** A server requiring tokens signed with SECRET, on a manual clock. */
function jwtServer() {
  return startServer({ jwtSecret: SECRET, jwtClockSkew: 0 }, {
    clock: createManualClock(START),
  });
}

/** Asserts the connection is still open and served: a ping gets its pong. */
async function assertOpen(client: TestClient): Promise<void> {
  client.send({ type: "ping", ref: "alive" });
  assert.deepEqual(await client.next(), { type: "pong", ref: "alive" });
}

/** Claims whose time no `Date` can hold (beyond ±8.64e15 ms), each with a valid `exp` otherwise. */
const UNDATABLE: [string, string][] = [
  ["exp 1e300", `{"name":"alice","exp":1e300}`],
  ["exp 1e999 (Infinity once parsed)", `{"name":"alice","exp":1e999}`],
  ["exp -1e300", `{"name":"alice","exp":-1e300}`],
  ["exp just past the last date", `{"name":"alice","exp":8640000000001}`],
  ["nbf -1e300", `{"name":"alice","exp":${NOW_S + 600},"nbf":-1e300}`],
  ["iat 1e300", `{"name":"alice","exp":${NOW_S + 600},"iat":1e300}`],
  ["iat -1e999", `{"name":"alice","exp":${NOW_S + 600},"iat":-1e999}`],
];

Deno.test("auth: a login token whose exp, nbf or iat is no date is unauthorized", async (t) => {
  await using server = jwtServer();
  for (const [what, claims] of UNDATABLE) {
    await t.step(what, async () => {
      const client = await server.connect();
      client.send({ type: "login", token: await signJson(claims), ref: 1 });
      const reply = await client.next();
      assert.equal(reply.type, "error", JSON.stringify(reply));
      assert.equal(reply.code, "unauthorized");
      assert.equal(reply.ref, 1);
      await assertOpen(client);
      await client.close();
    });
  }
  await t.step("the last date there is still works", async () => {
    const client = await server.connect();
    client.send({ type: "login", token: await signJson(`{"name":"alice","exp":8640000000000}`) });
    assert.deepEqual(await client.next(), { type: "welcome", name: "alice" });
    await client.close();
  });
});

Deno.test("auth: a refresh token whose exp, nbf or iat is no date is unauthorized; the session lives on", async (t) => {
  await using server = jwtServer();
  const alice = await server.connect();
  alice.send({ type: "login", token: await signJson(`{"name":"alice","exp":${NOW_S + 600}}`) });
  assert.equal((await alice.next()).type, "welcome");
  for (const [what, claims] of UNDATABLE) {
    await t.step(what, async () => {
      alice.send({ type: "refresh", token: await signJson(claims), ref: 2 });
      const reply = await alice.next();
      assert.equal(reply.type, "error", JSON.stringify(reply));
      assert.equal(reply.code, "unauthorized");
      assert.equal(reply.ref, 2);
      await assertOpen(alice);
    });
  }
  await t.step("a sound refresh still works", async () => {
    alice.send({ type: "refresh", token: await signJson(`{"name":"alice","exp":${NOW_S + 900}}`) });
    assert.deepEqual(await alice.next(), {
      type: "refreshed",
      expires: new Date((NOW_S + 900) * 1000).toISOString(),
    });
  });
});

Deno.test("auth: channels needs a login when the server requires tokens", async () => {
  await using server = jwtServer();
  const alice = await server.connect();
  alice.send({ type: "login", token: await signJson(`{"name":"alice","exp":${NOW_S + 600}}`) });
  assert.equal((await alice.next()).type, "welcome");
  await alice.join("board-meeting");
  const stranger = await server.connect();
  stranger.send({ type: "channels", ref: "peek" });
  const refused = await stranger.next();
  assert.equal(refused.type, "error");
  assert.equal(refused.code, "not_logged_in");
  assert.equal(refused.ref, "peek");
  assert.doesNotMatch(JSON.stringify(refused), /board-meeting/);
  await assertOpen(stranger);
  stranger.send({ type: "login", token: await signJson(`{"name":"bob","exp":${NOW_S + 600}}`) });
  assert.equal((await stranger.next()).type, "welcome");
  stranger.send({ type: "channels" });
  assert.deepEqual(await stranger.next(), {
    type: "channels",
    channels: [{ name: "board-meeting", members: 1 }],
  });
});

Deno.test("auth: on an open server channels still works before login", async () => {
  await using server = startServer();
  await server.user("alice", "lobby");
  const stranger = await server.connect();
  stranger.send({ type: "channels" });
  assert.deepEqual(await stranger.next(), {
    type: "channels",
    channels: [{ name: "lobby", members: 1 }],
  });
});
