/**
 * Issue 13 item 4: on a server that requires tokens, a name others see is
 * proven by a token or kept visibly apart. GarinChat binds the username to
 * the token's name (a join under another is closed with 4401); wschat binds
 * `usr` to its `jwt` (or, with a public key and no `jwt`, shows `~usr`);
 * login-chat and channel-path names, which no token proves, are shown as
 * `~name`. A native user's name is never taken or spoken for.
 */
import assert from "node:assert/strict";
import * as jose from "jose";
import { createManualClock, type ManualClock } from "../../lib/core/clock.ts";
import type { Config } from "../../lib/config.ts";
import type { Dialect } from "../../lib/dialects/dialect.ts";
import { channelPath } from "../../lib/dialects/channel_path.ts";
import { garinchat } from "../../lib/dialects/garinchat.ts";
import { loginChat } from "../../lib/dialects/login_chat.ts";
import { wschat } from "../../lib/dialects/wschat.ts";
import { CloseCode } from "../../lib/core/protocol.ts";
import { startServer, type TestClient, type TestServer, withTimeout } from "../_helpers.ts";
import { type DialectClient, openDialectClient } from "./_client.ts";

const SECRET = "impersonation-test-secret-012345";
const GARINCHAT_SECRET = "impersonation-garinchat-secret-01";
const START = Date.UTC(2026, 0, 1);
const EXP = START / 1000 + 3600;

/** A token for `claims` signed with `secret` (HS256 by default). */
function token(claims: jose.JWTPayload, secret = SECRET, alg = "HS256"): Promise<string> {
  return new jose.SignJWT(claims).setProtectedHeader({ alg })
    .sign(new TextEncoder().encode(secret));
}

/** A server speaking `dialects` on a manual clock (the burst covers the whole test). */
function serve(
  overrides: Partial<Config>,
  dialects: Dialect[],
  clock: ManualClock = createManualClock(START),
): TestServer {
  return startServer({ rateBurst: 100_000, ...overrides }, { clock, dialects });
}

/** A dialect client at `/compat/NAME<path>`. */
function open(server: TestServer, name: string, path = "/"): Promise<DialectClient> {
  return openDialectClient(`${server.url.replace("http", "ws")}/compat/${name}${path}`);
}

/** A native client logged in with a token for `name`, in `channels`. */
async function nativeWithToken(
  server: TestServer,
  name: string,
  ...channels: string[]
): Promise<TestClient> {
  const client = await server.connect();
  client.send({ type: "login", token: await token({ sub: name, exp: EXP }) });
  assert.equal((await client.nextOf("welcome")).name, name);
  for (const channel of channels) await client.join(channel);
  return client;
}

/** A GarinChat client that has sent `auth` with `body` and `join` as `username` in `room`. */
async function garinchatJoin(
  server: TestServer,
  body: string,
  username: string,
  room = "room",
): Promise<DialectClient> {
  const client = await open(server, "garinchat");
  client.send({ type: "auth", body });
  client.send({ type: "join", username, room });
  return client;
}

/** The close `client` gets. */
function closeOf(client: DialectClient): Promise<{ code: number; reason: string }> {
  return withTimeout(client.closed, "the close");
}

const NOT_THE_TOKENS = { code: CloseCode.Unauthorized, reason: "Username is not the token's name" };
const INVALID_TOKEN = { code: CloseCode.Unauthorized, reason: "Invalid token" };

