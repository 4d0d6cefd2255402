/**
 * The client library against a scripted server: frames, acknowledged sends,
 * reconnects that recover without duplicates or gaps, the outbox, and when the
 * client must not reconnect. Timers are fired by hand; nothing waits on time.
 */
import assert from "node:assert/strict";
import {
  backoffDelay,
  type ClientOptions,
  type Gap,
  HubbubClient,
  HubbubError,
  type Joined,
  type Message,
  parseFrames,
  type StateEvent,
  type WebSocketConstructor,
} from "../../client/mod.ts";
import { fakeTimers, fakeWebSocket, msg } from "./_fake.ts";

/** A client on a fake server, with what it emitted recorded. */
function setup(options: Partial<ClientOptions> = {}) {
  const server = fakeWebSocket();
  const timers = fakeTimers();
  const client = new HubbubClient({
    url: "ws://hubbub.test/ws",
    name: "alice",
    WebSocket: server.WebSocket,
    timers,
    random: () => 0.5,
    ...options,
  });
  const seen = {
    states: [] as StateEvent[],
    messages: [] as Message[],
    gaps: [] as Gap[],
    joined: [] as Joined[],
    errors: [] as HubbubError[],
    /** Every event, in order, as "kind:detail". */
    log: [] as string[],
  };
  client.on("state", (event) => {
    seen.states.push(event);
    seen.log.push(`state:${event.state}`);
  });
  client.on("message", (message) => {
    seen.messages.push(message);
    seen.log.push(`message:${message.text}`);
  });
  client.on("gap", (gap) => {
    seen.gaps.push(gap);
    seen.log.push(`gap:${gap.channel}`);
  });
  client.on("joined", (joined) => {
    seen.joined.push(joined);
    seen.log.push(`joined:${joined.channel}`);
  });
  client.on("error", (error) => {
    seen.errors.push(error);
    seen.log.push(`error:${error.code}`);
  });
  return { server, timers, client, seen };
}

/** A connected client that joined `lobby` (epoch "e1") with messages 1..`seq`. */
async function joinedLobby(seq = 3, options: Partial<ClientOptions> = {}) {
  const context = setup(options);
  const { server, client } = context;
  const connected = client.connect();
  server.last().welcome();
  await connected;
  const joining = client.join("lobby", { history: 50 });
  const join = server.last().lastOf("join");
  const messages = Array.from({ length: seq }, (_, i) => msg("lobby", i + 1));
  server.last().push({
    type: "joined",
    channel: "lobby",
    members: ["bob", "alice"],
    epoch: "e1",
    seq,
    messages,
    ref: join.ref,
  });
  await joining;
  return context;
}

/** Drops the connection, fires the back-off timer, and welcomes the new socket. */
function reconnect(context: ReturnType<typeof setup>, code = 1012) {
  context.server.last().drop(code);
  context.timers.fire();
  const socket = context.server.last();
  socket.welcome();
  return socket;
}

Deno.test("client: parseFrames splits a coalesced message on newlines and skips what is not a frame", () => {
  const data = '{"type":"pong"}\n{"type":"hello","protocol":1}\n\nnot json\n[1]\n{"no":"type"}\n';
  assert.deepEqual(parseFrames(data), [{ type: "pong" }, { type: "hello", protocol: 1 }]);
});

Deno.test("client: backoffDelay doubles from initialMs, is capped at maxMs, and waits a random half", async (t) => {
  const options = { initialMs: 500, maxMs: 4000 };
  const table: [attempt: number, random: number, delay: number][] = [
    [1, 0, 250],
    [1, 1, 500],
    [2, 0.5, 750],
    [3, 1, 2000],
    [4, 1, 4000],
    [9, 1, 4000],
    [9, 0, 2000],
  ];
  for (const [attempt, random, delay] of table) {
    await t.step(`attempt ${attempt}, random ${random} → ${delay} ms`, () => {
      assert.equal(backoffDelay(attempt, options, () => random), delay);
    });
  }
});

