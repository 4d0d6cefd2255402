/**
 * GarinChat: a user back from the browser's back/forward cache (the old
 * page still holding its socket) is not locked out. When the same verified
 * identity joins under a name its earlier connection holds, the newer one
 * takes the name and the older one is closed with 4409 "Logged in
 * elsewhere"; a name no token proves stays first come, first served. In a
 * cluster, only a holder on the same node is replaced.
 */
import assert from "node:assert/strict";
import * as jose from "jose";
import { createManualClock, type ManualClock } from "../../lib/core/clock.ts";
import type { Config } from "../../lib/config.ts";
import { garinchat, RATE_WINDOW_MS } from "../../lib/dialects/garinchat.ts";
import { createMemoryCluster, type Engine } from "../../lib/cluster/engine.ts";
import { createRedisEngine } from "../../lib/cluster/engine_redis.ts";
import { CloseCode } from "../../lib/core/protocol.ts";
import { startServer, type TestServer, withTimeout } from "../_helpers.ts";
import { startRedis } from "../e2e/_redis.ts";
import { type DialectClient, openDialectClient } from "./_client.ts";

const SECRET = "garinchat-takeover-secret-01234";
const START = Date.UTC(2026, 0, 1);

/** A token for `claims`, signed with the GarinChat secret, with an `exp`. */
function token(claims: jose.JWTPayload): Promise<string> {
  return new jose.SignJWT({ exp: START / 1000 + 3600, ...claims })
    .setProtectedHeader({ alg: "HS256" })
    .sign(new TextEncoder().encode(SECRET));
}

/**
 * A server with GarinChat on `clock` (a manual one: no deadline fires unless
 * a test advances it); `engine` makes it a cluster node.
 */
function serve(clock = createManualClock(START), engine?: Engine, nodeId?: string): TestServer {
  // Tokens for GarinChat only: native users log in by name, and a GarinChat username need not be
  // the token's (where it must, tests/dialects/impersonation_test.ts covers the takeover).
  const config: Partial<Config> = { garinchatJwtSecret: SECRET };
  return startServer(config, {
    clock,
    dialects: [garinchat],
    engine,
    nodeId,
  });
}

/** A GarinChat client that has sent `auth` with `claims` and `join` for `username` in `room`. */
async function joining(
  server: TestServer,
  claims: jose.JWTPayload,
  username: string,
  room = "room",
): Promise<DialectClient> {
  const client = await openDialectClient(`${server.url.replace("http", "ws")}/compat/garinchat/`);
  client.send({ type: "auth", body: await token(claims) });
  client.send({ type: "join", username, room });
  return client;
}

const joinText = (username: string, totalUsers: number) =>
  JSON.stringify({ type: "join", username, totalUsers });
const leaveText = (username: string, totalUsers: number) =>
  JSON.stringify({ type: "userleave", username, totalUsers });

/** Reads what `listener` hears of a visit by `username` from another node: a join, then a leave. */
async function assertVisit(listener: DialectClient, username: string): Promise<void> {
  for (const type of ["join", "userleave"]) {
    const frame = JSON.parse(await listener.nextText());
    assert.deepEqual([frame.type, frame.username], [type, username]);
  }
}

/** Proves `client` still holds its place: its message reaches `listener` under `username`. */
async function assertChats(
  client: DialectClient,
  listener: DialectClient,
  username: string,
  body: string,
): Promise<void> {
  client.send({ type: "message", body });
  assert.equal(await listener.nextText(), JSON.stringify({ type: "message", body, username }));
}

