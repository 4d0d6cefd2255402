/**
 * Conformance of the login-chat dialect with gonzofish/ws-chat-server as
 * `/work/shared/dialects.md` §5 records it: one global room, `login` /
 * `logout` / `chat` with `{"type","username","value"}` replies, names
 * unique server-wide, the documented deviations, and the original's crash
 * cases answered with an `error` frame.
 */
import assert from "node:assert/strict";
import { createManualClock } from "../../lib/core/clock.ts";
import type { Config } from "../../lib/config.ts";
import { ERRORS, loginChat } from "../../lib/dialects/login_chat.ts";
import { MAX_NAME_LENGTH } from "../../lib/core/names.ts";
import { CloseCode } from "../../lib/core/protocol.ts";
import { startServer, type TestClient, type TestServer, withTimeout } from "../_helpers.ts";
import { type DialectClient, openDialectClient } from "./_client.ts";

const START = Date.UTC(2026, 0, 1);

/** A server speaking login-chat, and its clients, closed on dispose. */
interface Harness extends AsyncDisposable {
  readonly server: TestServer;
  /** Opens a login-chat client at `/compat/login-chat<path>`. */
  connect(path?: string): Promise<DialectClient>;
  /** A client logged in as `username`; its `logged_in` is read. */
  member(username: string): Promise<DialectClient>;
  /** A native client logged in as `name` and in `channels`. */
  native(name: string, ...channels: string[]): Promise<TestClient>;
}

function harness(overrides: Partial<Config> = {}): Harness {
  // The manual clock never refills the rate limit, so the burst must cover a whole test.
  const server = startServer({ rateBurst: 100_000, ...overrides }, {
    clock: createManualClock(START),
    dialects: [loginChat],
  });
  const clients: DialectClient[] = [];
  const connect = async (path = "/") => {
    const url = `${server.url.replace("http", "ws")}/compat/login-chat${path}`;
    const client = await openDialectClient(url);
    clients.push(client);
    return client;
  };
  return {
    server,
    connect,
    async member(username) {
      const client = await connect();
      client.send({ type: "login", username });
      assert.equal(await client.nextText(), frame("logged_in", username));
      return client;
    },
    native: (name, ...channels) => server.user(name, ...channels),
    async [Symbol.asyncDispose]() {
      await Promise.all(clients.map((client) => client.close()));
      await server[Symbol.asyncDispose]();
    },
  };
}

/** A login-chat frame as the server writes it: keys `type, username, value`, value left out when absent. */
function frame(type: string, username: unknown, value?: unknown): string {
  return JSON.stringify(value === undefined ? { type, username } : { type, username, value });
}

/** Sends `sent` and expects `expected` as the sender's next frame. */
async function roundTrip(client: DialectClient, sent: unknown, expected: string): Promise<void> {
  client.send(sent);
  assert.equal(await client.nextText(), expected);
}

Deno.test("login-chat: any path is the WebSocket endpoint, on 4567 by default", async (t) => {
  assert.equal(loginChat.path, null);
  assert.equal(loginChat.defaultPort, 4567);
  await using h = harness();
  for (const path of ["/", "/chat", "/a/b?c=d"]) {
    await t.step(path, async () => {
      const client = await h.connect(path);
      const username = `user${path.length}`;
      await roundTrip(client, { type: "login", username }, frame("logged_in", username));
      await client.close();
    });
  }
});

Deno.test("login-chat: login answers logged_in, or login_failure when the name is taken", async () => {
  await using h = harness();
  const alice = await h.connect();
  await roundTrip(
    alice,
    { type: "login", username: "alice" },
    '{"type":"logged_in","username":"alice"}',
  );
  const other = await h.connect();
  await roundTrip(
    other,
    { type: "login", username: "alice" },
    '{"type":"login_failure","username":"alice"}',
  );
  // hubbub compares names case-insensitively and by look-alike skeleton (Cyrillic а), as every
  // protocol shares the registry.
  await roundTrip(other, { type: "login", username: "ALICE" }, frame("login_failure", "ALICE"));
  await roundTrip(
    other,
    { type: "login", username: "\u0430lice" },
    frame("login_failure", "\u0430lice"),
  );
  await roundTrip(other, { username: "Al_Ice", type: "login" }, frame("logged_in", "Al_Ice"));
});