Deno.test("client: the runtime's own WebSocket class fits the option", () => {
  const Socket: WebSocketConstructor = WebSocket;
  assert.equal(typeof Socket, "function");
});

Deno.test("client: connect logs in by name and resolves with the name the server welcomed", async () => {
  const { server, client, seen } = setup({ name: "Alice" });
  const connected = client.connect();
  const socket = server.last();
  assert.equal(socket.url, "ws://hubbub.test/ws");
  socket.open();
  assert.deepEqual(socket.sent, [{ type: "login", name: "Alice", ref: socket.sent[0].ref }]);
  socket.push({ type: "welcome", name: "alice", ref: socket.sent[0].ref });
  assert.equal(await connected, "alice");
  assert.equal(client.name, "alice");
  assert.equal(client.state, "open");
  assert.deepEqual(seen.states, [{ state: "connecting", attempt: 0 }, {
    state: "open",
    name: "alice",
  }]);
});

Deno.test("client: a refused first login rejects connect and does not reconnect", async () => {
  const { server, timers, client, seen } = setup();
  const connected = client.connect();
  const socket = server.last();
  socket.open();
  socket.push({
    type: "error",
    code: "name_taken",
    message: 'Name "alice" is taken',
    ref: socket.sent[0].ref,
  });
  await assert.rejects(
    connected,
    (error) => error instanceof HubbubError && error.code === "name_taken",
  );
  assert.equal(client.state, "closed");
  assert.equal(socket.closedWith, 1000);
  assert.deepEqual(timers.delays(), []);
  assert.equal(seen.states.at(-1)?.state, "closed");
});

Deno.test("client: a token function is asked for a token before every login", async () => {
  let issued = 0;
  const { server, timers, client } = setup({ name: undefined, token: () => `token-${++issued}` });
  const connected = client.connect();
  server.last().open();
  const login = await server.last().next("login");
  assert.equal(login.token, "token-1");
  server.last().push({ type: "welcome", name: "alice", ref: login.ref });
  await connected;
  server.last().drop(4401, "Token expired");
  assert.equal(client.state, "reconnecting", "a token function can renew an expired token");
  timers.fire();
  server.last().open();
  assert.equal((await server.last().next("login")).token, "token-2");
});

Deno.test("client: send resolves on its sent frame and rejects on its error", async () => {
  const { server, client, seen } = await joinedLobby(0);
  const socket = server.last();
  const sending = client.send("lobby", "hi");
  const broadcast = socket.lastOf("broadcast");
  assert.equal(broadcast.channel, "lobby");
  assert.equal(broadcast.text, "hi");
  assert.match(String(broadcast.key), /^[0-9a-f]{32}$/);
  assert.notEqual(broadcast.ref, undefined);
  socket.push(msg("lobby", 1, "hi", "alice"), {
    type: "sent",
    channel: "lobby",
    id: "id-hi",
    seq: 1,
    ref: broadcast.ref,
  });
  assert.deepEqual(await sending, { channel: "lobby", id: "id-hi", seq: 1, key: broadcast.key });

  const refused = client.send("lobby", "x".repeat(5000));
  socket.push({
    type: "error",
    code: "too_large",
    message: "Text is too long",
    ref: socket.lastOf("broadcast").ref,
  });
  await assert.rejects(
    refused,
    (error) => error instanceof HubbubError && error.code === "too_large",
  );

  socket.push({ type: "error", code: "rate_limited", message: "Slow down" });
  assert.deepEqual(
    seen.errors.map((error) => error.code),
    ["rate_limited"],
    "an error without a ref is an event",
  );
  assert.notEqual(socket.lastOf("broadcast").key, broadcast.key, "every send has its own key");
});