Deno.test("impersonation: GarinChat with another user's token cannot take alice; a native alice is unaffected", async (t) => {
  await using server = serve({ jwtSecret: SECRET }, [garinchat]);
  const watcher = await nativeWithToken(server, "nat", "room");
  const bobs = await token({ sub: "bob", exp: EXP });

  await t.step("a free name: refused with 4401", async () => {
    const bob = await garinchatJoin(server, bobs, "alice");
    assert.deepEqual(await closeOf(bob), NOT_THE_TOKENS);
  });
  await t.step("the real alice then logs in natively (no name_taken)", async () => {
    await nativeWithToken(server, "alice");
  });
  await t.step("alice's name while she is online: refused with 4401 as well", async () => {
    const bob = await garinchatJoin(server, bobs, "alice");
    assert.deepEqual(await closeOf(bob), NOT_THE_TOKENS);
  });
  await t.step("a look-alike of the token's name: refused", async () => {
    const bob = await garinchatJoin(server, bobs, "b\u043Eb"); // Cyrillic о
    assert.deepEqual(await closeOf(bob), NOT_THE_TOKENS);
  });
  await t.step("a token without exp (a native login needs one): refused at auth", async () => {
    const bob = await garinchatJoin(server, await token({ sub: "bob" }), "bob");
    assert.deepEqual(await closeOf(bob), INVALID_TOKEN);
  });
  await t.step("the token's own name joins, and is what native users see", async () => {
    const bob = await garinchatJoin(server, bobs, "Bob");
    try {
      assert.deepEqual(await bob.next(), { type: "join", username: "Bob", totalUsers: 2 });
      // The first presence the watcher gets: none of the refused attempts ever joined.
      const presence = await watcher.nextOf("presence");
      assert.deepEqual([presence.event, presence.name], ["join", "Bob"]);
      bob.send({ type: "message", body: "hi" });
      const message = await watcher.nextOf("message");
      assert.deepEqual([message.from, message.text], ["Bob", "hi"]);
    } finally {
      await bob.close();
    }
  });
});

Deno.test("impersonation: GarinChat's own secret proves names by the native rules when tokens are required", async (t) => {
  await using server = serve({ jwtSecret: SECRET, garinchatJwtSecret: GARINCHAT_SECRET }, [
    garinchat,
  ]);
  const cases: [string, jose.JWTPayload, string, string, { code: number; reason: string }][] = [
    ["without exp", { sub: "dave" }, "dave", "room", INVALID_TOKEN],
    ["another user's", { sub: "dave", exp: EXP }, "alice", "room", NOT_THE_TOKENS],
    ["a name the rules refuse", { name: "da ve", exp: EXP }, "dave", "room", {
      code: CloseCode.Unauthorized,
      reason: "Token name refused",
    }],
    [
      "whose channels leave out the room",
      { sub: "dave", exp: EXP, channels: ["team-*"] },
      "dave",
      "room",
      {
        code: CloseCode.Unauthorized,
        reason: "Room not allowed by the token",
      },
    ],
  ];
  for (const [name, claims, username, room, close] of cases) {
    await t.step(`refused: a token ${name}`, async () => {
      const client = await garinchatJoin(
        server,
        await token(claims, GARINCHAT_SECRET),
        username,
        room,
      );
      assert.deepEqual(await closeOf(client), close);
    });
  }
  await t.step("joins: the token's name (in any case), in a room its channels allow", async () => {
    const claims = { name: "dave", exp: EXP, channels: ["team-*"] };
    const dave = await garinchatJoin(
      server,
      await token(claims, GARINCHAT_SECRET),
      "DAVE",
      "team-a",
    );
    assert.deepEqual(await dave.next(), { type: "join", username: "DAVE", totalUsers: 1 });
    await dave.close();
  });
  await t.step("hubbub's tokens are not GarinChat's", async () => {
    const client = await garinchatJoin(server, await token({ sub: "dave", exp: EXP }), "dave");
    assert.deepEqual(await closeOf(client), INVALID_TOKEN);
  });
});

Deno.test("impersonation: a GarinChat connection ends when its token expires, as a native session does", async () => {
  const clock = createManualClock(START);
  await using server = serve({ jwtSecret: SECRET, jwtClockSkew: 0 }, [garinchat], clock);
  const exp = START / 1000 + 10;
  const erin = await garinchatJoin(server, await token({ sub: "erin", exp }), "erin");
  assert.deepEqual(await erin.next(), { type: "join", username: "erin", totalUsers: 1 });
  clock.advance(9_000);
  erin.send({ type: "message", body: "still valid" }); // answered by nothing: alone in the room
  clock.advance(2_000);
  assert.deepEqual(await closeOf(erin), { code: CloseCode.Unauthorized, reason: "Token expired" });
});

Deno.test("impersonation: where tokens are required, the same user joining again still takes the name over", async () => {
  await using server = serve({ jwtSecret: SECRET }, [garinchat]);
  const claims = { sub: "u-1", name: "alice", exp: EXP };
  const old = await garinchatJoin(server, await token(claims), "alice");
  assert.deepEqual(await old.next(), { type: "join", username: "alice", totalUsers: 1 });
  const back = await garinchatJoin(server, await token(claims), "alice");
  assert.deepEqual(await closeOf(old), { code: CloseCode.Conflict, reason: "Logged in elsewhere" });
  assert.deepEqual(await back.next(), { type: "join", username: "alice", totalUsers: 1 });
  await back.close();
});