Deno.test("login-chat: a name that is not a usable string fails", async (t) => {
  await using h = harness();
  const client = await h.connect();
  const cases: [string, unknown, unknown][] = [
    ["empty", "", ""],
    ["missing (a cancelled prompt sends null)", undefined, null],
    ["null", null, null],
    ["a number", 7, 7],
    ["an object", { a: 1 }, { a: 1 }],
    ["too long", "x".repeat(MAX_NAME_LENGTH + 1), "x".repeat(MAX_NAME_LENGTH + 1)],
    ["with a space (the native name rules apply)", "Al Ice", "Al Ice"],
    ["with an invisible mark", "alice\u034F", "alice\u034F"],
  ];
  for (const [name, username, echoed] of cases) {
    await t.step(name, async () => {
      await roundTrip(client, { type: "login", username }, frame("login_failure", echoed));
    });
  }
  await t.step("the longest name works", async () => {
    const longest = "x".repeat(MAX_NAME_LENGTH);
    await roundTrip(client, { type: "login", username: longest }, frame("logged_in", longest));
  });
});

Deno.test("login-chat: a second login fails for the same name and replaces it with a new one", async () => {
  await using h = harness();
  const alice = await h.member("alice");
  await roundTrip(alice, { type: "login", username: "alice" }, frame("login_failure", "alice"));
  const bob = await h.member("bob");
  await roundTrip(alice, { type: "login", username: "bob" }, frame("login_failure", "bob"));
  await roundTrip(
    alice,
    { type: "chat", username: "alice", value: "x" },
    frame("chat", "alice", "x"),
  );
  assert.equal(await bob.nextText(), frame("chat", "alice", "x"), "still alice");

  await roundTrip(alice, { type: "login", username: "ann" }, frame("logged_in", "ann"));
  await roundTrip(alice, { type: "chat", username: "ann", value: "y" }, frame("chat", "ann", "y"));
  assert.equal(await bob.nextText(), frame("chat", "ann", "y"));
  const carol = await h.connect();
  await roundTrip(carol, { type: "login", username: "alice" }, frame("logged_in", "alice"));
});

Deno.test("login-chat: a chat reaches every socket, the sender and those not logged in included", async () => {
  await using h = harness();
  const listener = await h.connect(); // never logs in
  const alice = await h.member("alice");
  const bob = await h.member("bob");
  alice.send({ type: "chat", username: "alice", value: "hello" });
  // The listener's first frame is the chat: nothing is sent on open or on others' logins.
  for (const client of [listener, alice, bob]) {
    assert.equal(await client.nextText(), '{"type":"chat","username":"alice","value":"hello"}');
  }
});

Deno.test("login-chat: a chat carries the connection's own name and any JSON value", async (t) => {
  await using h = harness();
  const alice = await h.member("alice");
  const listener = await h.connect();
  const cases: [string, Record<string, unknown>, string][] = [
    [
      "another username is ignored",
      { type: "chat", username: "mallory", value: "hi" },
      frame("chat", "alice", "hi"),
    ],
    [
      "keys in any order",
      { value: "v", username: "alice", type: "chat" },
      frame("chat", "alice", "v"),
    ],
    ["a number", { type: "chat", username: "alice", value: 12.5 }, frame("chat", "alice", 12.5)],
    [
      "an object",
      { type: "chat", value: { b: [1, true] } },
      frame("chat", "alice", { b: [1, true] }),
    ],
    ["no value", { type: "chat", username: "alice" }, frame("chat", "alice", null)],
    ["extra keys dropped", { type: "chat", value: "e", x: 1 }, frame("chat", "alice", "e")],
  ];
  for (const [name, sent, expected] of cases) {
    await t.step(name, async () => {
      await roundTrip(alice, sent, expected);
      assert.equal(await listener.nextText(), expected);
    });
  }
});

Deno.test("login-chat: a chat before login is answered with an error to the sender only", async () => {
  await using h = harness();
  const alice = await h.member("alice");
  const stranger = await h.connect();
  await roundTrip(
    stranger,
    { type: "chat", username: "alice", value: "as alice" },
    '{"type":"error","username":"alice","value":"Log in before chatting"}',
  );
  alice.send({ type: "chat", username: "alice", value: "real" });
  assert.equal(await alice.nextText(), frame("chat", "alice", "real"), "nothing before it");
  assert.equal(await stranger.nextText(), frame("chat", "alice", "real"));
});

