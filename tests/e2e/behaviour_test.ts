/**
 * One behaviour suite for every runtime: the protocol, its errors and its
 * limits, over real sockets against a spawned server — `deno run main.ts`
 * by default, `bun main.ts` or a compiled binary with `HUBBUB_TARGET`
 * (see `_server.ts`). The in-process tests cover the same ground in more
 * detail on Deno; this suite is what proves the other adapters equal.
 */
import assert from "node:assert/strict";
import { expectError, type Frame, openClient, type TestClient, withTimeout } from "../_helpers.ts";
import { Opcode, rawConnect } from "../_raw_ws.ts";
import { oneWorld } from "../dialects/_one_world.ts";
import { handshake, openOffering } from "../dialects/_handshake.ts";
import { openDialectClient } from "../dialects/_client.ts";
import { type SpawnedServer, spawnServer, TARGET } from "./_server.ts";

const API_KEY = "behaviour-suite-api-key";
const OPEN_LIMITS = ["--connect-rate", "10000", "--max-connections-per-ip", "10000"];

/** A spawned server and the clients opened on it, all closed at the end. */
async function withServer(
  args: string[],
  body: (server: SpawnedServer, open: () => Promise<TestClient>) => Promise<void>,
) {
  await using server = await spawnServer({ args: [...OPEN_LIMITS, ...args] });
  const clients: TestClient[] = [];
  const open = async () => {
    const client = await openClient(server.wsUrl);
    clients.push(client);
    return client;
  };
  try {
    await body(server, open);
  } finally {
    await Promise.all(clients.map((client) => client.close()));
  }
}