Deno.test("garinchat takeover: the same identity joining again takes the name; the old socket gets 4409", async () => {
  const clock: ManualClock = createManualClock(START);
  await using server = serve(clock);
  const watcher = await joining(server, { sub: "w" }, "watcher");
  assert.equal(await watcher.nextText(), joinText("watcher", 1));
  const native = await server.connect();
  native.send({ type: "login", name: "nat" });
  await native.nextOf("welcome");
  await native.join("room");
  assert.equal(await watcher.nextText(), joinText("nat", 2));
  const old = await joining(server, { sub: "u1" }, "alice");
  const clients = [watcher, old];
  try {
    assert.equal(await old.nextText(), joinText("alice", 3));
    assert.equal(await watcher.nextText(), joinText("alice", 3));
    assert.equal((await native.nextOf("presence")).event, "join");

    const back = await joining(server, { sub: "u1" }, "ALICE");
    clients.push(back);
    assert.deepEqual(await withTimeout(old.closed, "the close"), {
      code: CloseCode.Conflict,
      reason: "Logged in elsewhere",
    });
    // The room hears the old connection leave, then the new one join: no ghost, no double.
    assert.equal(await watcher.nextText(), leaveText("alice", 2));
    assert.equal(await watcher.nextText(), joinText("ALICE", 3));
    assert.equal(await back.nextText(), joinText("ALICE", 3));
    assert.deepEqual(await native.nextOf("presence"), {
      type: "presence",
      channel: "room",
      event: "leave",
      name: "alice",
    });
    assert.deepEqual(await native.nextOf("presence"), {
      type: "presence",
      channel: "room",
      event: "join",
      name: "ALICE",
    });
    await assertChats(back, watcher, "ALICE", "I am back");

    // Someone else still cannot take it.
    const other = await joining(server, { sub: "u2" }, "alice");
    clients.push(other);
    assert.deepEqual(await withTimeout(other.closed, "the close"), {
      code: CloseCode.Conflict,
      reason: "Username is taken",
    });
    clock.advance(RATE_WINDOW_MS + 1); // GarinChat allows one message a second
    await assertChats(back, watcher, "ALICE", "still mine");
  } finally {
    await Promise.all(clients.map((client) => client.close()));
  }
});

Deno.test("garinchat takeover: names no token proves, or another's, stay first come, first served", async (t) => {
  await using server = serve();
  const watcher = await joining(server, { sub: "w" }, "watcher");
  assert.equal(await watcher.nextText(), joinText("watcher", 1));
  const native = await server.connect();
  native.send({ type: "login", name: "carol" });
  await native.nextOf("welcome");
  const cases: [name: string, holder: jose.JWTPayload, newcomer: jose.JWTPayload][] = [
    ["tokens that name nobody", {}, {}],
    ["another identity", { sub: "u1" }, { sub: "u2" }],
    ["the same name claim with another sub", { sub: "u1", name: "Bob" }, {
      sub: "u2",
      name: "Bob",
    }],
    ["a sub equal to another token's name", { name: "u1" }, { sub: "u1" }],
  ];
  try {
    for (const [index, [name, holder, newcomer]] of cases.entries()) {
      await t.step(name, async () => {
        const username = `user${index}`;
        const first = await joining(server, holder, username);
        try {
          assert.equal(JSON.parse(await first.nextText()).username, username);
          assert.equal(await watcher.nextText(), joinText(username, 2));
          const second = await joining(server, newcomer, username);
          assert.deepEqual(await withTimeout(second.closed, "the close"), {
            code: CloseCode.Conflict,
            reason: "Username is taken",
          });
          await assertChats(first, watcher, username, "first wins");
        } finally {
          await first.close();
          assert.equal(await watcher.nextText(), leaveText(username, 1));
        }
      });
    }
    await t.step("a native user's name, even for a token with the same sub", async () => {
      const garinchatCarol = await joining(server, { sub: "carol" }, "carol");
      assert.deepEqual(await withTimeout(garinchatCarol.closed, "the close"), {
        code: CloseCode.Conflict,
        reason: "Username is taken",
      });
      native.send({ type: "ping" });
      assert.equal((await native.next()).type, "pong", "the native user stays");
    });
  } finally {
    await watcher.close();
  }
});

