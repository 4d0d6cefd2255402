/**
 * The native protocol over real sockets: every command row and every error
 * code of PROTOCOL.md.
 */
import assert from "node:assert/strict";
import { createManualClock } from "../lib/core/clock.ts";
import { expectError, startServer } from "./_helpers.ts";

Deno.test("server: greets every socket with hello", async () => {
  await using server = startServer();
  const client = await server.connect();
  assert.deepEqual(client.hello, { type: "hello", protocol: 1, server: "hubbub", version: "test" });
});

Deno.test("server: login answers welcome and echoes ref", async () => {
  await using server = startServer();
  const client = await server.connect();
  client.send({ type: "login", name: "alice", ref: 7 });
  assert.deepEqual(await client.next(), { type: "welcome", name: "alice", ref: 7 });
});

Deno.test("server: login normalizes the name with NFKC", async () => {
  await using server = startServer();
  const client = await server.connect();
  client.send({ type: "login", name: "Ａｌｉｃｅ" });
  assert.deepEqual(await client.next(), { type: "welcome", name: "Alice" });
});

Deno.test("server: join replies with members and tells the others", async () => {
  await using server = startServer();
  const alice = await server.connect();
  const bob = await server.connect();
  await alice.login("alice");
  await bob.login("bob");
  alice.send({ type: "join", channel: "lobby", ref: "a1" });
  const joined = await alice.next();
  // The channel's history: a short epoch, nothing said yet (seq 0), and no messages to show.
  assert.equal(typeof joined.epoch, "string");
  assert.notEqual(joined.epoch, "");
  assert.deepEqual(joined, {
    type: "joined",
    channel: "lobby",
    members: ["alice"],
    epoch: joined.epoch,
    seq: 0,
    messages: [],
    ref: "a1",
  });
  alice.send({ type: "broadcast", channel: "lobby", text: "before bob" });
  assert.equal((await alice.nextOf("message")).seq, 1);
  bob.send({ type: "join", channel: "lobby" });
  // The same channel, the same epoch; the head is alice's message, shown to nobody by default.
  assert.deepEqual(await bob.next(), {
    type: "joined",
    channel: "lobby",
    members: ["alice", "bob"],
    epoch: joined.epoch,
    seq: 1,
    messages: [],
  });
  assert.deepEqual(await alice.next(), {
    type: "presence",
    channel: "lobby",
    event: "join",
    name: "bob",
  });
});

Deno.test("server: joining twice answers again but announces once", async () => {
  await using server = startServer();
  const alice = await server.user("alice", "lobby");
  const bob = await server.user("bob", "lobby");
  await alice.nextOf("presence");
  assert.deepEqual((await bob.join("lobby")).members, ["alice", "bob"]);
  alice.send({ type: "ping" });
  assert.equal((await alice.next()).type, "pong", "alice got no second presence");
});

Deno.test("server: leave replies left and tells the others", async () => {
  await using server = startServer();
  const alice = await server.user("alice", "lobby");
  const bob = await server.user("bob", "lobby");
  await alice.nextOf("presence");
  bob.send({ type: "leave", channel: "lobby", ref: 1 });
  assert.deepEqual(await bob.next(), { type: "left", channel: "lobby", ref: 1 });
  assert.deepEqual(await alice.next(), {
    type: "presence",
    channel: "lobby",
    event: "leave",
    name: "bob",
  });
});

Deno.test("server: broadcast reaches every member, the sender included, and nobody else", async () => {
  const now = Date.UTC(2026, 10, 23, 12, 0, 0, 250);
  await using server = startServer({}, { clock: createManualClock(now) });
  const alice = await server.user("alice", "lobby");
  const bob = await server.user("bob", "lobby");
  const carol = await server.user("carol", "elsewhere");
  alice.send({ type: "broadcast", channel: "lobby", text: "hi <b>all</b>" });
  const seenByAlice = await alice.nextOf("message");
  const seenByBob = await bob.nextOf("message");
  assert.deepEqual(seenByAlice, seenByBob);
  assert.deepEqual(Object.keys(seenByAlice), [
    "type",
    "channel",
    "from",
    "text",
    "id",
    "ts",
    "seq",
  ]);
  assert.equal(seenByAlice.seq, 1, "the channel's first message");
  assert.equal(seenByAlice.from, "alice");
  assert.equal(seenByAlice.text, "hi <b>all</b>");
  assert.equal(seenByAlice.ts, "2026-11-23T12:00:00.250Z");
  assert.equal(typeof seenByAlice.id, "string");
  carol.send({ type: "ping" });
  assert.equal((await carol.next()).type, "pong", "carol, in another channel, got nothing");
});

Deno.test("server: message ids are unique", async () => {
  await using server = startServer();
  const alice = await server.user("alice", "lobby");
  for (let i = 0; i < 20; i++) alice.send({ type: "broadcast", channel: "lobby", text: `m${i}` });
  const ids = new Set<string>();
  for (let i = 0; i < 20; i++) {
    const message = await alice.nextOf("message");
    assert.equal(message.text, `m${i}`, "in order");
    ids.add(message.id);
  }
  assert.equal(ids.size, 20);
});

Deno.test("server: logout leaves every channel and frees the name", async () => {
  await using server = startServer();
  const alice = await server.user("alice", "a", "b");
  const bob = await server.user("bob", "a", "b");
  alice.send({ type: "logout", ref: "x" });
  assert.deepEqual(await alice.nextOf("logged_out"), { type: "logged_out", ref: "x" });
  const leaves = [await bob.nextOf("presence"), await bob.nextOf("presence")];
  assert.deepEqual(leaves.map((p) => [p.channel, p.event, p.name]), [["a", "leave", "alice"], [
    "b",
    "leave",
    "alice",
  ]]);
  const again = await server.connect();
  assert.equal((await again.login("ALICE")).name, "ALICE");
});

