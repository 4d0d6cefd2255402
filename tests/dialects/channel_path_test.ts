/**
 * Conformance of the channel-path dialect with TylerCorkill/ws-chat-server
 * as `/work/shared/dialects.md` §2 records it: channel ids from the path,
 * identities unique per channel, messages to the whole channel, the 1 s
 * heartbeat and the 5 s identity expiry (on a manual clock), and the
 * original's crashes not reproduced.
 */
import assert from "node:assert/strict";
import { createManualClock, type ManualClock } from "../../lib/core/clock.ts";
import type { Config } from "../../lib/config.ts";
import {
  channelIdOf,
  channelPath,
  channelPathChannel,
  HEARTBEAT_MS,
  IDENTITY_TTL_MS,
} from "../../lib/dialects/channel_path.ts";
import { CHANNEL_PATTERN, CloseCode } from "../../lib/core/protocol.ts";
import { startServer, type TestServer } from "../_helpers.ts";
import { type DialectClient, openDialectClient } from "./_client.ts";

/** The manual clock's start: a realistic epoch time, so timestamps are plausible. */
const START = Date.UTC(2024, 0, 2, 3, 4, 5, 678);

const IDENTITY_OK = '{"success":true,"type":"identity"}';
const IDENTITY_FAILED = '{"success":false,"type":"identity"}';
const beat = (authenticated: boolean) => `{"authenticated":${authenticated},"type":"heartbeat"}`;

/**
 * A server speaking channel-path on a manual clock. The burst is raised
 * because that clock refills the rate limit only as far as a test advances it.
 */
function serve(overrides: Partial<Config> = {}): { server: TestServer; clock: ManualClock } {
  const clock = createManualClock(START);
  const config = { rateBurst: 100_000, ...overrides };
  return { server: startServer(config, { clock, dialects: [channelPath] }), clock };
}

/** Opens a client at `path` (with any query) and reads the connection frame. */
async function connect(
  server: TestServer,
  path: string,
): Promise<{ client: DialectClient; connection: string }> {
  const url = `${server.url.replace("http", "ws")}/compat/channel-path${path}`;
  const client = await openDialectClient(url);
  return { client, connection: await client.nextText() };
}

/** Opens a client at `path`, past its connection frame. */
async function join(server: TestServer, path: string): Promise<DialectClient> {
  return (await connect(server, path)).client;
}

/** Identifies and returns the reply's text. */
async function identify(client: DialectClient, user: unknown): Promise<string> {
  client.send({ type: "identity", user });
  return await client.nextText();
}

/**
 * Proves nothing else reached `client` since its last read and that it is
 * still served: an identity as "" always fails and changes nothing, so its
 * answer must be the next frame.
 */
async function assertQuiet(client: DialectClient): Promise<void> {
  assert.equal(await identify(client, ""), IDENTITY_FAILED);
}

Deno.test("channel-path: derives the channel id from the request path as the original does", async (t) => {
  const { server } = serve();
  await using _ = server;
  const cases: [path: string, id: string][] = [
    ["/api/chat/room1", "room1"],
    ["/a/b/c/d", "c/d"],
    ["/fishing", ""],
    ["/", ""],
    ["/x/y/z?q=1", "z?q=1"],
    ["/x/y/z/?q=a/b", "z/?q=a/b"],
    ["/a/b/", ""],
    ["/a/b/c/", "c/"],
  ];
  for (const [path, id] of cases) {
    await t.step(`${path} is channel "${id}"`, async () => {
      const { client, connection } = await connect(server, path);
      try {
        assert.equal(connection, JSON.stringify({ type: "connection", id }));
        assert.deepEqual(Object.keys(JSON.parse(connection)), ["type", "id"]);
      } finally {
        await client.close();
      }
    });
  }
});

Deno.test("channel-path: maps channel ids to valid, distinct core channels", async (t) => {
  const ids = ["room1", "", "c/d", "z?q=1", "a:b", "x".repeat(61), "x".repeat(62), "y".repeat(500)];
  const channels = ids.map(channelPathChannel);
  for (const [i, id] of ids.entries()) {
    await t.step(`"${id.slice(0, 20)}" → ${channels[i]}`, () => {
      assert.match(channels[i], CHANNEL_PATTERN);
      assert.equal(channelPathChannel(id), channels[i], "deterministic");
    });
  }
  assert.equal(new Set(channels).size, ids.length, "distinct ids, distinct channels");
  assert.equal(channelPathChannel("room1"), "cp:room1", "plain ids stay readable");
  assert.equal(channelIdOf("/api/chat/room1", ""), "room1");
});