Deno.test("login-chat: logout answers logged_out and frees the connection's own name only", async (t) => {
  await using h = harness();
  const alice = await h.member("alice");
  const bob = await h.member("bob");
  const carol = await h.connect();

  await t.step("someone else's name: answered, nothing freed", async () => {
    await roundTrip(
      alice,
      { type: "logout", username: "bob" },
      '{"type":"logged_out","username":"bob","value":true}',
    );
    await roundTrip(carol, { type: "login", username: "bob" }, frame("login_failure", "bob"));
    await roundTrip(carol, { type: "login", username: "alice" }, frame("login_failure", "alice"));
    await roundTrip(alice, { type: "chat", value: "still in" }, frame("chat", "alice", "still in"));
    assert.equal(await bob.nextText(), frame("chat", "alice", "still in"));
    assert.equal(await carol.nextText(), frame("chat", "alice", "still in"));
  });
  await t.step("its own name: freed; chatting needs a new login", async () => {
    await roundTrip(
      alice,
      { type: "logout", username: "alice" },
      frame("logged_out", "alice", true),
    );
    await roundTrip(
      alice,
      { type: "chat", username: "alice", value: "x" },
      frame("error", "alice", ERRORS.notLoggedIn),
    );
    await roundTrip(carol, { type: "login", username: "alice" }, frame("logged_in", "alice"));
  });
  await t.step("not logged in, or no username: answered all the same", async () => {
    await roundTrip(
      alice,
      { type: "logout", username: "alice" },
      frame("logged_out", "alice", true),
    );
    await roundTrip(alice, { type: "logout" }, frame("logged_out", null, true));
  });
});

Deno.test("login-chat: another type is an error echoing the username", async (t) => {
  await using h = harness();
  const client = await h.member("alice");
  const cases: [string, Record<string, unknown>, unknown][] = [
    ["unknown type", { type: "dance", username: "alice" }, "alice"],
    ["no type", { username: "alice", value: 1 }, "alice"],
    ["type not a string", { type: ["chat"], username: "alice" }, "alice"],
    ["type in another case", { type: "Chat", username: "alice" }, "alice"],
    ["no username", { type: "dance" }, null],
  ];
  for (const [name, sent, username] of cases) {
    await t.step(name, async () => {
      await roundTrip(
        client,
        sent,
        JSON.stringify({ type: "error", username, value: "Unknown message type" }),
      );
    });
  }
});

Deno.test("login-chat: input the original dies on gets an error frame and the server stays up", async (t) => {
  await using h = harness();
  const alice = await h.member("alice");
  const cases: [string, string, string][] = [
    ["invalid JSON", "{type: chat", ERRORS.invalidJson],
    ["an empty frame", "", ERRORS.invalidJson],
    ["top-level null", "null", ERRORS.notAnObject],
    ["a number", "42", ERRORS.notAnObject],
    ["an array", '[{"type":"chat"}]', ERRORS.notAnObject],
    ["a string", '"chat"', ERRORS.notAnObject],
    [
      "a number that overflows",
      '{"type":"chat","username":"alice","value":1e400}',
      ERRORS.numberOutOfRange,
    ],
    [
      "a negative overflow, nested",
      '{"type":"login","username":"x","v":[-1e999]}',
      ERRORS.numberOutOfRange,
    ],
  ];
  for (const [name, text, reason] of cases) {
    await t.step(name, async () => {
      await roundTrip(alice, text, frame("error", null, reason));
    });
  }
  await t.step("the connection and a new one still work", async () => {
    await roundTrip(alice, { type: "chat", value: "alive" }, frame("chat", "alice", "alive"));
    const bob = await h.member("bob");
    await roundTrip(bob, { type: "chat", value: "me too" }, frame("chat", "bob", "me too"));
    assert.equal(await alice.nextText(), frame("chat", "bob", "me too"));
  });
});

Deno.test("login-chat: binary frames are ignored", async () => {
  await using h = harness();
  const alice = await h.member("alice");
  alice.send(new TextEncoder().encode(JSON.stringify({ type: "chat", value: "binary" })));
  await roundTrip(alice, { type: "chat", value: "text" }, frame("chat", "alice", "text"));
});

Deno.test("login-chat: a chat over --max-text-length is an error", async () => {
  await using h = harness({ maxTextLength: 5 });
  const alice = await h.member("alice");
  await roundTrip(alice, { type: "chat", value: "123456" }, frame("error", null, ERRORS.tooLong));
  await roundTrip(alice, { type: "chat", value: "12345" }, frame("chat", "alice", "12345"));
});

Deno.test("login-chat: a name is freed when its socket closes", async () => {
  await using h = harness();
  const alice = await h.member("alice");
  await alice.close();
  await h.server.app.idle();
  await h.member("alice");
});

Deno.test("login-chat: names are unique across protocols", async (t) => {
  await using h = harness();
  await t.step("a native name is taken for login-chat", async () => {
    await h.native("alice");
    const client = await h.connect();
    await roundTrip(client, { type: "login", username: "alice" }, frame("login_failure", "alice"));
  });
  await t.step("a login-chat name is taken for native clients", async () => {
    await h.member("bob");
    const native = await h.server.connect();
    native.send({ type: "login", name: "bob" });
    assert.equal((await native.next()).code, "name_taken");
  });
});

