/**
 * The authorizer webhook (`--authorizer-url`) decides for every protocol:
 * a dialect's login, join and message are asked about as the native
 * command that does the same would be, with the dialect named, and a
 * refusal keeps to the dialect's own way of saying no. (wsify's messages,
 * asked as they are as its original did, are in wsify_test.ts.)
 */
import assert from "node:assert/strict";
import * as jose from "jose";
import type { Config } from "../../lib/config.ts";
import { type Clock, createManualClock } from "../../lib/core/clock.ts";
import {
  channelPath,
  channelPathChannel,
  HEARTBEAT_MS,
  IDENTITY_TTL_MS,
} from "../../lib/dialects/channel_path.ts";
import type { Dialect } from "../../lib/dialects/dialect.ts";
import { garinchat, JOIN_TIMEOUT_MS, roomChannel } from "../../lib/dialects/garinchat.ts";
import { loginChat } from "../../lib/dialects/login_chat.ts";
import { wschat } from "../../lib/dialects/wschat.ts";
import { CloseCode } from "../../lib/core/protocol.ts";
import { startServer, type TestServer, waitFor, withTimeout } from "../_helpers.ts";
import { type DialectClient, openDialectClient } from "./_client.ts";

// deno-lint-ignore no-explicit-any
type Body = Record<string, any>;

/** Refuses anything from or naming mallory, and any text "forbidden"; allows the rest. */
const refuseMallory = (body: Body) =>
  JSON.stringify(body).includes("mallory") || body.args?.text === "forbidden" ? 403 : 200;

/** A local authorizer answering each call with `policy(body)`'s status, keeping the bodies. */
function startAuthorizer(policy: (body: Body) => number | Promise<number> = refuseMallory) {
  const bodies: Body[] = [];
  const waiters: { wanted: (body: Body) => boolean; resolve: () => void }[] = [];
  const server = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen() {} }, async (request) => {
    const body = await request.json();
    bodies.push(body);
    for (const waiter of waiters.filter(({ wanted }) => wanted(body))) {
      waiters.splice(waiters.indexOf(waiter), 1);
      waiter.resolve();
    }
    return new Response(null, { status: await policy(body) });
  });
  return {
    url: `http://127.0.0.1:${server.addr.port}/authorize`,
    bodies,
    /** Resolves once a call whose body is `wanted` has come. */
    calledWith(wanted: (body: Body) => boolean): Promise<void> {
      const { promise, resolve } = Promise.withResolvers<void>();
      if (bodies.some(wanted)) resolve();
      else waiters.push({ wanted, resolve });
      return withTimeout(promise, "an authorizer call");
    },
    /** The bodies of `dialect`'s calls about `command`. */
    asked: (dialect: string, command: string) =>
      bodies.filter((body) => body.dialect === dialect && body.command === command),
    async [Symbol.asyncDispose]() {
      await server.shutdown();
    },
  };
}

function serve(
  authorizerUrl: string,
  dialect: Dialect,
  overrides: Partial<Config> = {},
  clock?: Clock,
): TestServer & { open(path: string): Promise<DialectClient> } {
  const server = startServer({ authorizerUrl, ...overrides }, { dialects: [dialect], clock });
  const base = `${server.url.replace("http", "ws")}/compat/${dialect.name}`;
  return Object.assign(server, {
    open: (path: string) => openDialectClient(`${base}${path}`),
  });
}

Deno.test("dialect authorizer: login-chat's login and chat are asked about; refusals answer as the dialect does", async () => {
  await using stub = startAuthorizer();
  await using server = serve(stub.url, loginChat);
  const alice = await server.user("alice", "lobby");
  const client = await server.open("/");
  try {
    client.send({ type: "login", username: "mallory" });
    assert.deepEqual(await client.next(), { type: "login_failure", username: "mallory" });
    client.send({ type: "login", username: "bob" });
    assert.deepEqual(await client.next(), { type: "logged_in", username: "bob" });
    client.send({ type: "chat", username: "bob", value: "forbidden" });
    assert.deepEqual(await client.next(), { type: "error", username: "bob", value: "Not allowed" });
    client.send({ type: "chat", username: "bob", value: "hi" });
    const message = await alice.nextOf("message");
    assert.deepEqual([message.from, message.text], ["bob", "hi"], "the first message alice gets");
    assert.deepEqual(stub.asked("login-chat", "connect")[0].args.path, "/");
    assert.deepEqual(stub.asked("login-chat", "login"), [
      { command: "login", args: { name: "mallory" }, name: null, dialect: "login-chat" },
      { command: "login", args: { name: "bob" }, name: null, dialect: "login-chat" },
    ]);
    assert.deepEqual(stub.asked("login-chat", "broadcast").at(-1), {
      command: "broadcast",
      args: { channel: "lobby", text: "hi" },
      name: "bob",
      dialect: "login-chat",
    });
    // The allowed login took the name server-wide.
    const native = await server.connect();
    native.send({ type: "login", name: "BOB" });
    assert.equal((await native.next()).code, "name_taken");
  } finally {
    await client.close();
    await alice.close();
  }
});