Deno.test("channel-path: paths with the same id share a channel; other ids do not", async () => {
  const { server, clock } = serve();
  await using _ = server;
  const a = await join(server, "/api/chat/room1");
  const b = await join(server, "/other/prefix/room1");
  const c = await join(server, "/api/chat/room2");
  a.send({ type: "message", text: "hi" });
  const expected = `{"type":"message","text":"hi","timestamp":${clock.now()},"user":""}`;
  assert.equal(await a.nextText(), expected, "the sender gets its own message");
  assert.equal(await b.nextText(), expected);
  await assertQuiet(c);
  await Promise.all([a.close(), b.close(), c.close()]);
});

Deno.test("channel-path: identity replies to the sender only, in the original's key order", async (t) => {
  const { server } = serve();
  await using _ = server;
  const alice = await join(server, "/api/chat/room");
  const other = await join(server, "/api/chat/room");
  const elsewhere = await join(server, "/api/chat/elsewhere");
  try {
    await t.step("a free name succeeds", async () => {
      const reply = await identify(alice, "alice");
      assert.equal(reply, IDENTITY_OK);
      assert.deepEqual(Object.keys(JSON.parse(reply)), ["success", "type"]);
      assert.equal(JSON.parse(reply).success, true, "a boolean, not a string");
      await assertQuiet(other);
    });
    await t.step("a name held in the same channel fails", async () => {
      assert.equal(await identify(other, "alice"), IDENTITY_FAILED);
    });
    await t.step("names are compared exactly among channel-path clients", async () => {
      assert.equal(await identify(other, "Alice"), IDENTITY_OK);
    });
    await t.step("the same name in another channel succeeds", async () => {
      assert.equal(await identify(elsewhere, "alice"), IDENTITY_OK);
    });
    await t.step("taking the name one already holds succeeds", async () => {
      assert.equal(await identify(alice, "alice"), IDENTITY_OK);
    });
    for (const user of ["", 5, null, undefined, { name: "x" }, ["x"], true]) {
      await t.step(`${JSON.stringify(user)} fails`, async () => {
        assert.equal(await identify(alice, user), IDENTITY_FAILED);
      });
    }
    await t.step("a failed attempt keeps the identity held", async () => {
      alice.send({ type: "message", text: "still me" });
      assert.equal(JSON.parse(await alice.nextText()).user, "alice");
      assert.equal(JSON.parse(await other.nextText()).user, "alice");
    });
    await t.step("re-identifying under a new name frees the old one", async () => {
      assert.equal(await identify(alice, "alicia"), IDENTITY_OK);
      assert.equal(await identify(other, "alice"), IDENTITY_OK);
      assert.equal(await identify(alice, "alice"), IDENTITY_FAILED);
    });
  } finally {
    await Promise.all([alice.close(), other.close(), elsewhere.close()]);
  }
});

Deno.test("channel-path: a message reaches the whole channel with every client field, then timestamp and user", async (t) => {
  const { server, clock } = serve();
  await using _ = server;
  const bob = await join(server, "/api/chat/room");
  const carol = await join(server, "/api/chat/room");
  try {
    await t.step("unidentified: user is the empty string", async () => {
      bob.send({ type: "message", text: "first" });
      const text = await bob.nextText();
      assert.equal(text, `{"type":"message","text":"first","timestamp":${START},"user":""}`);
      assert.equal(await carol.nextText(), text);
    });
    assert.equal(await identify(bob, "bob"), IDENTITY_OK);
    clock.advance(250); // below one heartbeat
    await t.step("timestamp is integer milliseconds of the server's clock", async () => {
      bob.send({ type: "message", text: "hello" });
      const frame = JSON.parse(await carol.nextText());
      assert.ok(Number.isInteger(frame.timestamp));
      assert.equal(frame.timestamp, START + 250);
      assert.equal(frame.user, "bob");
      await bob.nextText();
    });
    await t.step(
      "client fields keep their order; client timestamp and user are overwritten in place",
      async () => {
        bob.send({
          user: "mallory",
          type: "message",
          text: "hi",
          timestamp: 1,
          extra: [1, { a: 2 }],
        });
        const text = await carol.nextText();
        assert.equal(
          text,
          `{"user":"bob","type":"message","text":"hi","timestamp":${
            START + 250
          },"extra":[1,{"a":2}]}`,
        );
        assert.equal(await bob.nextText(), text, "the sender gets the same frame");
      },
    );
    await t.step("a message without text is delivered as sent", async () => {
      bob.send({ type: "message", body: { nested: true } });
      assert.equal(
        await carol.nextText(),
        `{"type":"message","body":{"nested":true},"timestamp":${START + 250},"user":"bob"}`,
      );
      await bob.nextText();
    });
  } finally {
    await Promise.all([bob.close(), carol.close()]);
  }
});

