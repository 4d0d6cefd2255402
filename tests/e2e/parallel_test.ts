/**
 * `deno task start:parallel` over real sockets: two workers of `deno serve
 * --parallel` sharing one Deno KV file, as the instances of a Deno Deploy
 * app share one KV. Names stay unique across workers, messages and
 * presence cross them, a channel's history is one, SIGTERM closes every
 * socket of every worker with 1012 and the process exits 0 within the
 * grace period. Deno only: the Bun targets have no `deno serve`.
 */
import assert from "node:assert/strict";
import { type Frame, openClient, type TestClient } from "../_helpers.ts";
import { SHUTDOWN_GRACE_MS } from "../../lib/runtime/start.ts";
import { parallelTask, runParallel, startParallel } from "./_parallel.ts";
import { TARGET } from "./_server.ts";
import { assertContinuous, seen, watch } from "./_history.ts";

const ignore = TARGET !== "deno";

/** Enough for tests that open many connections from one address and send in bursts. */
const GENEROUS = ["--connect-rate", "1000", "--rate-limit", "10000", "--rate-burst", "10000"];

/** Logs `client` in as `name` and joins `channel`; the joined frame. */
async function enter(client: TestClient, name: string, channel: string): Promise<Frame> {
  assert.equal((await client.login(name)).name, name);
  return await client.join(channel);
}

Deno.test({
  name: "parallel: the task runs serve.ts under deno serve --parallel on one KV file",
  ignore,
  async fn() {
    const task = await parallelTask();
    assert.deepEqual(task.slice(0, 3), ["deno", "serve", "--parallel"]);
    const module = task.indexOf("serve.ts");
    assert.deepEqual(task.slice(module + 1, module + 3), ["--engine", "kv"]);
    assert.equal(task[task.indexOf("--kv-path") + 1], "./data/kv.sqlite3");
  },
});

Deno.test({
  name: "parallel: a name raced from both workers is won by exactly one, every round",
  ignore,
  async fn() {
    await using server = await startParallel({ args: GENEROUS });
    const [first, second] = server.nodes;
    const one = await server.clientOn(first);
    const two = await server.clientOn(second);
    for (let round = 0; round < 50; round++) {
      const name = `racer${round}`;
      one.send({ type: "login", name, ref: round });
      two.send({ type: "login", name, ref: round });
      const answers = [await one.next(), await two.next()];
      const winners = answers.filter((frame) => frame.type === "welcome");
      assert.equal(winners.length, 1, `round ${round}: ${JSON.stringify(answers)}`);
      const refused = answers.find((frame) => frame.type === "error");
      assert.equal(refused?.code, "name_taken", `round ${round}: ${JSON.stringify(answers)}`);
      // Both end the round logged out; the loser logs in once under a name of its own, as
      // refused logins in a row would close its connection.
      const [winner, loser] = answers[0].type === "welcome" ? [one, two] : [two, one];
      assert.equal((await loser.login(`${name}b`)).name, `${name}b`);
      for (const client of [winner, loser]) {
        client.send({ type: "logout", ref: round });
        assert.equal((await client.next()).type, "logged_out");
      }
    }
  },
});

Deno.test({
  name: "parallel: names, presence and messages cross workers",
  ignore,
  async fn() {
    await using server = await startParallel({ args: GENEROUS });
    const [first, second] = server.nodes;
    const alice = await server.clientOn(first);
    await enter(alice, "alice", "room");
    // A name held on one worker is taken on the other.
    const impostor = await server.clientOn(second);
    impostor.send({ type: "login", name: "Alice", ref: 1 });
    const refused = await impostor.next();
    assert.deepEqual([refused.type, refused.code], ["error", "name_taken"]);
    const bob = await server.clientOn(second);
    await enter(bob, "bob", "room");
    assert.deepEqual(
      await alice.nextOf("presence"),
      { type: "presence", channel: "room", event: "join", name: "bob" },
      "bob's join on the other worker reaches alice",
    );
    bob.send({ type: "broadcast", channel: "room", text: "hi from bob" });
    const heard = await alice.nextOf("message");
    assert.deepEqual([heard.from, heard.text, heard.seq], ["bob", "hi from bob", 1]);
    alice.send({ type: "broadcast", channel: "room", text: "hi from alice" });
    let back = await bob.nextOf("message");
    if (back.from === "bob") back = await bob.nextOf("message"); // bob's own, echoed
    assert.deepEqual([back.from, back.text, back.seq], ["alice", "hi from alice", 2]);
    await alice.close();
    const left = await bob.nextOf("presence");
    assert.deepEqual([left.event, left.name], ["leave", "alice"]);
  },
});