Deno.test("server: closing the socket frees the name and tells the channel", async () => {
  await using server = startServer();
  const alice = await server.user("alice", "lobby");
  const bob = await server.user("bob", "lobby");
  await alice.nextOf("presence");
  await bob.close();
  assert.deepEqual(await alice.next(), {
    type: "presence",
    channel: "lobby",
    event: "leave",
    name: "bob",
  });
  const bob2 = await server.connect();
  assert.equal((await bob2.login("bob")).name, "bob");
});

Deno.test("server: ping answers pong", async () => {
  await using server = startServer();
  const client = await server.connect();
  client.send({ type: "ping", ref: "p" });
  assert.deepEqual(await client.next(), { type: "pong", ref: "p" });
});

Deno.test("server: channels lists channels with member counts; empty ones vanish", async () => {
  await using server = startServer();
  const alice = await server.user("alice", "zeta", "alpha");
  const bob = await server.user("bob", "alpha");
  bob.send({ type: "channels" });
  assert.deepEqual(await bob.nextOf("channels"), {
    type: "channels",
    channels: [{ name: "alpha", members: 2 }, { name: "zeta", members: 1 }],
  });
  alice.send({ type: "leave", channel: "zeta" });
  await alice.nextOf("left");
  alice.send({ type: "channels" });
  assert.deepEqual((await alice.nextOf("channels")).channels, [{ name: "alpha", members: 2 }]);
});

Deno.test("server: every error code, answered to the sender with the connection left open", async (t) => {
  await using server = startServer({ maxTextLength: 10 });
  await server.user("taken");
  const cases: { name: string; setup?: unknown[]; send: unknown; code: string; ref?: unknown }[] = [
    { name: "bad_json", send: "{nope", code: "bad_json" },
    { name: "bad_request: not an object", send: "[1,2]", code: "bad_request" },
    { name: "bad_request: missing type", send: { name: "x" }, code: "bad_request" },
    {
      name: "bad_request: missing field",
      send: { type: "join", ref: 3 },
      code: "bad_request",
      ref: 3,
    },
    { name: "bad_request: unknown field", send: { type: "ping", extra: 1 }, code: "bad_request" },
    { name: "bad_request: wrong type", send: { type: "login", name: 5 }, code: "bad_request" },
    { name: "unknown_type", send: { type: "shout", ref: "u" }, code: "unknown_type", ref: "u" },
    { name: "not_logged_in", send: { type: "join", channel: "c" }, code: "not_logged_in" },
    { name: "invalid_name", send: { type: "login", name: "no spaces" }, code: "invalid_name" },
    { name: "name_taken", send: { type: "login", name: "TAKEN" }, code: "name_taken" },
    {
      name: "already_logged_in",
      setup: [{ type: "login", name: "me1" }],
      send: { type: "login", name: "me2" },
      code: "already_logged_in",
    },
    {
      name: "invalid_channel",
      setup: [{ type: "login", name: "me3" }],
      send: { type: "join", channel: "no/slash" },
      code: "invalid_channel",
    },
    {
      name: "not_joined: leave",
      setup: [{ type: "login", name: "me4" }],
      send: { type: "leave", channel: "c" },
      code: "not_joined",
    },
    {
      name: "not_joined: broadcast",
      setup: [{ type: "login", name: "me5" }],
      send: { type: "broadcast", channel: "c", text: "hi" },
      code: "not_joined",
    },
    {
      name: "too_large",
      setup: [{ type: "login", name: "me6" }, { type: "join", channel: "c" }],
      send: { type: "broadcast", channel: "c", text: "x".repeat(11), ref: 9 },
      code: "too_large",
      ref: 9,
    },
  ];
  for (const c of cases) {
    await t.step(c.name, async () => {
      const client = await server.connect();
      const reply = await expectError(client, c.send, c.setup);
      assert.equal(reply.code, c.code);
      assert.equal(reply.ref, c.ref);
      await client.close();
    });
  }
});

Deno.test("server: a binary frame gets bad_request", async () => {
  await using server = startServer();
  const client = await server.connect();
  client.send(new Uint8Array([1, 2, 3]));
  assert.equal((await client.next()).code, "bad_request");
});

Deno.test("server: a frame over --max-message-bytes closes with 1009, others carry on", async () => {
  await using server = startServer({ maxMessageBytes: 1024 });
  const big = await server.connect();
  const other = await server.connect();
  big.send(JSON.stringify({ type: "ping", pad: "é".repeat(600) })); // 1200+ bytes, 600+ code units
  assert.equal((await big.closed).code, 1009);
  other.send({ type: "ping" });
  assert.equal((await other.next()).type, "pong");
});

Deno.test("server: many clients racing for one name, exactly one wins", async () => {
  await using server = startServer();
  const clients = await Promise.all(Array.from({ length: 40 }, () => server.connect()));
  for (const [i, client] of clients.entries()) {
    client.send({ type: "login", name: i % 2 ? "Racer" : "racer" });
  }
  const replies = await Promise.all(clients.map((client) => client.next()));
  assert.equal(replies.filter((r) => r.type === "welcome").length, 1);
  assert.equal(replies.filter((r) => r.code === "name_taken").length, 39);
});