Deno.test("channel-path: the server sends a heartbeat every second and an identity expires after 5 s without one", async () => {
  const { server, clock } = serve();
  await using _ = server;
  const dave = await join(server, "/api/chat/room");
  const erin = await join(server, "/api/chat/room");
  try {
    clock.advance(HEARTBEAT_MS - 1);
    await assertQuiet(dave);
    clock.advance(1);
    assert.equal(await dave.nextText(), beat(false), "the first beat, one second after connecting");
    assert.equal(await erin.nextText(), beat(false));

    assert.equal(await identify(dave, "dave"), IDENTITY_OK); // at 1 s
    clock.advance(HEARTBEAT_MS);
    assert.equal(await dave.nextText(), beat(true), "identified: authenticated");
    assert.equal(await erin.nextText(), beat(false), "each connection its own state");

    // No client heartbeats: 5 s after the identity it is gone.
    clock.advance(IDENTITY_TTL_MS - HEARTBEAT_MS);
    assert.deepEqual(
      [await dave.nextText(), await dave.nextText(), await dave.nextText(), await dave.nextText()],
      [beat(true), beat(true), beat(true), beat(false)],
    );
    for (let i = 0; i < 4; i++) await erin.nextText();

    assert.equal(await identify(erin, "dave"), IDENTITY_OK, "the expired name is free again");
    dave.send({ type: "message", text: "who am I" });
    assert.equal(JSON.parse(await dave.nextText()).user, "", "messages carry no identity");
    await erin.nextText();
    clock.advance(HEARTBEAT_MS);
    assert.equal(await dave.nextText(), beat(false), "still connected, still unauthenticated");
    assert.equal(await identify(dave, "dave2"), IDENTITY_OK, "and may identify again");
    clock.advance(HEARTBEAT_MS);
    assert.equal(await dave.nextText(), beat(true));
  } finally {
    await Promise.all([dave.close(), erin.close()]);
  }
});

Deno.test("channel-path: client heartbeats keep an identity alive", async () => {
  const { server, clock } = serve();
  await using _ = server;
  const frank = await join(server, "/api/chat/room");
  try {
    assert.equal(await identify(frank, "frank"), IDENTITY_OK);
    for (let second = 1; second <= 12; second++) {
      frank.send({ type: "heartbeat" });
      await assertQuiet(frank); // the heartbeat has been processed
      clock.advance(HEARTBEAT_MS);
      assert.equal(await frank.nextText(), beat(true), `second ${second}`);
    }
  } finally {
    await frank.close();
  }
});

Deno.test("channel-path: invalid input is ignored and the connection stays usable", async (t) => {
  const { server } = serve();
  await using _ = server;
  const client = await join(server, "/api/chat/room");
  const cases: [string, unknown][] = [
    ["invalid JSON (the original crashes)", "{not json"],
    ["an empty frame", ""],
    ["null", "null"],
    ["a number", "5"],
    ["a string", '"message"'],
    ["an array", '[{"type":"message"}]'],
    ["an object without type", { text: "x" }],
    ["an unknown type", { type: "shout", text: "x" }],
    ["a server-only type", { type: "connection", id: "other" }],
    ["a binary frame that is not JSON", new Uint8Array([1, 2, 3])],
  ];
  try {
    for (const [name, frame] of cases) {
      await t.step(name, async () => {
        client.send(frame);
        await assertQuiet(client);
      });
    }
  } finally {
    await client.close();
  }
  const fresh = await join(server, "/api/chat/room");
  assert.equal(await identify(fresh, "fresh"), IDENTITY_OK, "a new client still works");
  await fresh.close();
});

Deno.test("channel-path: an identity after a disconnect in the channel works (the original crashes)", async () => {
  const { server } = serve();
  await using _ = server;
  const stays = await join(server, "/api/chat/room");
  const leaves = await join(server, "/api/chat/room");
  assert.equal(await identify(leaves, "gina"), IDENTITY_OK);
  await leaves.close();
  assert.equal(await identify(stays, "harry"), IDENTITY_OK);
  const fresh = await join(server, "/api/chat/room");
  assert.equal(await identify(fresh, "gina"), IDENTITY_OK, "the closed connection's name is free");
  fresh.send({ type: "message", text: "still up" });
  assert.equal(JSON.parse(await stays.nextText()).text, "still up");
  assert.equal(JSON.parse(await fresh.nextText()).user, "gina");
  await Promise.all([stays.close(), fresh.close()]);
});