Deno.test("dialect authorizer: channel-path's identity and message are asked about", async () => {
  await using stub = startAuthorizer();
  await using server = serve(stub.url, channelPath);
  const channel = channelPathChannel("room1");
  const alice = await server.user("alice", channel);
  const client = await server.open("/api/chat/room1");
  try {
    await client.next(); // {"type":"connection",…}
    client.send({ type: "identity", user: "mallory" });
    assert.equal(await client.nextText(), '{"success":false,"type":"identity"}');
    client.send({ type: "identity", user: "bob" });
    assert.equal(await client.nextText(), '{"success":true,"type":"identity"}');
    client.send({ type: "message", text: "forbidden" });
    client.send({ type: "message", text: "hi" });
    const message = await alice.nextOf("message");
    assert.deepEqual([message.from, message.text], ["bob", "hi"], "the first message alice gets");
    assert.equal(JSON.parse(await client.nextText()).text, "hi", "the first the sender gets");
    assert.equal(stub.asked("channel-path", "connect")[0].args.path, "/api/chat/room1");
    assert.deepEqual(stub.asked("channel-path", "login").map((body) => body.args.name), [
      "mallory",
      "bob",
    ]);
    assert.deepEqual(stub.asked("channel-path", "broadcast").at(-1), {
      command: "broadcast",
      args: { channel, text: "hi" },
      name: "bob",
      dialect: "channel-path",
    });
  } finally {
    await client.close();
    await alice.close();
  }
});

Deno.test("dialect authorizer: a wschat message is asked about under its usr; refused, it is dropped", async () => {
  await using stub = startAuthorizer();
  await using server = serve(stub.url, wschat);
  const alice = await server.user("alice", "lobby");
  const client = await server.open("/");
  try {
    client.send({ usr: "mallory", msg: "hi" });
    client.send({ usr: "bob", msg: "hi" });
    const message = await alice.nextOf("message");
    assert.deepEqual([message.from, message.text], ["bob", "hi"], "the first message alice gets");
    assert.deepEqual(stub.asked("wschat", "broadcast").map((body) => body.name), [
      "mallory",
      "bob",
    ]);
  } finally {
    await client.close();
    await alice.close();
  }
});

Deno.test("dialect authorizer: a GarinChat join is asked as a login and a join; refused, it closes with 1008", async () => {
  const token = await garinchatToken();
  await using stub = startAuthorizer();
  // GarinChat takes one frame a second: the test moves this clock on between messages.
  const clock = createManualClock(Date.now());
  await using server = serve(stub.url, garinchat, { garinchatJwtSecret: GARINCHAT_SECRET }, clock);
  const channel = roomChannel("room1");
  const alice = await server.user("alice", channel);
  const mallory = await server.open("/");
  mallory.send({ type: "auth", body: token });
  mallory.send({ type: "join", username: "mallory", room: "room1" });
  assert.equal((await withTimeout(mallory.closed, "the refusal")).code, CloseCode.PolicyViolation);
  const bob = await server.open("/");
  try {
    bob.send({ type: "auth", body: token });
    bob.send({ type: "join", username: "bob", room: "room1" });
    assert.equal(JSON.parse(await bob.nextText()).username, "bob");
    clock.advance(1001);
    bob.send({ type: "message", body: "forbidden" });
    await stub.calledWith((body) => body.args?.text === "forbidden");
    clock.advance(1001);
    bob.send({ type: "message", body: "hi" });
    const message = await alice.nextOf("message");
    assert.deepEqual([message.from, message.text], ["bob", "hi"], "the first message alice gets");
    assert.deepEqual(
      stub.asked("garinchat", "login").map((body) => body.args.name),
      ["mallory", "bob"],
    );
    assert.deepEqual(stub.asked("garinchat", "join").at(-1), {
      command: "join",
      args: { channel },
      name: "bob",
      dialect: "garinchat",
    });
  } finally {
    await bob.close();
    await alice.close();
  }
});

Deno.test("dialect authorizer: down on a dialect's login closes with 1013, as for a native client", async () => {
  await using stub = startAuthorizer((body) => body.command === "login" ? 503 : 200);
  await using server = serve(stub.url, loginChat);
  const client = await server.open("/");
  client.send({ type: "login", username: "bob" });
  assert.equal((await withTimeout(client.closed, "the close")).code, CloseCode.TryAgainLater);
});