Deno.test({
  name: "parallel: a channel's history is one: one seq order on both workers, since on another",
  ignore,
  async fn() {
    await using server = await startParallel({ args: [...GENEROUS, "--history-limit", "1000"] });
    const [first, second] = server.nodes;
    const PER_SENDER = 40;
    // Two members on each worker record what they receive; two senders, one per worker.
    const members = await Promise.all(
      [first, first, second, second].map(async (node, i) => {
        const client = await server.clientOn(node);
        await enter(client, `member${i}`, "room");
        return client;
      }),
    );
    const senders = await Promise.all([first, second].map(async (node, i) => {
      const client = await server.clientOn(node);
      await enter(client, `sender${i}`, "room");
      return client;
    }));
    // The member that leaves early, on the first worker, and recovers on the second.
    const leaver = await server.clientOn(first);
    const joined = await enter(leaver, "leaver", "room");
    const total = 2 * PER_SENDER;
    const recordings = members.map((client) =>
      watch(client, "room", (received) => received.length === total)
    );
    const early = watch(leaver, "room", (received) => received.length === PER_SENDER / 2);
    for (let n = 1; n <= PER_SENDER; n++) {
      senders.forEach((sender, i) =>
        sender.send({ type: "broadcast", channel: "room", text: `sender${i} #${n}` })
      );
    }
    const seen0 = await early;
    await leaver.close();
    const received = await Promise.all(recordings);
    received.forEach((messages, i) => assertContinuous(messages, `member${i}`));
    for (const messages of received.slice(1)) {
      assert.deepEqual(messages, received[0], "every member saw one order");
    }
    for (let i = 0; i < 2; i++) {
      const texts = received[0].filter((m) => m.from === `sender${i}`).map((m) => m.text);
      assert.deepEqual(texts, Array.from({ length: PER_SENDER }, (_, n) => `sender${i} #${n + 1}`));
    }
    // The leaver comes back on the other worker and recovers exactly what it missed.
    const back = await server.clientOn(second);
    // Another name: the leaver's is freed in the background, maybe not yet.
    assert.equal((await back.login("returner")).name, "returner");
    const last = seen0.at(-1)!;
    back.send({ type: "join", channel: "room", since: { epoch: joined.epoch, seq: last.seq } });
    const recovered = await back.nextOf("joined");
    assert.equal(recovered.recovered, true);
    assert.equal(recovered.epoch, joined.epoch);
    assert.deepEqual(
      recovered.messages.map(seen),
      received[0].slice(last.seq),
      "every message after the last one seen, once",
    );
  },
});

Deno.test({
  name:
    "parallel: SIGTERM closes every socket of every worker with 1012, then exits 0 in the grace",
  ignore,
  async fn() {
    await using server = await startParallel({ args: GENEROUS });
    for (const [w, node] of server.nodes.entries()) {
      for (let i = 0; i < 3; i++) await enter(await server.clientOn(node), `user${w}x${i}`, "room");
    }
    const { code, ms } = await server.signal("SIGTERM");
    // Connections that landed on a worker other than the one asked for stay open too.
    const everyone = server.clients;
    const closes = await Promise.all(everyone.map((client) => client.closed));
    assert.deepEqual(closes.map((close) => close.code), everyone.map(() => 1012));
    assert.equal(code, 0, server.output());
    const output = server.output();
    assert.equal(
      output.match(/SIGTERM: closing \d+ connections/g)?.length,
      server.nodes.length,
      output,
    );
    assert.doesNotMatch(output, /grace period ran out/, "every worker finished in time");
    assert.ok(ms < SHUTDOWN_GRACE_MS, `exited ${Math.round(ms)} ms after SIGTERM`);
    console.log(
      `deno serve --parallel (2 workers, 6 clients) exited ${Math.round(ms)} ms after SIGTERM`,
    );
  },
});

Deno.test({
  name: "parallel: what deno serve owns is refused with one line, exit 2",
  ignore,
  async fn(t) {
    for (
      const [args, pattern] of [
        [["--port", "9000"], /Under deno serve, --port is not read: give deno serve its --port/],
        [["--hostname", "127.0.0.1"], /--hostname is not read: give deno serve its --host/],
        [["--dialect", "wschat=9001"], /Under deno serve, --dialect cannot be served/],
      ] as const
    ) {
      await t.step(args.join(" "), async () => {
        const { code, stderr } = await runParallel(args);
        assert.equal(code, 2, stderr);
        assert.match(stderr, pattern);
      });
    }
  },
});

Deno.test({
  name:
    "parallel: SIGTERM with 300 users: every name is free in KV once deno serve has exited, within the grace",
  ignore,
  async fn() {
    const users = 300;
    await using server = await startParallel({
      args: [...GENEROUS, "--max-connections-per-ip", String(users)],
    });
    const clients: TestClient[] = [];
    for (let at = 0; at < users; at += 50) {
      clients.push(
        ...await Promise.all(Array.from({ length: 50 }, async (_, i) => {
          const client = await openClient(server.wsUrl);
          assert.equal((await client.login(`user${at + i}`)).name, `user${at + i}`);
          return client;
        })),
      );
    }
    const { code, ms } = await server.signal("SIGTERM");
    const closes = await Promise.all(clients.map((client) => client.closed));
    assert.deepEqual(closes.map((close) => close.code), clients.map(() => 1012));
    assert.equal(code, 0, server.output());
    assert.doesNotMatch(server.output(), /grace period ran out/);
    // Each worker released its users' names as it stopped: a restarted server gives them out.
    using kv = await Deno.openKv(server.kvPath);
    const held = [];
    for await (const entry of kv.list({ prefix: ["hubbub", "name"] })) held.push(entry.key[2]);
    assert.deepEqual(held, []);
    assert.ok(ms < SHUTDOWN_GRACE_MS, `exited ${Math.round(ms)} ms after SIGTERM`);
    console.log(
      `deno serve --parallel (2 workers, ${users} users) exited ${Math.round(ms)} ms after SIGTERM`,
    );
  },
});