Deno.test("impersonation: a login-chat name is shown as ~name where tokens are required, and alice stays alice's", async (t) => {
  await using server = serve({ jwtSecret: SECRET }, [loginChat]);
  const watcher = await nativeWithToken(server, "nat", "lobby");
  const lc = await open(server, "login-chat");
  const other = await open(server, "login-chat");
  try {
    await t.step("login alice: logged_in as asked, shown to everyone as ~alice", async () => {
      lc.send({ type: "login", username: "alice" });
      assert.equal(await lc.nextText(), '{"type":"logged_in","username":"alice"}');
      assert.deepEqual(await watcher.nextOf("presence"), {
        type: "presence",
        channel: "lobby",
        event: "join",
        name: "~alice",
      });
      lc.send({ type: "chat", username: "alice", value: "hi" });
      const chat = '{"type":"chat","username":"~alice","value":"hi"}';
      assert.equal(await lc.nextText(), chat);
      assert.equal(await other.nextText(), chat);
      const message = await watcher.nextOf("message");
      assert.deepEqual([message.from, message.text], ["~alice", "hi"]);
    });
    await t.step("the real alice logs in natively meanwhile", async () => {
      await nativeWithToken(server, "alice", "lobby");
      const presence = await watcher.nextOf("presence");
      assert.deepEqual([presence.event, presence.name], ["join", "alice"]);
    });
    await t.step(
      "~alice is one name: another login-chat alice fails, and ~alice is no name",
      async () => {
        for (const username of ["alice", "ALICE", "~alice"]) {
          other.send({ type: "login", username });
          assert.equal(await other.nextText(), JSON.stringify({ type: "login_failure", username }));
        }
      },
    );
    await t.step("logout alice frees ~alice", async () => {
      lc.send({ type: "logout", username: "alice" });
      assert.equal(await lc.nextText(), '{"type":"logged_out","username":"alice","value":true}');
      const leave = await watcher.nextOf("presence");
      assert.deepEqual([leave.event, leave.name], ["leave", "~alice"]);
      other.send({ type: "login", username: "alice" });
      assert.equal(await other.nextText(), '{"type":"logged_in","username":"alice"}');
    });
  } finally {
    await Promise.all([lc.close(), other.close()]);
  }
});

Deno.test("impersonation: without required tokens, a login-chat name is shown as it is", async () => {
  await using server = serve({}, [loginChat]);
  const watcher = await server.user("nat", "lobby");
  const lc = await open(server, "login-chat");
  try {
    lc.send({ type: "login", username: "alice" });
    assert.equal(await lc.nextText(), '{"type":"logged_in","username":"alice"}');
    assert.equal((await watcher.nextOf("presence")).name, "alice");
  } finally {
    await lc.close();
  }
});

/** Reads a wschat frame's `usr` and `msg`. */
async function usrMsg(client: DialectClient): Promise<[string, string]> {
  const frame = await client.next();
  return [frame.usr, frame.msg];
}

Deno.test("impersonation: a wschat usr must be its token's name where tokens are required", async () => {
  await using server = serve({ jwtSecret: SECRET }, [wschat]);
  const alice = await nativeWithToken(server, "alice", "lobby");
  const sender = await open(server, "wschat");
  try {
    const bobs = await token({ sub: "bob", exp: EXP });
    sender.send({ usr: "alice", msg: "bob's token", jwt: bobs });
    sender.send({ usr: "alice", msg: "no token" });
    sender.send({ usr: "bob", msg: "his own", jwt: bobs });
    // Checks settle in arrival order: bob's own message first proves the others were dropped.
    assert.deepEqual(await usrMsg(sender), ["bob", "his own"]);
    const message = await alice.nextOf("message");
    assert.deepEqual([message.from, message.text], ["bob", "his own"]);
  } finally {
    await sender.close();
  }
});