/** GarinChat's own secret in these tests, and a token it takes (any name: no token is required). */
const GARINCHAT_SECRET = "0123456789abcdef0123456789abcdef";
const garinchatToken = () =>
  new jose.SignJWT({}).setProtectedHeader({ alg: "HS256" })
    .sign(new TextEncoder().encode(GARINCHAT_SECRET));

/** A policy that allows everything, but holds the answers to `held` questions until `release`. */
function holding(held: (body: Body) => boolean) {
  const gate = Promise.withResolvers<void>();
  return {
    policy: async (body: Body) => {
      if (held(body)) await gate.promise;
      return 200;
    },
    release: () => gate.resolve(),
  };
}

Deno.test("dialect authorizer: a channel-path identity does not expire while its heartbeats wait behind a slow answer", async () => {
  const clock = createManualClock(Date.now());
  const slow = holding((body) => body.command === "broadcast");
  await using stub = startAuthorizer(slow.policy);
  await using server = serve(stub.url, channelPath, {}, clock);
  const channel = channelPathChannel("room1");
  const alice = await server.user("alice", channel);
  const bob = await server.open("/api/chat/room1");
  try {
    await bob.next(); // {"type":"connection",…}
    bob.send({ type: "identity", user: "bob" });
    assert.equal(await bob.nextText(), '{"success":true,"type":"identity"}');
    bob.send({ type: "message", text: "m1" });
    await stub.calledWith((body) => body.args?.text === "m1");
    bob.send({ type: "heartbeat" }); // waits behind m1's question
    clock.advance(IDENTITY_TTL_MS + HEARTBEAT_MS);
    // The next server heartbeat comes from the timer that would have expired the identity.
    assert.equal(await bob.nextText(), '{"authenticated":true,"type":"heartbeat"}');
    slow.release();
    const message = await alice.nextOf("message");
    assert.deepEqual([message.from, message.text], ["bob", "m1"], "sent under the name asked");
  } finally {
    slow.release();
    await bob.close();
    await alice.close();
  }
});

Deno.test("dialect authorizer: a GarinChat join in time is not timed out while the authorizer answers", async () => {
  const token = await garinchatToken();
  const clock = createManualClock(Date.now());
  const slow = holding((body) => body.command === "login");
  await using stub = startAuthorizer(slow.policy);
  await using server = serve(stub.url, garinchat, { garinchatJwtSecret: GARINCHAT_SECRET }, clock);
  const bob = await server.open("/");
  const idle = await server.open("/"); // never authenticates: its timeout shows the timer ran
  try {
    bob.send({ type: "auth", body: token });
    bob.send({ type: "join", username: "bob", room: "room1" });
    await stub.calledWith((body) => body.command === "login");
    clock.advance(JOIN_TIMEOUT_MS + 500);
    assert.equal((await withTimeout(idle.closed, "the idle one's timeout")).code, 4408);
    slow.release();
    assert.equal(JSON.parse(await bob.nextText()).username, "bob", "joined after all");
  } finally {
    slow.release();
    await bob.close();
    await idle.close();
  }
});

Deno.test("dialect authorizer: GarinChat's one frame a second is judged by arrival, not by the wait", async () => {
  const token = await garinchatToken();
  const clock = createManualClock(Date.now());
  const slow = holding((body) => body.args?.text === "first");
  await using stub = startAuthorizer(slow.policy);
  await using server = serve(stub.url, garinchat, { garinchatJwtSecret: GARINCHAT_SECRET }, clock);
  const bob = await server.open("/");
  try {
    bob.send({ type: "auth", body: token });
    bob.send({ type: "join", username: "bob", room: "room1" });
    assert.equal(JSON.parse(await bob.nextText()).username, "bob");
    clock.advance(1001);
    bob.send({ type: "message", body: "first" });
    await stub.calledWith((body) => body.args?.text === "first");
    clock.advance(500);
    bob.send({ type: "message", body: "second" }); // half a second after the first: one too many
    // The server has it (it arrived now, and waits behind the first's question)…
    await waitFor("the second frame to arrive", async () => {
      const metrics = await (await fetch(`${server.url}/metrics`)).text();
      return /^hubbub_frames_in_total 4$/m.test(metrics); // auth, join, first, second
    });
    clock.advance(1000); // …so that read after the wait, it would look a second and a half later
    slow.release();
    const closed = await withTimeout(bob.closed, "the rate limit");
    assert.equal(closed.code, CloseCode.TooManyRequests);
  } finally {
    slow.release();
    await bob.close();
  }
});