Deno.test("client: join delivers its history as message events, then live messages, each once", async () => {
  const { server, client, seen } = await joinedLobby(3);
  assert.deepEqual(server.last().lastOf("join"), {
    type: "join",
    channel: "lobby",
    history: 50,
    ref: server.last().lastOf("join").ref,
  });
  assert.deepEqual(seen.log.slice(-4), ["joined:lobby", "message:m1", "message:m2", "message:m3"]);
  assert.deepEqual(client.members("lobby"), ["bob", "alice"]);
  server.last().push(
    msg("lobby", 3),
    msg("lobby", 2),
    msg("lobby", 4),
    msg("lobby", undefined, "live"),
  );
  assert.deepEqual(seen.messages.map((m) => m.text), ["m1", "m2", "m3", "m4", "live"]);
  assert.deepEqual(client.position("lobby"), { epoch: "e1", seq: 4 });
});

Deno.test("client: presence updates the members", async () => {
  const { server, client } = await joinedLobby(0);
  server.last().push({ type: "presence", channel: "lobby", event: "join", name: "carol" });
  server.last().push({ type: "presence", channel: "lobby", event: "leave", name: "bob" });
  assert.deepEqual(client.members("lobby"), ["alice", "carol"]);
});

Deno.test("client: after a drop it reconnects with back-off and re-joins with since, dropping duplicates", async () => {
  const context = await joinedLobby(3);
  const { server, timers, client, seen } = context;
  server.last().push(msg("lobby", 4));
  server.last().drop(1006);
  assert.deepEqual(seen.states.at(-1), {
    state: "reconnecting",
    attempt: 1,
    delayMs: 375,
    code: 1006,
    reason: "",
  });
  assert.deepEqual(timers.delays(), [375]);
  assert.equal(server.sockets.length, 1, "nothing opens before the back-off ran out");
  timers.fire();
  const socket = server.last();
  assert.equal(server.sockets.length, 2);
  socket.welcome();
  const join = socket.lastOf("join");
  assert.deepEqual(join, {
    type: "join",
    channel: "lobby",
    history: 50,
    since: { epoch: "e1", seq: 4 },
    ref: join.ref,
  });
  socket.push({
    type: "joined",
    channel: "lobby",
    members: ["bob", "alice"],
    epoch: "e1",
    seq: 6,
    messages: [msg("lobby", 4), msg("lobby", 5), msg("lobby", 6)],
    recovered: true,
    ref: join.ref,
  });
  socket.push(msg("lobby", 6), msg("lobby", 7));
  assert.deepEqual(seen.messages.map((m) => m.seq), [1, 2, 3, 4, 5, 6, 7]);
  assert.deepEqual(seen.gaps, []);
  assert.equal(seen.joined.at(-1)?.recovered, true);
  assert.deepEqual(client.position("lobby"), { epoch: "e1", seq: 7 });
});

Deno.test("client: a re-join with recovered:false emits a gap, then the latest messages", async () => {
  const context = await joinedLobby(3);
  const { seen, client } = context;
  const socket = reconnect(context);
  socket.push({
    type: "joined",
    channel: "lobby",
    members: ["alice"],
    epoch: "e2",
    seq: 2,
    messages: [msg("lobby", 1, "new1"), msg("lobby", 2, "new2")],
    recovered: false,
    ref: socket.lastOf("join").ref,
  });
  assert.deepEqual(seen.gaps, [{
    channel: "lobby",
    epoch: "e2",
    previous: { epoch: "e1", seq: 3 },
  }]);
  assert.deepEqual(seen.log.slice(-4), [
    "joined:lobby",
    "gap:lobby",
    "message:new1",
    "message:new2",
  ]);
  assert.deepEqual(client.position("lobby"), { epoch: "e2", seq: 2 }, "the new epoch starts over");
});