Deno.test("impersonation: with a public key, a wschat message without jwt goes out under ~usr", async (t) => {
  const { privateKey, publicKey } = await jose.generateKeyPair("ES256", { extractable: true });
  await using server = serve({ jwtPublicKey: await jose.exportSPKI(publicKey) }, [wschat]);
  const signed = (claims: jose.JWTPayload) =>
    new jose.SignJWT(claims).setProtectedHeader({ alg: "ES256" }).sign(privateKey);
  const watcher = await server.connect();
  watcher.send({ type: "login", token: await signed({ sub: "nat", exp: EXP }) });
  await watcher.nextOf("welcome");
  await watcher.join("lobby");
  const sender = await open(server, "wschat");
  const listener = await open(server, "wschat");
  try {
    await t.step("no jwt: ~usr for every protocol", async () => {
      sender.send({ usr: "alice", msg: "unproven" });
      assert.deepEqual(await usrMsg(sender), ["~alice", "unproven"]);
      assert.deepEqual(await usrMsg(listener), ["~alice", "unproven"]);
      const message = await watcher.nextOf("message");
      assert.deepEqual([message.from, message.text], ["~alice", "unproven"]);
    });
    await t.step("another user's token: dropped; alice's own: alice", async () => {
      sender.send({ usr: "alice", msg: "forged", jwt: await signed({ sub: "bob", exp: EXP }) });
      sender.send({ usr: "alice", msg: "proven", jwt: await signed({ sub: "alice", exp: EXP }) });
      assert.deepEqual(await usrMsg(listener), ["alice", "proven"]);
      const message = await watcher.nextOf("message");
      assert.deepEqual([message.from, message.text], ["alice", "proven"]);
    });
  } finally {
    await Promise.all([sender.close(), listener.close()]);
  }
});

/** A channel-path client in channel `room1`, past its connection frame. */
async function channelPathClient(server: TestServer): Promise<DialectClient> {
  const client = await open(server, "channel-path", "/api/chat/room1");
  assert.deepEqual(await client.next(), { type: "connection", id: "room1" });
  return client;
}

const IDENTITY_OK = '{"success":true,"type":"identity"}';
const IDENTITY_FAILED = '{"success":false,"type":"identity"}';

Deno.test("impersonation: a channel-path identity is shown as ~name where tokens are required", async () => {
  await using server = serve({ jwtSecret: SECRET }, [channelPath]);
  const alice = await nativeWithToken(server, "alice", "cp:room1");
  const cp = await channelPathClient(server);
  const other = await channelPathClient(server);
  try {
    cp.send({ type: "identity", user: "alice" });
    assert.equal(await cp.nextText(), IDENTITY_OK);
    const presence = await alice.nextOf("presence");
    assert.deepEqual([presence.event, presence.name], ["join", "~alice"]);
    cp.send({ type: "message", text: "hi" });
    assert.equal((await cp.next()).user, "~alice");
    assert.equal((await other.next()).user, "~alice");
    const message = await alice.nextOf("message");
    assert.deepEqual([message.from, message.text], ["~alice", "hi"]);
    // Marked names are compared marked: the channel's ~alice is taken, and ~alice is no name.
    other.send({ type: "identity", user: "alice" });
    assert.equal(await other.nextText(), IDENTITY_FAILED);
    other.send({ type: "identity", user: "~alice" });
    assert.equal(await other.nextText(), IDENTITY_FAILED);
  } finally {
    await Promise.all([cp.close(), other.close()]);
  }
});

Deno.test("impersonation: a channel-path identity follows the native name rules", async (t) => {
  await using server = serve({}, [channelPath]);
  const watcher = await server.user("nat", "cp:room1");
  const cp = await channelPathClient(server);
  try {
    const refused: [string, string][] = [
      ["a space", "al ice"],
      ["33 characters", "a".repeat(33)],
      ["a right-to-left override", "\u202Eecila"],
      ["an invisible mark", "alice\u034F"],
      ["NUL", "ali\u0000ce"],
      ["HTML", "<b>alice</b>"],
      ["a look-alike of a native member (Cyrillic а)", "n\u0430t"],
    ];
    for (const [name, user] of refused) {
      await t.step(`refused: ${name}`, async () => {
        cp.send({ type: "identity", user });
        assert.equal(await cp.nextText(), IDENTITY_FAILED);
      });
    }
    await t.step("taken after NFKC, and shown as it is where tokens are not required", async () => {
      cp.send({ type: "identity", user: "\uFF41\uFF4C\uFF49\uFF43\uFF45" }); // fullwidth alice
      assert.equal(await cp.nextText(), IDENTITY_OK);
      const presence = await watcher.nextOf("presence");
      assert.deepEqual([presence.event, presence.name], ["join", "alice"]);
    });
  } finally {
    await cp.close();
  }
});