Deno.test("login-chat: native and login-chat clients in the compat channel hear each other", async () => {
  await using h = harness();
  const alice = await h.native("alice", "lobby");
  const elsewhere = await h.native("dave", "elsewhere");
  const bob = await h.member("bob");
  assert.deepEqual(await alice.nextOf("presence"), {
    type: "presence",
    channel: "lobby",
    event: "join",
    name: "bob",
  });

  bob.send({ type: "chat", username: "bob", value: "hey" });
  const message = await alice.next();
  assert.deepEqual(Object.keys(message), ["type", "channel", "from", "text", "id", "ts", "seq"]);
  assert.equal(message.seq, 1, "dialect traffic is stored and numbered like native traffic");
  assert.equal(message.from, "bob");
  assert.equal(message.text, "hey");
  assert.equal(message.ts, new Date(START).toISOString());
  assert.equal(await bob.nextText(), frame("chat", "bob", "hey"));

  bob.send({ type: "chat", value: { n: 1 } });
  const json = await alice.next();
  assert.equal(json.text, '{"n":1}', "a non-string value is JSON text for natives");
  assert.equal(json.seq, 2);
  assert.equal(await bob.nextText(), frame("chat", "bob", { n: 1 }));

  // Presence is not a login-chat frame: carol's join is skipped, her message arrives.
  const carol = await h.native("carol", "lobby");
  elsewhere.send({ type: "broadcast", channel: "elsewhere", text: "not for login-chat" });
  carol.send({ type: "broadcast", channel: "lobby", text: "hi all" });
  assert.equal(await bob.nextText(), '{"type":"chat","username":"carol","value":"hi all"}');

  const fromCarol = await alice.nextOf("message");
  assert.equal(fromCarol.text, "hi all");
  assert.equal(fromCarol.seq, 3, "lobby's third message, whatever protocol sent it");

  bob.send({ type: "logout", username: "bob" });
  assert.equal(await bob.nextText(), frame("logged_out", "bob", true));
  assert.deepEqual(await alice.nextOf("presence"), {
    type: "presence",
    channel: "lobby",
    event: "leave",
    name: "bob",
  });
});

Deno.test("login-chat: native member lists show logged-in names, not anonymous sockets", async () => {
  await using h = harness();
  await h.connect();
  await h.member("bob");
  const alice = await h.native("alice");
  assert.deepEqual((await alice.join("lobby")).members, ["bob", "alice"]);
});

Deno.test("login-chat: the room is the configured compat channel", async () => {
  await using h = harness({ compatChannel: "town" });
  const town = await h.native("alice", "town");
  const bob = await h.member("bob");
  bob.send({ type: "chat", value: "to town" });
  assert.equal((await town.nextOf("message")).text, "to town");
});

Deno.test("login-chat: a full room closes new connections with 1013", async () => {
  await using h = harness({ maxChannelMembers: 1 });
  const first = await h.member("alice");
  const second = await h.connect();
  assert.deepEqual(await second.closed, { code: CloseCode.TryAgainLater, reason: "Room is full" });
  await roundTrip(
    first,
    { type: "chat", value: "still here" },
    frame("chat", "alice", "still here"),
  );
});

Deno.test("login-chat: --idle-timeout closes a silent logged-in client with 4410, not a nameless one", async () => {
  const clock = createManualClock(START);
  await using server = startServer({ idleTimeout: 60, rateBurst: 100_000 }, {
    clock,
    dialects: [loginChat],
  });
  const url = `${server.url.replace("http", "ws")}/compat/login-chat/`;
  const [quiet, chatty, listener] = await Promise.all([1, 2, 3].map(() => openDialectClient(url)));
  try {
    await roundTrip(quiet, { type: "login", username: "quiet" }, frame("logged_in", "quiet"));
    await roundTrip(chatty, { type: "login", username: "chatty" }, frame("logged_in", "chatty"));
    clock.advance(59_000);
    await roundTrip(
      chatty,
      { type: "chat", username: "chatty", value: 1 },
      frame("chat", "chatty", 1),
    );
    clock.advance(1000);
    assert.equal((await withTimeout(quiet.closed, "the idle close")).code, CloseCode.IdleTimeout);
    // chatty was active a second ago, and the listener holds no name: both are still served.
    await roundTrip(
      chatty,
      { type: "chat", username: "chatty", value: 2 },
      frame("chat", "chatty", 2),
    );
    assert.equal(await listener.nextText(), frame("chat", "chatty", 1), "it hears the room");
    assert.equal(await listener.nextText(), frame("chat", "chatty", 2));
    await roundTrip(listener, { type: "login", username: "late" }, frame("logged_in", "late"));
  } finally {
    await Promise.all([quiet, chatty, listener].map((client) => client.close()));
  }
});
