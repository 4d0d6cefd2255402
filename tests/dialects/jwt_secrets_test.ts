/**
 * One process, several protocols, two kinds of token: GarinChat's secret
 * (`--garinchat-jwt-secret`, or the original's `JWT_DECODE_SECRET`) applies
 * to GarinChat only; hubbub's `--jwt-*` settings apply to native logins and
 * wschat, and to GarinChat when it has no secret of its own.
 */
import assert from "node:assert/strict";
import * as jose from "jose";
import { createManualClock } from "../../lib/core/clock.ts";
import { parseConfig } from "../../lib/config.ts";
import { DIALECTS } from "../../lib/dialects/index.ts";
import { garinchat } from "../../lib/dialects/garinchat.ts";
import { wschat } from "../../lib/dialects/wschat.ts";
import { startServer, type TestServer, withTimeout } from "../_helpers.ts";
import { type DialectClient, openDialectClient } from "./_client.ts";

const GARINCHAT_SECRET = "garinchat-only-secret-0123456789";
const HUBBUB_SECRET = "hubbub-login-secret-0123456789ab";
const START = Date.UTC(2026, 0, 1);

/** A token signed with `secret` (HS256). */
function token(secret: string, claims: jose.JWTPayload = {}): Promise<string> {
  return new jose.SignJWT(claims).setProtectedHeader({ alg: "HS256" })
    .sign(new TextEncoder().encode(secret));
}

/** A token a native login takes: a `sub` and an `exp`. */
const loginToken = (secret: string, sub: string) =>
  token(secret, { sub, exp: START / 1000 + 3600 });

/**
 * A server configured from `env` as `main.ts` would, with GarinChat and wschat asked for (a
 * server that requires tokens serves only those), on a manual clock. (Their own ports are not
 * opened here: the dialects are reached under `/compat/` on the main port.)
 */
function serve(env: Record<string, string>): TestServer {
  const withDialects = { HUBBUB_DIALECTS: "garinchat=18081,wschat=18082", ...env };
  const parsed = parseConfig(["--port", "0", "--hostname", "127.0.0.1"], withDialects, DIALECTS);
  if (parsed.kind !== "config") throw new Error(`Bad configuration: ${JSON.stringify(parsed)}`);
  return startServer(parsed.config, {
    clock: createManualClock(START),
    dialects: [garinchat, wschat],
  });
}

function open(server: TestServer, path: string): Promise<DialectClient> {
  return openDialectClient(`${server.url.replace("http", "ws")}/compat/${path}`);
}

/**
 * Whether GarinChat lets a client with `body` as its token into a room as
 * `username` (else: the close code).
 */
async function garinchatEntry(
  server: TestServer,
  body: string,
  username = `user${crypto.randomUUID().slice(0, 8)}`,
): Promise<"joined" | number> {
  const client = await open(server, "garinchat/");
  try {
    client.send({ type: "auth", body });
    client.send({ type: "join", username, room: "room" });
    const answer = await client.next().catch(() => null);
    if (answer === null) return (await withTimeout(client.closed, "the close")).code;
    assert.equal(answer.type, "join");
    return "joined";
  } finally {
    await client.close();
  }
}

/** What a native login with `frame` gets: welcome or the error code. */
async function nativeLogin(server: TestServer, frame: Record<string, unknown>): Promise<string> {
  const client = await server.connect();
  try {
    client.send({ type: "login", ...frame });
    const answer = await client.next();
    return answer.type === "welcome" ? "welcome" : answer.code;
  } finally {
    await client.close();
  }
}

Deno.test("jwt secrets: JWT_DECODE_SECRET alone guards GarinChat; wschat and native logins need no token", async (t) => {
  await using server = serve({ JWT_DECODE_SECRET: GARINCHAT_SECRET });
  await t.step("garinchat: its secret's tokens enter, others are refused with 4401", async () => {
    assert.equal(await garinchatEntry(server, await token(GARINCHAT_SECRET)), "joined");
    assert.equal(await garinchatEntry(server, await token(HUBBUB_SECRET)), 4401);
  });
  await t.step("native: a name alone logs in", async () => {
    assert.equal(await nativeLogin(server, { name: "nat" }), "welcome");
  });
  await t.step("wschat: an unchanged client's message goes out", async () => {
    const client = await open(server, "wschat/");
    try {
      client.send({ usr: "old", msg: "no token" });
      assert.deepEqual([(await client.next()).msg], ["no token"]);
    } finally {
      await client.close();
    }
  });
});