Deno.test(`behaviour (${TARGET}): every command row of the protocol`, async () => {
  await withServer([], async (_server, open) => {
    const alice = await open();
    const bob = await open();
    const carol = await open();
    assert.deepEqual(Object.keys(alice.hello), ["type", "protocol", "server", "version"]);
    alice.send({ type: "login", name: "alice", ref: 1 });
    assert.deepEqual(await alice.next(), { type: "welcome", name: "alice", ref: 1 });
    await bob.login("bob");
    await carol.login("carol");
    alice.send({ type: "join", channel: "room" });
    const joined = await alice.next();
    const { epoch } = joined;
    assert.match(epoch, /^.+$/);
    // A channel nobody has written to: seq 0 and nothing to show.
    assert.deepEqual(joined, {
      type: "joined",
      channel: "room",
      members: ["alice"],
      epoch,
      seq: 0,
      messages: [],
    });
    bob.send({ type: "join", channel: "room", ref: "b" });
    assert.deepEqual(await bob.next(), {
      type: "joined",
      channel: "room",
      members: ["alice", "bob"],
      epoch,
      seq: 0,
      messages: [],
      ref: "b",
    });
    assert.deepEqual(await alice.next(), {
      type: "presence",
      channel: "room",
      event: "join",
      name: "bob",
    });
    await carol.join("elsewhere");

    bob.send({ type: "broadcast", channel: "room", text: "<b>hi</b>" });
    const [toAlice, toBob] = [await alice.next(), await bob.next()];
    assert.deepEqual(toAlice, toBob);
    assert.deepEqual(
      [toAlice.type, toAlice.channel, toAlice.from, toAlice.text],
      ["message", "room", "bob", "<b>hi</b>"],
    );
    assert.match(toAlice.ts, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    assert.equal(toAlice.seq, 1);

    // A ref asks for `sent`; a key sent again is acknowledged as the first and not published.
    bob.send({ type: "broadcast", channel: "room", text: "once", key: "k1", ref: "s1" });
    const once = await alice.next();
    assert.deepEqual([once.type, once.text, once.seq], ["message", "once", 2]);
    assert.deepEqual(await bob.next(), once);
    const sent = { type: "sent", channel: "room", id: once.id, seq: 2 };
    assert.deepEqual(await bob.next(), { ...sent, ref: "s1" });
    bob.send({ type: "broadcast", channel: "room", text: "once", key: "k1", ref: "s2" });
    assert.deepEqual(await bob.next(), { ...sent, ref: "s2" });
    alice.send({ type: "history", channel: "room", before: 2, limit: 5, ref: "h" });
    assert.deepEqual(
      await alice.next(),
      { type: "history", channel: "room", epoch, messages: [toAlice], ref: "h" },
      "alice got no second copy of the keyed message",
    );

    carol.send({ type: "channels" });
    assert.deepEqual(await carol.next(), {
      type: "channels",
      channels: [{ name: "elsewhere", members: 1 }, { name: "room", members: 2 }],
    });
    bob.send({ type: "leave", channel: "room" });
    assert.deepEqual(await bob.next(), { type: "left", channel: "room" });
    assert.deepEqual(await alice.next(), {
      type: "presence",
      channel: "room",
      event: "leave",
      name: "bob",
    });
    alice.send({ type: "broadcast", channel: "room", text: "while bob was away" });
    const missed = await alice.next();
    // Back with `since`: exactly what was said after seq 2, and the promise that it is all.
    bob.send({ type: "join", channel: "room", since: { epoch, seq: 2 } });
    assert.deepEqual(await bob.next(), {
      type: "joined",
      channel: "room",
      members: ["alice", "bob"],
      epoch,
      seq: 3,
      messages: [missed],
      recovered: true,
    });
    assert.equal(missed.seq, 3);
    assert.equal((await alice.next()).event, "join");
    alice.send({ type: "logout" });
    assert.deepEqual(await alice.next(), { type: "logged_out" });
    carol.send({ type: "ping", ref: 9 });
    assert.deepEqual(await carol.next(), { type: "pong", ref: 9 }, "carol got nothing from room");
    const again = await open();
    assert.equal((await again.login("ALICE")).name, "ALICE", "logout freed the name");
  });
});

Deno.test(`behaviour (${TARGET}): error codes, and the connection stays open`, async (t) => {
  await withServer(["--max-text-length", "10"], async (_server, open) => {
    const holder = await open();
    await holder.login("holder");
    const cases: [string, unknown[], unknown, string][] = [
      ["bad_json", [], "{", "bad_json"],
      ["not an object", [], "[]", "bad_request"],
      ["unknown field", [], { type: "ping", x: 1 }, "bad_request"],
      ["unknown_type", [], { type: "nope" }, "unknown_type"],
      ["not_logged_in", [], { type: "join", channel: "c" }, "not_logged_in"],
      ["invalid_name", [], { type: "login", name: "a b" }, "invalid_name"],
      ["name_taken", [], { type: "login", name: "HOLDER" }, "name_taken"],
      [
        "invalid_channel",
        [{ type: "login", name: "e1" }],
        { type: "join", channel: "a/b" },
        "invalid_channel",
      ],
      ["not_joined", [{ type: "login", name: "e2" }], {
        type: "broadcast",
        channel: "c",
        text: "x",
      }, "not_joined"],
      [
        "history needs membership",
        [{ type: "login", name: "e4" }],
        { type: "history", channel: "c" },
        "not_joined",
      ],
      ["too_large", [{ type: "login", name: "e3" }, { type: "join", channel: "c" }], {
        type: "broadcast",
        channel: "c",
        text: "x".repeat(11),
      }, "too_large"],
    ];
    for (const [name, setup, frame, code] of cases) {
      await t.step(name, async () => {
        const client = await open();
        assert.equal((await expectError(client, frame, setup)).code, code);
      });
    }
    await t.step("binary frame", async () => {
      const client = await open();
      assert.equal((await expectError(client, new Uint8Array([1, 2]))).code, "bad_request");
    });
  });
});

Deno.test(`behaviour (${TARGET}): oversize messages close with 1009, whole or in fragments`, async () => {
  await withServer(["--max-message-bytes", "1024"], async (server, open) => {
    const whole = await open();
    whole.send(JSON.stringify({ type: "ping", pad: "x".repeat(2000) }));
    assert.equal((await whole.closed).code, 1009);
    await using raw = await rawConnect(server.port);
    const chunk = new Uint8Array(600).fill(0x20);
    await raw.send(Opcode.Text, chunk, { fin: false });
    await raw.send(Opcode.Continuation, chunk, { fin: false });
    await raw.send(Opcode.Continuation, chunk, { fin: true });
    assert.equal(await withTimeout(raw.readClose(), "the 1009 close"), 1009);
    const probe = await open();
    probe.send({ type: "ping" });
    assert.equal((await probe.next()).type, "pong");
  });
});

Deno.test(`behaviour (${TARGET}): a flood is rate limited, then closed with 4429`, async () => {
  // The slowest refill there is (one a second): a busy machine spreading the 15 frames out must
  // not earn the client a sixth pong. (A spawned server's clock cannot be stopped.)
  await withServer(["--rate-limit", "1", "--rate-burst", "5"], async (_server, open) => {
    const client = await open();
    for (let i = 0; i < 15; i++) client.send({ type: "ping" });
    const seen: string[] = [];
    for (;;) {
      const frame = await client.next().catch(() => null);
      if (frame === null) break;
      seen.push(frame.type === "error" ? frame.code : frame.type);
    }
    assert.deepEqual(seen, [...Array(5).fill("pong"), ...Array(9).fill("rate_limited")]);
    assert.equal((await client.closed).code, 4429);
  });
});

Deno.test(`behaviour (${TARGET}): no login in time closes with 4408`, async () => {
  await withServer(["--login-timeout", "1"], async (_server, open) => {
    const client = await open();
    assert.equal((await withTimeout(client.closed, "the login deadline", 5000)).code, 4408);
  });
});

Deno.test(`behaviour (${TARGET}): a slow consumer is closed with 1013; the others get everything in order`, async () => {
  const args = [
    "--max-buffered-bytes",
    "262144",
    "--rate-limit",
    "100000",
    "--rate-burst",
    "100000",
  ];
  await withServer(args, async (server, open) => {
    const sender = await open();
    const fast = await open();
    await sender.login("sender");
    await fast.login("fast");
    await sender.join("firehose");
    await fast.join("firehose");
    await using slow = await rawConnect(server.port);
    await slow.send(Opcode.Text, JSON.stringify({ type: "login", name: "slow" }));
    await slow.send(Opcode.Text, JSON.stringify({ type: "join", channel: "firehose" }));
    assert.equal((await fast.nextOf("presence")).name, "slow");
    const text = "x".repeat(4000);
    let received = 0;
    let slowLeft = false;
    for (let sent = 0; sent < 4000; sent += 100) {
      for (let i = sent; i < sent + 100; i++) {
        sender.send({ type: "broadcast", channel: "firehose", text: `${i}:${text}` });
      }
      while (received < sent + 100) {
        const frame: Frame = await fast.next();
        if (frame.type === "presence") {
          assert.deepEqual([frame.event, frame.name], ["leave", "slow"]);
          slowLeft = true;
          continue;
        }
        assert.equal(
          frame.text.slice(0, frame.text.indexOf(":")),
          String(received),
          "in order, none lost",
        );
        received++;
      }
    }
    // Runtimes notice a stuck reader at their own pace (Bun sweeps backlogs a few times a second).
    if (!slowLeft) {
      const left = await withTimeout(
        fast.nextOf("presence"),
        "the slow consumer to be dropped",
        10_000,
      );
      assert.deepEqual([left.event, left.name], ["leave", "slow"]);
    }
    assert.equal(await withTimeout(slow.readClose(), "the 1013 close", 10_000), 1013);
  });
});

Deno.test(`behaviour (${TARGET}): 5 clients × 300 messages with churn lose nothing, in order`, async () => {
  await withServer(["--rate-limit", "100000", "--rate-burst", "100000"], async (_server, open) => {
    const clients = await Promise.all(Array.from({ length: 5 }, open));
    await Promise.all(clients.map((client, i) => client.login(`churn${i}`)));
    const logs: Frame[][] = clients.map(() => []);
    await Promise.all(clients.map(async (client, index) => {
      const log = logs[index];
      const until = async (match: (frame: Frame) => boolean) => {
        for (;;) {
          const frame = await client.next();
          log.push(frame);
          if (match(frame)) return;
        }
      };
      client.send({ type: "join", channel: "churn" });
      await until((f) => f.type === "joined");
      for (let seq = 0; seq < 300; seq++) {
        client.send({ type: "broadcast", channel: "churn", text: `${index}:${seq}` });
        if (seq % 50 === 49) {
          await until((f) => f.type === "message" && f.text === `${index}:${seq}`);
          if (seq < 299) {
            client.send({ type: "leave", channel: "churn" });
            client.send({ type: "join", channel: "churn" });
            await until((f) => f.type === "joined");
          }
        }
      }
    }));
    for (const [i, client] of clients.entries()) {
      client.send({ type: "ping" });
      for (;;) {
        const frame = await client.next();
        if (frame.type === "pong") break;
        logs[i].push(frame);
      }
    }
    for (const [receiver, log] of logs.entries()) {
      let joined = false;
      let last = new Map<string, number>();
      for (const frame of log) {
        if (frame.type === "joined") [joined, last] = [true, new Map()];
        else if (frame.type === "left") joined = false;
        else if (frame.type === "message") {
          assert.ok(joined, `receiver ${receiver} got a message while not joined`);
          const [from, seq] = frame.text.split(":");
          const previous = last.get(from);
          if (previous !== undefined) {
            assert.equal(Number(seq), previous + 1, `receiver ${receiver}, sender ${from}`);
          }
          last.set(from, Number(seq));
        }
      }
      assert.equal(
        log.filter((f) => f.type === "message" && f.text.startsWith(`${receiver}:`)).length,
        300,
      );
    }
  });
});

Deno.test(`behaviour (${TARGET}): the API posts into a channel and kicks a user`, async () => {
  await withServer(["--api-key", API_KEY], async (server, open) => {
    const alice = await open();
    const bob = await open();
    await alice.login("alice");
    await bob.login("bob");
    await alice.join("news");
    await bob.join("news");
    await alice.nextOf("presence");
    const headers = { authorization: `Bearer ${API_KEY}` };
    const posted = await fetch(`${server.url}/api/broadcast`, {
      method: "POST",
      headers,
      body: JSON.stringify({
        messages: [{ channel: "news", text: "one" }, { channel: "news", text: "two" }],
      }),
    });
    const body = await posted.json();
    assert.equal(posted.status, 202);
    // Stored under the ids the members get, as the channel's first and second messages.
    const [one, two] = [await bob.next(), await bob.next()];
    assert.deepEqual([one.text, two.text], ["one", "two"]);
    assert.deepEqual(body, {
      delivered: 4,
      messages: [{ id: one.id, seq: 1 }, { id: two.id, seq: 2 }],
    });
    const kicked = await fetch(`${server.url}/api/disconnect`, {
      method: "POST",
      headers,
      body: '{"name":"bob"}',
    });
    assert.equal(kicked.status, 200);
    await kicked.body?.cancel();
    assert.equal((await bob.closed).code, 4403);
    assert.deepEqual(await alice.nextOf("presence"), {
      type: "presence",
      channel: "news",
      event: "leave",
      name: "bob",
    });
  });
});

Deno.test(`behaviour (${TARGET}): native, wschat, wsify and login-chat clients share one room`, async () => {
  await withServer([], async (server, open) => {
    const native = await open();
    await native.login("nat");
    await native.join("lobby");
    await oneWorld(server.wsUrl.replace(/\/ws$/, ""), native);
  });
});

Deno.test(`behaviour (${TARGET}): wsify and channel-path echo the first subprotocol offered`, async (t) => {
  await withServer([], async (server) => {
    for (const path of ["/compat/wsify/ws", "/compat/channel-path/api/chat/room1"]) {
      await t.step(path, async () => {
        const opened = await openOffering(`ws://127.0.0.1:${server.port}${path}`, ["chat", "json"]);
        assert.equal(opened.protocol, "chat");
        const { status, headers } = await handshake(server.port, path, "a,b");
        assert.match(status, /^HTTP\/1\.1 101/);
        assert.equal(headers.get("sec-websocket-protocol"), "a");
      });
    }
  });
});

Deno.test(`behaviour (${TARGET}): wsify and channel-path read a binary frame as JSON text`, async () => {
  await withServer([], async (server) => {
    const bytes = (value: unknown) => new TextEncoder().encode(JSON.stringify(value));
    const fy = await openDialectClient(`ws://127.0.0.1:${server.port}/compat/wsify/ws`);
    const cp = await openDialectClient(`ws://127.0.0.1:${server.port}/compat/channel-path/a/b/c`);
    try {
      fy.send(bytes({ command: "join", args: { channel: "bin" } }));
      fy.send(bytes({ command: "broadcast", args: { channel: "bin", content: "binary" } }));
      assert.equal(await fy.nextText(), '"binary"');
      assert.deepEqual(await cp.next(), { type: "connection", id: "c" });
      cp.send(bytes({ type: "identity", user: "bin" }));
      assert.equal(await cp.nextText(), '{"success":true,"type":"identity"}');
    } finally {
      await Promise.all([fy.close(), cp.close()]);
    }
  });
});