Deno.test("garinchat takeover: in a cluster, the holder on the same node is replaced; one on another node keeps the name", async () => {
  const cluster = createMemoryCluster();
  await using a = serve(createManualClock(START), cluster.engine(), "node-a");
  await using b = serve(createManualClock(START), cluster.engine(), "node-b");
  const watcher = await joining(a, { sub: "w" }, "watcher");
  assert.equal(await watcher.nextText(), joinText("watcher", 1));
  const old = await joining(a, { sub: "u1" }, "alice");
  const clients = [watcher, old];
  try {
    assert.equal(await old.nextText(), joinText("alice", 2));
    assert.equal(await watcher.nextText(), joinText("alice", 2));

    // On another node, the same identity does not displace it: first come, first served.
    const elsewhere = await joining(b, { sub: "u1" }, "alice");
    clients.push(elsewhere);
    assert.deepEqual(await withTimeout(elsewhere.closed, "the close"), {
      code: CloseCode.Conflict,
      reason: "Your name is held on another node now",
    });
    await assertVisit(watcher, "alice"); // it joined on its node before the cluster said no
    await assertChats(old, watcher, "alice", "still here");

    // On the same node it does, and the cluster-wide claim moves with it.
    const back = await joining(a, { sub: "u1" }, "alice");
    clients.push(back);
    assert.deepEqual(await withTimeout(old.closed, "the close"), {
      code: CloseCode.Conflict,
      reason: "Logged in elsewhere",
    });
    assert.equal(await watcher.nextText(), leaveText("alice", 1));
    assert.equal(await watcher.nextText(), joinText("alice", 2));
    assert.equal(await back.nextText(), joinText("alice", 2));
    const other = await joining(b, { sub: "u2" }, "alice");
    clients.push(other);
    assert.deepEqual(await withTimeout(other.closed, "the close"), {
      code: CloseCode.Conflict,
      reason: "Your name is held on another node now",
    });
    await assertVisit(watcher, "alice");
    await assertChats(back, watcher, "alice", "mine, cluster-wide");
  } finally {
    await Promise.all(clients.map((client) => client.close()));
  }
});

/** `engine`, and a promise that resolves once it has connected. */
function watchUp(engine: Engine): { engine: Engine; up: Promise<void> } {
  const { promise, resolve } = Promise.withResolvers<void>();
  return {
    engine: {
      ...engine,
      start: (listener) =>
        engine.start({
          ...listener,
          up() {
            listener.up();
            resolve();
          },
        }),
    },
    up: promise,
  };
}

/** The next message `listener` hears, past any presence frames. */
async function nextMessage(listener: DialectClient): Promise<string> {
  for (;;) {
    const text = await listener.nextText();
    if (JSON.parse(text).type === "message") return text;
  }
}

Deno.test("garinchat takeover: with Redis, the claim moves to the new connection (released before it is claimed again)", async () => {
  await using redis = await startRedis();
  const a = watchUp(createRedisEngine({ url: redis.url, prefix: "takeover" }));
  const b = watchUp(createRedisEngine({ url: redis.url, prefix: "takeover" }));
  await using nodeA = serve(createManualClock(START), a.engine, "node-a");
  await using nodeB = serve(createManualClock(START), b.engine, "node-b");
  await Promise.all([a.up, b.up]);
  const watcher = await joining(nodeA, { sub: "w" }, "watcher");
  assert.equal(await watcher.nextText(), joinText("watcher", 1));
  const old = await joining(nodeA, { sub: "u1" }, "alice");
  const clients = [watcher, old];
  try {
    assert.equal(await old.nextText(), joinText("alice", 2));
    const back = await joining(nodeA, { sub: "u1" }, "alice");
    clients.push(back);
    assert.deepEqual(await withTimeout(old.closed, "the close"), {
      code: CloseCode.Conflict,
      reason: "Logged in elsewhere",
    });
    assert.equal(await back.nextText(), joinText("alice", 2));
    // Had the new claim reached Redis before the old one's release, the new connection would
    // have lost the name and the release would have freed it for anyone.
    const other = await joining(nodeB, { sub: "u2" }, "alice");
    clients.push(other);
    assert.deepEqual(await withTimeout(other.closed, "the close"), {
      code: CloseCode.Conflict,
      reason: "Your name is held on another node now",
    });
    back.send({ type: "message", body: "still mine" });
    assert.equal(
      await nextMessage(watcher),
      JSON.stringify({ type: "message", body: "still mine", username: "alice" }),
    );
  } finally {
    await Promise.all(clients.map((client) => client.close()));
  }
});