Deno.test("client: unacknowledged sends are re-sent with the same keys after the re-joins", async () => {
  const context = await joinedLobby(0);
  const { server, client } = context;
  const first = client.send("lobby", "one");
  const second = client.send("lobby", "two");
  const keys = server.last().sentOf("broadcast").map((frame) => frame.key);
  const socket = reconnect(context);
  const types = socket.sent.map((frame) => frame.type);
  assert.deepEqual(types, ["login", "join", "broadcast", "broadcast"]);
  const resent = socket.sentOf("broadcast");
  assert.deepEqual(resent.map((frame) => frame.key), keys);
  assert.deepEqual(resent.map((frame) => frame.text), ["one", "two"]);
  socket.push({ type: "sent", channel: "lobby", id: "a", seq: 1, ref: resent[0].ref }, {
    type: "sent",
    channel: "lobby",
    id: "b",
    seq: 2,
    ref: resent[1].ref,
  });
  assert.equal((await first).id, "a");
  assert.equal((await second).id, "b");
  const third = reconnect(context);
  assert.deepEqual(third.sentOf("broadcast"), [], "acknowledged sends are not sent again");
});

Deno.test("client: sends and joins made before connecting go out after the login", async () => {
  const { server, client } = setup();
  const joining = client.join("lobby");
  const sending = client.send("lobby", "early");
  const connected = client.connect();
  server.last().welcome();
  await connected;
  const socket = server.last();
  assert.deepEqual(socket.sent.map((frame) => frame.type), ["login", "join", "broadcast"]);
  assert.equal(socket.lastOf("join").history, undefined, "no history asked: the server's default");
  socket.push({
    type: "joined",
    channel: "lobby",
    members: ["alice"],
    epoch: "e1",
    seq: 0,
    messages: [],
    ref: socket.lastOf("join").ref,
  });
  socket.push({
    type: "sent",
    channel: "lobby",
    id: "x",
    seq: 1,
    ref: socket.lastOf("broadcast").ref,
  });
  assert.equal((await joining).epoch, "e1");
  assert.equal((await sending).seq, 1);
});

Deno.test("client: no reconnect after close(), and what waited rejects", async () => {
  const { server, timers, client, seen } = await joinedLobby(0);
  const sending = client.send("lobby", "never acknowledged");
  client.close();
  await assert.rejects(sending, (error) => error instanceof HubbubError && error.code === "closed");
  assert.equal(client.state, "closed");
  assert.equal(server.last().closedWith, 1000);
  server.last().drop(1006);
  assert.deepEqual(timers.delays(), []);
  assert.equal(server.sockets.length, 1);
  assert.equal(seen.states.at(-1)?.state, "closed");
  await assert.rejects(client.send("lobby", "after"), (error) => error instanceof HubbubError);
});

Deno.test("client: close() while waiting to reconnect cancels the attempt", async () => {
  const { server, timers, client } = await joinedLobby(0);
  server.last().drop(1012);
  assert.equal(timers.delays().length, 1);
  client.close();
  assert.deepEqual(timers.delays(), []);
  assert.equal(client.state, "closed");
});

Deno.test("client: which close codes it reconnects after", async (t) => {
  const table: [code: number, reconnects: boolean][] = [
    [1001, true],
    [1006, true],
    [1011, true],
    [1012, true],
    [1013, true],
    [4429, true],
    [1000, false],
    [1009, false],
    [4401, false],
    [4403, false],
    [4408, false],
    [4409, false],
    [4410, false],
  ];
  for (const [code, reconnects] of table) {
    await t.step(`${code} → ${reconnects ? "reconnects" : "stays closed"}`, async () => {
      const { server, timers, client } = await joinedLobby(0);
      server.last().drop(code, "bye");
      assert.equal(client.state, reconnects ? "reconnecting" : "closed");
      assert.equal(timers.delays().length, reconnects ? 1 : 0);
    });
  }
});

Deno.test("client: the back-off grows while attempts fail and starts over after a login", async () => {
  const { server, timers, client } = await joinedLobby(0);
  const delays: number[] = [];
  server.last().drop(1006);
  for (let i = 0; i < 4; i++) {
    delays.push(timers.fire());
    server.last().drop(1006); // the server is still down
  }
  delays.push(timers.fire());
  assert.deepEqual(delays, [375, 750, 1500, 3000, 6000]);
  server.last().welcome();
  assert.equal(client.state, "open");
  server.last().drop(1006);
  assert.deepEqual(timers.delays(), [375]);
});

