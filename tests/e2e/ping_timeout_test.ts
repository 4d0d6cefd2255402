/**
 * `--ping-timeout` on every runtime (`HUBBUB_TARGET`), review 11b finding 4:
 * a peer that never answers pings is dropped with 1001 even while the server
 * keeps sending it traffic (on Bun, uWebSockets' idle timer restarted on the
 * server's own sends, so such a peer stayed forever), and a client that only
 * listens but answers pings is never dropped.
 */
import assert from "node:assert/strict";
import { type Frame, openClient, type TestClient, withTimeout } from "../_helpers.ts";
import { Opcode, rawConnect, type RawSocket } from "../_raw_ws.ts";
import { spawnServer, TARGET } from "./_server.ts";

/** Seconds: the smallest timeout, so that each test takes a few of them. */
const PING_TIMEOUT = 1;

/** Seconds: a healthy client gets half of it to answer a ping, which a busy machine may need. */
const HEALTHY_PING_TIMEOUT = 2;

/** Generous: the close is due after about a second. */
const DROP_MS = 10_000;

/** Reads frames (never answering pings) until a close frame: its code and the pings seen. */
async function readUntilClose(raw: RawSocket): Promise<{ code: number | null; pings: number }> {
  let pings = 0;
  for (;;) {
    const frame = await raw.read();
    if (frame === null) return { code: null, pings };
    if (frame.opcode === Opcode.Ping) pings++;
    if (frame.opcode === Opcode.Close) {
      return { code: (frame.payload[0] << 8) | frame.payload[1], pings };
    }
  }
}

/** Skips `client`'s frames until `name` leaves `channel`. */
async function leaveOf(client: TestClient, channel: string, name: string): Promise<Frame> {
  for (;;) {
    const frame = await client.nextOf("presence");
    if (frame.channel === channel && frame.name === name && frame.event === "leave") return frame;
  }
}

Deno.test(`ping timeout (${TARGET}): a peer that never answers pings is dropped while its channel is busy`, async () => {
  await using server = await spawnServer({ args: ["--ping-timeout", String(PING_TIMEOUT)] });
  const talker = await openClient(server.wsUrl);
  await talker.login("talker");
  await talker.join("busy");
  await using raw = await rawConnect(server.port);
  await raw.send(Opcode.Text, JSON.stringify({ type: "login", name: "frozen" }));
  await raw.send(Opcode.Text, JSON.stringify({ type: "join", channel: "busy" }));
  const joined = await talker.nextOf("presence");
  assert.deepEqual([joined.event, joined.name], ["join", "frozen"]);
  // The server sends the frozen peer something every 100 ms (under the rate limit) until it goes.
  let sent = 0;
  const posting = setInterval(() => {
    talker.send({ type: "broadcast", channel: "busy", text: `tick ${sent++}` });
  }, 100);
  try {
    const { code, pings } = await withTimeout(readUntilClose(raw), "the close", DROP_MS);
    assert.equal(code, 1001);
    assert.ok(pings >= 1, "the server pinged before giving up");
    await withTimeout(leaveOf(talker, "busy", "frozen"), "frozen to leave", DROP_MS);
  } finally {
    clearInterval(posting);
  }
  assert.ok(sent > 0);
  await talker.close();
});

Deno.test(`ping timeout (${TARGET}): a channel-path peer that never answers pings is dropped despite heartbeats`, async () => {
  await using server = await spawnServer({ args: ["--ping-timeout", String(PING_TIMEOUT)] });
  await using raw = await rawConnect(server.port, "/compat/channel-path/x/y/deadroom");
  await raw.send(Opcode.Text, JSON.stringify({ type: "identity", user: "deadcp" }));
  const { code } = await withTimeout(readUntilClose(raw), "the close", DROP_MS);
  assert.equal(code, 1001);
});

Deno.test(`ping timeout (${TARGET}): a client that answers pings but sends nothing stays`, async () => {
  await using server = await spawnServer({
    args: ["--ping-timeout", String(HEALTHY_PING_TIMEOUT)],
  });
  await using raw = await rawConnect(server.port);
  await raw.send(Opcode.Text, JSON.stringify({ type: "login", name: "listener" }));
  await raw.send(Opcode.Text, JSON.stringify({ type: "join", channel: "quiet" }));
  // A ping comes after half a timeout of silence: five answered span two and a half timeouts.
  let answered = 0;
  const answerPings = async () => {
    while (answered < 5) {
      const frame = await raw.read();
      if (frame === null) throw new Error("The connection ended");
      if (frame.opcode === Opcode.Close) throw new Error("The server closed the connection");
      if (frame.opcode !== Opcode.Ping) continue;
      await raw.send(Opcode.Pong, frame.payload);
      answered++;
    }
  };
  await withTimeout(answerPings(), "five pings", 5 * DROP_MS);
  await raw.send(Opcode.Text, JSON.stringify({ type: "ping" }));
  for (;;) {
    const frame = await withTimeout(raw.read(), "the pong");
    assert.ok(frame !== null && frame.opcode !== Opcode.Close, "still open");
    if (frame.opcode !== Opcode.Text) continue;
    assert.equal(JSON.parse(new TextDecoder().decode(frame.payload)).type, "pong");
    break;
  }
});