Deno.test("channel-path: a native client and a channel-path client see each other, each in its own format", async () => {
  const { server, clock } = serve();
  await using _ = server;
  const channel = channelPathChannel("room1");
  const alice = await server.user("alice", channel);
  const bob = await join(server, "/api/chat/room1");
  try {
    assert.equal(await identify(bob, "ALICE"), IDENTITY_FAILED, "no posing as a native member");
    assert.equal(await identify(bob, "bob"), IDENTITY_OK);
    assert.deepEqual(await alice.nextOf("presence"), {
      type: "presence",
      channel,
      event: "join",
      name: "bob",
    });

    bob.send({ type: "message", text: "hi alice" });
    const native = await alice.nextOf("message");
    assert.equal(native.channel, channel);
    assert.equal(native.from, "bob");
    assert.equal(native.text, "hi alice");
    assert.equal(native.ts, new Date(clock.now()).toISOString());
    await bob.nextText();

    alice.send({ type: "broadcast", channel, text: "hi bob" });
    const text = await bob.nextText();
    assert.equal(text, `{"type":"message","text":"hi bob","timestamp":${START},"user":"alice"}`);
    await alice.nextOf("message");

    alice.send({ type: "channels" });
    const { channels } = await alice.nextOf("channels");
    assert.deepEqual(channels, [{ name: channel, members: 2 }]);
  } finally {
    await bob.close();
    await alice.close();
  }
});

Deno.test("channel-path: a closed or expired member leaves no ghost behind", async () => {
  const { server, clock } = serve();
  await using _ = server;
  const channel = channelPathChannel("room1");
  const alice = await server.user("alice", channel);
  const bob = await join(server, "/api/chat/room1");
  assert.equal(await identify(bob, "bob"), IDENTITY_OK);
  assert.equal((await alice.nextOf("presence")).event, "join");
  clock.advance(IDENTITY_TTL_MS);
  assert.deepEqual(await alice.nextOf("presence"), {
    type: "presence",
    channel,
    event: "leave",
    name: "bob",
  }, "an expired identity leaves the member list");
  for (let i = 0; i < IDENTITY_TTL_MS / HEARTBEAT_MS; i++) await bob.nextText();
  assert.equal(await identify(bob, "bob"), IDENTITY_OK);
  assert.equal((await alice.nextOf("presence")).event, "join");
  await bob.close();
  assert.equal((await alice.nextOf("presence")).event, "leave");
  clock.advance(IDENTITY_TTL_MS * 2); // the dialect's timers run on
  alice.send({ type: "channels" });
  assert.deepEqual((await alice.nextOf("channels")).channels, [{ name: channel, members: 1 }]);
  await alice.close();
});

Deno.test("channel-path: a full channel closes the new connection with 1013 and the server serves on", async () => {
  const { server } = serve({ maxChannelMembers: 1 });
  await using _ = server;
  const first = await join(server, "/api/chat/room");
  const url = `${server.url.replace("http", "ws")}/compat/channel-path/api/chat/room`;
  const second = await openDialectClient(url);
  assert.deepEqual(await second.closed, { code: CloseCode.TryAgainLater, reason: "Channel full" });
  assert.equal(await identify(first, "first"), IDENTITY_OK);
  const other = await join(server, "/api/chat/other");
  assert.equal(await identify(other, "other"), IDENTITY_OK);
  await Promise.all([first.close(), other.close()]);
});

Deno.test("channel-path: a message over --max-text-length is ignored; the next one arrives", async () => {
  const { server } = serve({ maxTextLength: 10 });
  await using _ = server;
  const channel = channelPathChannel("room1");
  const alice = await server.user("alice", channel);
  const bob = await join(server, "/api/chat/room1");
  try {
    bob.send({ type: "message", text: "x".repeat(11) });
    bob.send({ type: "message", text: { n: 123456789 } }); // its JSON is 15 characters
    bob.send({ type: "message", text: "x".repeat(10) });
    assert.equal((await alice.nextOf("message")).text, "x".repeat(10), "the first to arrive");
    assert.equal(JSON.parse(await bob.nextText()).text, "x".repeat(10));
    alice.send({ type: "history", channel });
    const { messages } = await alice.nextOf("history");
    assert.deepEqual(messages.map((m: { text: string }) => m.text), ["x".repeat(10)]);
  } finally {
    await bob.close();
    await alice.close();
  }
});

Deno.test("channel-path: nobody joins a channel under a look-alike of an identity there; free once it leaves", async () => {
  const { server } = serve();
  await using _ = server;
  const channel = channelPathChannel("r2");
  const alice = await server.user("alice", channel);
  const bob = await join(server, "/x/y/r2");
  assert.equal(await identify(bob, "bob"), IDENTITY_OK);
  await alice.nextOf("presence"); // bob joins
  for (const name of ["b0b", "BOB"]) {
    const native = await server.user(name);
    native.send({ type: "join", channel, ref: 1 });
    const refused = await native.next();
    assert.deepEqual([refused.type, refused.code, refused.ref], ["error", "name_taken", 1], name);
    await native.close();
  }
  await bob.close();
  assert.deepEqual(await alice.nextOf("presence"), {
    type: "presence",
    channel,
    event: "leave",
    name: "bob",
  });
  const late = await server.user("b0b", channel); // (joins, or the helper fails)
  await late.close();
  await alice.close();
});
