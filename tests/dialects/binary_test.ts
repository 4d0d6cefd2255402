/**
 * Binary frames in wsify, channel-path and GarinChat: their originals read
 * a binary frame's payload as JSON text, so hubbub does too; bytes that are
 * not UTF-8 count as invalid JSON (wsify closes with 1000, channel-path
 * ignores them, GarinChat closes with 1008).
 */
import assert from "node:assert/strict";
import * as jose from "jose";
import { createManualClock } from "../../lib/core/clock.ts";
import { channelPath } from "../../lib/dialects/channel_path.ts";
import { garinchat } from "../../lib/dialects/garinchat.ts";
import { wsify } from "../../lib/dialects/wsify.ts";
import { CloseCode } from "../../lib/core/protocol.ts";
import { startServer, type TestServer, withTimeout } from "../_helpers.ts";
import { type DialectClient, openDialectClient } from "./_client.ts";

const bytes = (value: unknown) => new TextEncoder().encode(JSON.stringify(value));

/** Both dialects on a manual clock (no pings or heartbeats unless a test advances it). */
function serve(): TestServer {
  return startServer({ rateBurst: 100_000 }, {
    clock: createManualClock(Date.UTC(2026, 0, 1)),
    dialects: [wsify, channelPath],
  });
}

function open(server: TestServer, path: string): Promise<DialectClient> {
  return openDialectClient(`${server.url.replace("http", "ws")}/compat/${path}`);
}

Deno.test("binary: wsify reads a binary frame as JSON text, like a text frame", async () => {
  await using server = serve();
  const listener = await open(server, "wsify/ws");
  const sender = await open(server, "wsify/ws");
  try {
    // Each client's frames are handled in order, but not in step with another's: the listener
    // hears its own broadcast before the sender's are sent.
    listener.send(bytes({ command: "join", args: { channel: "bin" } }));
    listener.send({ command: "broadcast", args: { channel: "bin", content: "joined" } });
    assert.equal(await listener.nextText(), '"joined"');
    sender.send(bytes({ command: "broadcast", args: { channel: "bin", content: { a: 1 } } }));
    sender.send({ command: "broadcast", args: { channel: "bin", content: "text" } });
    assert.equal(await listener.nextText(), '{"a":1}');
    assert.equal(await listener.nextText(), '"text"', "text and binary frames keep their order");
    listener.send(bytes({ command: "leave", args: { channel: "bin" } }));
    listener.send({ command: "join", args: { channel: "marker" } });
    listener.send({ command: "broadcast", args: { channel: "marker", content: "left" } });
    assert.equal(await listener.nextText(), '"left"');
    sender.send({ command: "broadcast", args: { channel: "bin", content: "after leave" } });
    sender.send({ command: "broadcast", args: { channel: "marker", content: "marker" } });
    assert.equal(await listener.nextText(), '"marker"', "the binary leave took effect");
  } finally {
    await Promise.all([listener.close(), sender.close()]);
  }
});

Deno.test("binary: wsify closes with 1000 on a binary frame that is not JSON, as on a text one", async (t) => {
  await using server = serve();
  const cases: [string, Uint8Array][] = [
    ["not JSON", new Uint8Array([1, 2])],
    ["not UTF-8", new Uint8Array([0x7b, 0xff, 0x7d])],
    ["a byte order mark before the JSON", new Uint8Array([0xef, 0xbb, 0xbf, ...bytes(null)])],
  ];
  for (const [name, frame] of cases) {
    await t.step(name, async () => {
      const client = await open(server, "wsify/ws");
      client.send(frame);
      assert.deepEqual(await withTimeout(client.closed, "the close"), {
        code: CloseCode.Normal,
        reason: "Invalid message",
      });
    });
  }
  const fresh = await open(server, "wsify/ws");
  fresh.send({ command: "join", args: { channel: "still" } });
  fresh.send(bytes({ command: "broadcast", args: { channel: "still", content: "served" } }));
  assert.equal(await fresh.nextText(), '"served"', "the server serves on");
  await fresh.close();
});

Deno.test("binary: channel-path reads binary identity and message frames as JSON text", async () => {
  await using server = serve();
  const sender = await open(server, "channel-path/api/chat/bin");
  const other = await open(server, "channel-path/api/chat/bin");
  try {
    for (const client of [sender, other]) {
      assert.deepEqual(await client.next(), { type: "connection", id: "bin" });
    }
    sender.send(bytes({ type: "identity", user: "bina" }));
    assert.equal(await sender.nextText(), '{"success":true,"type":"identity"}');
    sender.send(bytes({ type: "message", text: "hi" }));
    for (const client of [sender, other]) {
      const message = await client.next();
      assert.deepEqual(Object.keys(message), ["type", "text", "timestamp", "user"]);
      assert.deepEqual([message.text, message.user], ["hi", "bina"]);
    }
  } finally {
    await Promise.all([sender.close(), other.close()]);
  }
});

Deno.test("binary: channel-path ignores a binary frame that is not UTF-8 or not JSON, like invalid JSON", async () => {
  await using server = serve();
  const client = await open(server, "channel-path/api/chat/bin");
  try {
    await client.next(); // the connection frame
    client.send(new Uint8Array([0x7b, 0xff, 0x7d]));
    client.send(new Uint8Array([1, 2, 3]));
    client.send({ type: "identity", user: "" }); // always fails: its answer must be the next frame
    assert.equal(await client.nextText(), '{"success":false,"type":"identity"}');
  } finally {
    await client.close();
  }
});

Deno.test("binary: garinchat reads a binary frame as JSON text, as its original does", async () => {
  const secret = "garinchat-binary-secret-0123456";
  await using server = startServer({ rateBurst: 100_000, garinchatJwtSecret: secret }, {
    clock: createManualClock(Date.UTC(2026, 0, 1)),
    dialects: [garinchat],
  });
  const client = await open(server, "garinchat/");
  try {
    const token = await new jose.SignJWT({}).setProtectedHeader({ alg: "HS256" })
      .sign(new TextEncoder().encode(secret));
    client.send(bytes({ type: "auth", body: token }));
    client.send(bytes({ type: "join", username: "binny", room: "bin" }));
    assert.equal(await client.nextText(), '{"type":"join","username":"binny","totalUsers":1}');
  } finally {
    await client.close();
  }
});
