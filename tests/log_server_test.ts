/**
 * What a running server logs: the refusals an operator must see, once per
 * kind per window with a count of the rest, and never a token, a key or a
 * message's text. Real sockets, a manual clock, a captured logger.
 */
import assert from "node:assert/strict";
import * as jose from "jose";
import { createManualClock } from "../lib/core/clock.ts";
import { wsify } from "../lib/dialects/wsify.ts";
import { createLogger, type Level } from "../lib/log.ts";
import { startServer } from "./_helpers.ts";

const START = Date.UTC(2026, 2, 4, 5, 6, 7);
const JWT_SECRET = "log-test-jwt-secret-9f8e7d6c5b4a";
const API_KEY = "log-test-api-key-0a1b2c3d4e5f";

/** A logger at debug level whose JSON lines the test reads. */
function capturedLog(now: () => number) {
  const lines: { level: Level; line: string }[] = [];
  const log = createLogger({
    format: "json",
    level: "debug",
    now,
    write: (level, line) => lines.push({ level, line }),
  });
  return {
    log,
    text: () => lines.map(({ line }) => line).join("\n"),
    entries: () =>
      lines.map(({ line }) => JSON.parse(line) as Record<string, string | number | undefined>),
  };
}

function sign(claims: jose.JWTPayload, ttlSeconds: number): Promise<string> {
  return new jose.SignJWT({ exp: Math.floor(START / 1000) + ttlSeconds, ...claims })
    .setProtectedHeader({ alg: "HS256" })
    .sign(new TextEncoder().encode(JWT_SECRET));
}

Deno.test("logs: no token, key or message text is ever logged, even at debug", async () => {
  const clock = createManualClock(START);
  const captured = capturedLog(clock.now);
  await using server = startServer(
    { jwtSecret: JWT_SECRET, jwtClockSkew: 0, apiKey: API_KEY, loginTimeout: 5 },
    { clock, log: captured.log },
  );
  const secrets: string[] = [JWT_SECRET, API_KEY];

  // Logins with tokens: one that works, and forged ones until the connection is closed (4401).
  const aliceToken = await sign({ name: "alice" }, 60);
  const bobToken = await sign({ name: "bob" }, 600);
  secrets.push(aliceToken, bobToken, aliceToken.split(".")[2], bobToken.split(".")[2]);
  const alice = await server.connect();
  alice.send({ type: "login", token: aliceToken });
  await alice.nextOf("welcome");
  const bob = await server.connect();
  bob.send({ type: "login", token: bobToken });
  await bob.nextOf("welcome");
  await alice.join("lobby");
  await bob.join("lobby");

  const forger = await server.connect();
  for (let i = 0; i < 5; i++) {
    const forged = (await sign({ name: `mallory${i}` }, 600)).slice(0, -6) + `AAAA${i}x`;
    secrets.push(forged, forged.split(".")[2]);
    forger.send({ type: "login", token: forged });
  }
  assert.equal((await forger.closed).code, 4401);

  // Messages, with text that must stay out of the log.
  for (let i = 0; i < 3; i++) {
    const text = `private message text ${i} 7c1d`;
    secrets.push(text);
    alice.send({ type: "broadcast", channel: "lobby", text });
    assert.equal((await bob.nextOf("message")).text, text);
  }

  // The API: wrong keys (refused, logged without the key), then the right one with a text.
  for (const wrong of ["wrong-api-key-1-aaaaaaaa", `${API_KEY}x`, "Basic dXNlcjpwYXNz"]) {
    secrets.push(wrong);
    const response = await fetch(`${server.url}/api/broadcast`, {
      method: "POST",
      headers: { authorization: wrong.startsWith("Basic") ? wrong : `Bearer ${wrong}` },
      body: JSON.stringify({ channel: "lobby", text: "never sent" }),
    });
    assert.equal(response.status, 401);
    await response.body?.cancel();
  }
  const apiText = "api message text 3b9f";
  secrets.push(apiText);
  const posted = await fetch(`${server.url}/api/broadcast`, {
    method: "POST",
    headers: { authorization: `Bearer ${API_KEY}` },
    body: JSON.stringify({ channel: "lobby", text: apiText }),
  });
  assert.equal(posted.status, 202);
  await posted.body?.cancel();
  assert.equal((await bob.nextOf("message")).text, apiText);

  // Alice's token runs out: closed with 4401, and logged.
  clock.advance(61_000);
  assert.equal((await alice.closed).code, 4401);

  const text = captured.text();
  for (const secret of secrets) assert.ok(!text.includes(secret), `logged: ${secret}`);
  assert.ok(!text.includes("never sent"));

  // What an operator needs is there, with the fields that identify it.
  const entries = captured.entries();
  const closes = entries.filter((entry) => entry.msg === "closed a connection");
  assert.deepEqual(
    closes.map(({ code, reason, name, level }) => ({ code, reason, name, level })),
    [
      { code: 4401, reason: "Too many failed logins", name: undefined, level: "warn" },
      { code: 4401, reason: "Token expired", name: "alice", level: "warn" },
    ],
  );
  assert.ok(closes.every((entry) => entry.ip === "127.0.0.1" && typeof entry.conn === "number"));
  const refusedKeys = entries.filter((entry) =>
    entry.msg === "API request refused: wrong or missing key"
  );
  // Three wrong keys in one window: one line at once, the other two once the window was over.
  assert.deepEqual(refusedKeys.map((entry) => [entry.ip, entry.suppressed]), [
    ["127.0.0.1", undefined],
    ["127.0.0.1", 1],
  ]);
  assert.ok(entries.some((entry) => entry.msg === "connection opened" && entry.level === "debug"));
});