Deno.test("jwt secrets: with both set, each protocol checks its own", async (t) => {
  await using server = serve({
    JWT_DECODE_SECRET: GARINCHAT_SECRET,
    HUBBUB_JWT_SECRET: HUBBUB_SECRET,
  });
  await t.step("garinchat takes GarinChat's secret, not hubbub's", async () => {
    // Native logins need tokens, so GarinChat's must name the user as theirs do (with an exp).
    assert.equal(
      await garinchatEntry(server, await loginToken(GARINCHAT_SECRET, "gc1"), "gc1"),
      "joined",
    );
    assert.equal(await garinchatEntry(server, await loginToken(HUBBUB_SECRET, "uu1"), "uu1"), 4401);
  });
  await t.step("native takes hubbub's secret, not GarinChat's", async () => {
    const valid = await loginToken(HUBBUB_SECRET, "nat");
    assert.equal(await nativeLogin(server, { token: valid }), "welcome");
    const other = await loginToken(GARINCHAT_SECRET, "eve");
    assert.equal(await nativeLogin(server, { token: other }), "unauthorized");
  });
  await t.step("wschat takes hubbub's secret, not GarinChat's", async () => {
    const client = await open(server, "wschat/");
    try {
      const forged = await loginToken(GARINCHAT_SECRET, "eve");
      client.send({ usr: "eve", msg: "garinchat-signed", jwt: forged });
      client.send({
        usr: "ann",
        msg: "hubbub-signed",
        jwt: await loginToken(HUBBUB_SECRET, "ann"),
      });
      // Checks settle in arrival order: the second message being first out proves the first dropped.
      assert.equal((await client.next()).msg, "hubbub-signed");
    } finally {
      await client.close();
    }
  });
});

Deno.test("jwt secrets: without a GarinChat secret, GarinChat takes the tokens native logins take", async () => {
  await using server = serve({ HUBBUB_JWT_SECRET: HUBBUB_SECRET });
  // GarinChat usernames have at least 3 bytes, and must be the token's name here.
  assert.equal(
    await garinchatEntry(server, await loginToken(HUBBUB_SECRET, "uu1"), "uu1"),
    "joined",
  );
  // As a native login: without `exp`, or signed with another secret, it is refused.
  assert.equal(
    await garinchatEntry(server, await token(HUBBUB_SECRET, { sub: "uu2" }), "uu2"),
    4401,
  );
  assert.equal(
    await garinchatEntry(server, await loginToken(GARINCHAT_SECRET, "uu3"), "uu3"),
    4401,
  );
});

Deno.test("jwt secrets: JWT_DECODE_SECRET no longer sets --jwt-secret; it is --garinchat-jwt-secret", () => {
  const parsed = parseConfig([], { JWT_DECODE_SECRET: GARINCHAT_SECRET }, DIALECTS);
  assert.ok(parsed.kind === "config");
  assert.equal(parsed.config.garinchatJwtSecret, GARINCHAT_SECRET);
  assert.equal(parsed.config.jwtSecret, null);
  assert.equal(parsed.config.loginTimeout, 30, "native logins still take a typed name");
  const flag = parseConfig(["--garinchat-jwt-secret", GARINCHAT_SECRET], {
    HUBBUB_GARINCHAT_JWT_SECRET: "x".repeat(16),
  }, DIALECTS);
  assert.ok(flag.kind === "config");
  assert.equal(flag.config.garinchatJwtSecret, GARINCHAT_SECRET, "the flag wins");
  const short = parseConfig([], { JWT_DECODE_SECRET: "short" }, DIALECTS);
  assert.deepEqual(short, {
    kind: "error",
    message: "Invalid JWT_DECODE_SECRET: expected at least 16 characters",
  });
});
