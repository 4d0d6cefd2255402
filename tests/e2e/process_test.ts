/**
 * The real entry point as a user runs it: `main.ts` in its own process with
 * only net and env permissions (no --allow-read, as in a compiled binary).
 */
import assert from "node:assert/strict";
import { openClient, withTimeout } from "../_helpers.ts";
import { runHubbub, spawnServer, TARGET } from "./_server.ts";

Deno.test("process: serves the client and chat without read permission; SIGTERM closes with 1012", async () => {
  // On Deno, the default data directory, which this process may neither read nor write. Bun and
  // binaries have no permissions to withhold: a directory nobody can create fails the same way.
  const dataDir = TARGET === "deno" ? "./data" : "/dev/null/hubbub-data";
  await using server = await spawnServer({ args: ["--data-dir", dataDir] });
  const page = await fetch(`${server.url}/`);
  assert.equal(page.status, 200);
  assert.match(await page.text(), /<html/i);
  const client = await openClient(server.wsUrl);
  assert.equal(client.hello.type, "hello");
  await client.login("procuser");
  // History falls back to memory and still works: stored, numbered, shown to a later join.
  await client.join("room");
  client.send({ type: "broadcast", channel: "room", text: "kept in memory", ref: "b" });
  const message = await client.nextOf("message");
  assert.equal(message.seq, 1);
  assert.deepEqual(await client.next(), {
    type: "sent",
    channel: "room",
    id: message.id,
    seq: 1,
    ref: "b",
  });
  client.send({ type: "join", channel: "room", history: 5 });
  assert.deepEqual((await client.nextOf("joined")).messages, [message]);
  server.child.kill("SIGTERM");
  const closed = await client.closed;
  assert.equal(closed.code, 1012);
  const status = await server.child.status;
  assert.equal(status.code, 0);
  assert.match(await server.stdout, /SIGTERM/);
  assert.match(await server.stdout, /listening on .* store=memory/);
  const stderr = await server.stderr;
  // One error line says why history will not survive a restart; nothing crashed or leaked.
  assert.match(
    stderr,
    new RegExp(
      `ERROR history: cannot use the data directory; keeping history in memory only data_dir=${dataDir}`,
    ),
  );
  assert.equal(stderr.trim().split("\n").length, 1, stderr);
  assert.doesNotMatch(stderr, /PermissionDenied|NotCapable/);
});

Deno.test("process: --help lists the options and exits 0", async () => {
  const output = await runHubbub(["--help"]);
  assert.equal(output.code, 0);
  const text = output.stdout;
  for (
    const flag of ["--port", "--hostname", "--allowed-origins", "--api-key", "--max-message-bytes"]
  ) {
    assert.ok(text.includes(flag), flag);
  }
});

Deno.test("process: bad configuration names the option and exits 2", async (t) => {
  const cases: [string[], Record<string, string>, RegExp][] = [
    [["--port", "eighty"], {}, /--port/],
    [[], { HUBBUB_MAX_MESSAGE_BYTES: "lots" }, /HUBBUB_MAX_MESSAGE_BYTES/],
    [["--nope"], {}, /--nope/],
  ];
  for (const [args, env, pattern] of cases) {
    await t.step(`${args.join(" ")} ${JSON.stringify(env)}`, async () => {
      const output = await runHubbub(args, env);
      assert.equal(output.code, 2);
      assert.match(output.stderr, pattern);
    });
  }
});

Deno.test("process: SIGTERM with 100 clients connected closes all with 1012 and exits 0 within 5 s", async () => {
  await using server = await spawnServer({ args: ["--connect-rate", "1000"] });
  const clients = await Promise.all(Array.from({ length: 100 }, () => openClient(server.wsUrl)));
  await Promise.all(clients.map(async (client, i) => {
    await client.login(`user${i}`);
    await client.join("everyone");
  }));
  const started = performance.now();
  server.child.kill("SIGTERM");
  const codes = await Promise.all(clients.map(async (client) => (await client.closed).code));
  const status = await server.child.status;
  const elapsed = performance.now() - started;
  assert.deepEqual(new Set(codes), new Set([1012]));
  assert.equal(status.code, 0);
  assert.ok(elapsed < 5000, `took ${elapsed} ms`);
  // Nobody is told of 99 others leaving: shutdown sends no presence storm.
  assert.ok(
    clients.every((client) =>
      client.buffered.every((frame) => frame.type !== "presence" || frame.event !== "leave")
    ),
  );
});

Deno.test({
  name: "process: out of file descriptors, it keeps its sockets and accepts again once some close",
  // This pins the Deno adapter's listener recovery; Bun's uSockets keeps accepting by itself.
  ignore: TARGET !== "deno",
}, async () => {
  await using server = await spawnServer({
    args: ["--connect-rate", "10000", "--max-connections-per-ip", "10000"],
    maxFiles: 160,
  });
  const open: WebSocket[] = [];
  let refused = 0;
  // Open sockets until the descriptors run out: new connections then fail.
  while (refused < 5 && open.length < 400) {
    const socket = new WebSocket(server.wsUrl);
    const ok = await new Promise<boolean>((resolve) => {
      socket.onopen = () => resolve(true);
      socket.onerror = () => resolve(false);
    });
    if (ok) open.push(socket);
    else refused++;
  }
  assert.ok(open.length > 20 && open.length < 400, `opened ${open.length}`);
  const survivor = open.pop()!;
  await Promise.all(open.map((socket) => {
    const closed = new Promise((resolve) => socket.onclose = resolve);
    socket.close();
    return closed;
  }));
  // The listener comes back (it retries every second): a new client can chat.
  const client = await withTimeout(
    (async () => {
      for (;;) {
        try {
          return await openClient(server.wsUrl);
        } catch {
          await new Promise((resolve) => setTimeout(resolve, 200));
        }
      }
    })(),
    "the listener to accept again",
    10_000,
  );
  await client.login("afterwards");
  await client.close();
  // Sockets opened before the failure survive, and are still served: a ping gets its pong.
  const pong = new Promise<void>((resolve) => {
    survivor.onmessage = (event) => JSON.parse(event.data).type === "pong" && resolve();
  });
  survivor.send(JSON.stringify({ type: "ping" }));
  await withTimeout(pong, "the survivor's pong");
  const closed = new Promise((resolve) => survivor.onclose = resolve);
  survivor.close();
  await closed;
  const metrics = await (await fetch(`${server.url}/metrics`)).text();
  assert.match(metrics, /hubbub_accept_errors_total [1-9]/);
  assert.match(await (server.stop(), server.stderr), /listener failed/);
});