Deno.test("logs: refused upgrades and floods are logged once per reason per window, with a count", async () => {
  const clock = createManualClock(START);
  const captured = capturedLog(clock.now);
  await using server = startServer(
    { maxConnectionsPerIp: 2, rateLimit: 1, rateBurst: 1 },
    { clock, log: captured.log },
  );
  const [first] = [await server.connect(), await server.connect()];
  for (let i = 0; i < 5; i++) {
    await assert.rejects(server.connect(), /failed/);
  }
  const refused = () => captured.entries().filter((entry) => entry.msg === "upgrade refused");
  assert.deepEqual(
    refused().map(({ level, status, reason, ip, suppressed }) => ({
      level,
      status,
      reason,
      ip,
      suppressed,
    })),
    [{ level: "warn", status: 429, reason: "ip_full", ip: "127.0.0.1", suppressed: undefined }],
  );

  // A flood: the clock does not move, so the bucket never refills; after the burst of one, ten
  // strikes close it (4429). No more: a client that sends after the close may see 1006 instead.
  for (let i = 0; i < 11; i++) first.send({ type: "ping" });
  assert.equal((await first.closed).code, 4429);
  const floods = () => captured.entries().filter((entry) => entry.code === 4429);
  assert.equal(floods().length, 1);
  assert.equal(floods()[0].reason, "Rate limit");

  // The app's once-a-second sweep writes what was held back once the window is over.
  clock.advance(9_000);
  assert.equal(refused().length, 1);
  clock.advance(1_000);
  assert.deepEqual(refused().map((entry) => entry.suppressed), [undefined, 3]);
});

Deno.test("logs: an authorizer that is down is logged with why, and so is the upgrade it refused", async () => {
  const closed = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = closed.addr as Deno.NetAddr;
  closed.close();
  const clock = createManualClock(START);
  const captured = capturedLog(clock.now);
  await using server = startServer(
    { authorizerUrl: `http://user:hunter2@127.0.0.1:${port}/auth?token=abc123` },
    { clock, log: captured.log },
  );
  await assert.rejects(server.connect(), /failed/);
  const entries = captured.entries();
  const down = entries.filter((entry) => entry.msg === "authorizer down; refusing what needs it");
  assert.deepEqual(down.map(({ level, reason }) => ({ level, reason })), [
    { level: "warn", reason: "unreachable" },
  ]);
  assert.ok(
    entries.some((entry) =>
      entry.msg === "upgrade refused" && entry.status === 503 &&
      entry.reason === "authorizer_down"
    ),
  );
  assert.ok(!captured.text().includes("hunter2") && !captured.text().includes("abc123"));
});

Deno.test("logs: a wrong key on wsify's POST /broadcast is logged without the key", async () => {
  const clock = createManualClock(START);
  const captured = capturedLog(clock.now);
  await using server = startServer({ broadcastingKey: "the-right-broadcasting-key" }, {
    clock,
    dialects: [wsify],
    log: captured.log,
  });
  for (const key of ["wrong-broadcasting-key-1", "the-right-broadcasting-key"]) {
    const response = await fetch(`${server.url}/compat/wsify/broadcast?key=${key}`, {
      method: "POST",
      body: JSON.stringify({ channel: "lobby", content: "broadcast text 51ce" }),
    });
    await response.body?.cancel();
  }
  const refused = captured.entries().filter((entry) =>
    entry.msg === "request refused: wrong or missing key"
  );
  assert.deepEqual(refused.map(({ dialect, status, path }) => ({ dialect, status, path })), [
    { dialect: "wsify", status: 403, path: "/broadcast" },
  ]);
  for (const secret of ["wrong-broadcasting-key-1", "the-right-broadcasting-key", "51ce"]) {
    assert.ok(!captured.text().includes(secret), secret);
  }
});