Deno.test("client: a name still held by its old connection is tried again after a back-off", async () => {
  const context = await joinedLobby(0);
  const { server, timers, client } = context;
  server.last().drop(1006);
  timers.fire();
  const socket = server.last();
  socket.open();
  socket.push({
    type: "error",
    code: "name_taken",
    message: "Taken",
    ref: socket.lastOf("login").ref,
  });
  assert.equal(client.state, "reconnecting");
  timers.fire();
  server.last().welcome();
  assert.equal(client.state, "open");
});

Deno.test("client: leave stops the re-join after a reconnect", async () => {
  const context = await joinedLobby(0);
  const { server, client } = context;
  const leaving = client.leave("lobby");
  server.last().push({ type: "left", channel: "lobby", ref: server.last().lastOf("leave").ref });
  await leaving;
  server.last().push(msg("lobby", 1, "after leaving"));
  assert.deepEqual(context.seen.messages, []);
  const socket = reconnect(context);
  assert.deepEqual(socket.sentOf("join"), []);
  assert.deepEqual(client.members("lobby"), []);
});

Deno.test("client: a refused re-join is an error event and the channel is dropped", async () => {
  const context = await joinedLobby(0);
  const socket = reconnect(context);
  socket.push({ type: "error", code: "forbidden", message: "No", ref: socket.lastOf("join").ref });
  assert.deepEqual(context.seen.errors.map((e) => [e.code, e.channel]), [["forbidden", "lobby"]]);
  assert.equal(context.client.position("lobby"), null);
});

Deno.test("client: history asks for older messages and does not emit them", async () => {
  const { server, client, seen } = await joinedLobby(3);
  const loading = client.history("lobby", { before: 1, limit: 2 });
  const request = server.last().lastOf("history");
  assert.deepEqual(request, {
    type: "history",
    channel: "lobby",
    before: 1,
    limit: 2,
    ref: request.ref,
  });
  server.last().push({
    type: "history",
    channel: "lobby",
    epoch: "e1",
    messages: [],
    ref: request.ref,
  });
  assert.deepEqual(await loading, { channel: "lobby", epoch: "e1", messages: [] });
  assert.equal(seen.messages.length, 3);
});

Deno.test("client: channels lists the server's channels", async () => {
  const { server, client } = await joinedLobby(0);
  const listing = client.channels();
  const request = server.last().lastOf("channels");
  server.last().push({
    type: "channels",
    channels: [{ name: "lobby", members: 2 }],
    ref: request.ref,
  });
  assert.deepEqual(await listing, [{ name: "lobby", members: 2 }]);
});

Deno.test("client: with a heartbeat, a server that stops answering is left for a new connection", async () => {
  const { server, timers, client } = await joinedLobby(0, { heartbeatMs: 20_000 });
  assert.equal(timers.fire(), 20_000);
  assert.deepEqual(server.last().lastOf("ping"), { type: "ping" });
  server.last().push({ type: "pong" });
  timers.fire();
  assert.equal(client.state, "open", "the pong kept it alive");
  timers.fire(); // nothing heard since the last ping
  assert.equal(client.state, "reconnecting");
  assert.equal(server.sockets[0].closedWith, 1000);
});

Deno.test("client: an unsubscribed listener hears nothing more", async () => {
  const { server, client } = await joinedLobby(0);
  const heard: string[] = [];
  const stop = client.on("message", (m) => heard.push(m.text));
  server.last().push(msg("lobby", 1, "a"));
  stop();
  server.last().push(msg("lobby", 2, "b"));
  assert.deepEqual(heard, ["a"]);
});

Deno.test("client: close() before connect() rejects what was queued", async () => {
  const { server, client } = setup();
  const sending = client.send("lobby", "queued");
  client.close();
  await assert.rejects(sending, (error) => error instanceof HubbubError && error.code === "closed");
  assert.equal(client.state, "closed");
  assert.equal(server.sockets.length, 0);
});
