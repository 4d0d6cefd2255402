/**
 * Cluster behaviour (lib/cluster/cluster.ts over lib/cluster/engine.ts) with two or three
 * nodes in one process, run on each engine of `_engines.ts`: the memory
 * cluster (the same code paths as with Redis, minus the network) and Deno KV
 * (one store file, a handle per node, as the workers of `deno serve
 * --parallel` share it). `tests/e2e/cluster_test.ts` runs separate processes
 * against a real Redis; `kv_instances_test.ts` whole instances in workers.
 */
import assert from "node:assert/strict";
import type { Dialect } from "../../lib/dialects/dialect.ts";
import { loginChat } from "../../lib/dialects/login_chat.ts";
import { CloseCode } from "../../lib/core/protocol.ts";
import { type Frame, startServer, type TestServer, withTimeout } from "../_helpers.ts";
import { openDialectClient } from "../dialects/_client.ts";
import { ENGINE_KINDS, type EngineKind } from "./_engines.ts";

const API_KEY = "api-key-0123456789abcdef";

/** `count` nodes on one cluster of `kind`, each knowing the others; disposed with the cluster. */
async function startNodes(
  kind: EngineKind,
  count: number,
  overrides = {},
  dialects: readonly Dialect[] = [],
) {
  const group = await kind.group();
  const nodes: TestServer[] = [];
  for (let i = 0; i < count; i++) {
    nodes.push(
      startServer({ apiKey: API_KEY, ...overrides }, {
        engine: await group.engine(),
        nodeId: `node${i}`,
        dialects,
      }),
    );
  }
  // Every node has heard every other's hello.
  await group.settled();
  return Object.assign(nodes, {
    group,
    /** Every node has seen what the others did so far (see `EngineGroup.settled`). */
    settled: () => group.settled(),
    async [Symbol.asyncDispose]() {
      for (const node of nodes) await node[Symbol.asyncDispose]();
      await group[Symbol.asyncDispose]();
    },
  });
}

async function metricsOf(node: TestServer): Promise<string> {
  return await (await fetch(`${node.url}/metrics`)).text();
}

for (const kind of ENGINE_KINDS) {
  const on = `(${kind.name})`;

  Deno.test(`cluster ${on}: messages and presence cross nodes; joined lists every node's members`, async () => {
    await using nodes = await startNodes(kind, 3);
    const alice = await nodes[0].user("alice", "lobby");
    // Member lists are each node's view: the others' joins have reached it.
    await nodes.settled();
    const bob = await nodes[1].user("bob");
    const joined = await bob.join("lobby");
    assert.deepEqual(joined.members, ["alice", "bob"]);
    assert.deepEqual(await alice.next(), {
      type: "presence",
      channel: "lobby",
      event: "join",
      name: "bob",
    });
    await nodes.settled();
    const carol = await nodes[2].user("carol");
    assert.deepEqual((await carol.join("lobby")).members, ["alice", "bob", "carol"]);
    await alice.nextOf("presence");
    await bob.nextOf("presence");

    bob.send({ type: "broadcast", channel: "lobby", text: "hi from node 1" });
    for (const client of [alice, carol]) {
      const message = await client.nextOf("message");
      assert.equal(message.from, "bob");
      assert.equal(message.text, "hi from node 1");
    }
    // The sender gets its own message once, from its own node.
    assert.equal((await bob.nextOf("message")).text, "hi from node 1");

    carol.send({ type: "leave", channel: "lobby" });
    await carol.nextOf("left");
    for (const client of [alice, bob]) {
      assert.deepEqual(await client.nextOf("presence"), {
        type: "presence",
        channel: "lobby",
        event: "leave",
        name: "carol",
      });
    }
    const listed = await (await fetch(`${nodes[2].url}/api/channels/lobby`, {
      headers: { authorization: `Bearer ${API_KEY}` },
    })).json();
    assert.deepEqual(listed, { name: "lobby", members: ["alice", "bob"] });
  });

  Deno.test(`cluster ${on}: a name held on one node is taken on every other`, async () => {
    await using nodes = await startNodes(kind, 2);
    await nodes[0].user("alice");
    const other = await nodes[1].connect();
    other.send({ type: "login", name: "ALICE", ref: 1 });
    const refused = await other.next();
    assert.equal(refused.type, "error");
    assert.equal(refused.code, "name_taken");
    assert.equal(refused.ref, 1);
    // Free once its holder logs out (and the release has reached the store).
    const holder = await nodes[0].connect();
    await holder.login("dora");
    holder.send({ type: "logout" });
    await holder.nextOf("logged_out");
    await nodes.settled();
    assert.equal((await other.login("dora")).name, "dora");
  });

  Deno.test(`cluster ${on}: one name raced from two nodes: exactly one wins, 100 times out of 100`, async () => {
    await using nodes = await startNodes(kind, 2, { connectRate: 10_000 });
    for (let round = 0; round < 100; round++) {
      const [a, b] = await Promise.all([nodes[0].connect(), nodes[1].connect()]);
      const name = `racer${round}`;
      a.send({ type: "login", name });
      b.send({ type: "login", name });
      const replies = await Promise.all([a.next(), b.next()]);
      const winners = replies.filter((reply) => reply.type === "welcome");
      assert.equal(winners.length, 1, `round ${round}: ${JSON.stringify(replies)}`);
      assert.equal(replies.find((reply) => reply.type === "error")?.code, "name_taken");
      await Promise.all([a.close(), b.close()]);
    }
  });

  Deno.test(`cluster ${on}: POST /api/broadcast on one node reaches members on every node`, async () => {
    await using nodes = await startNodes(kind, 2);
    const alice = await nodes[0].user("alice", "news");
    await nodes.settled();
    const bob = await nodes[1].user("bob", "news");
    await alice.nextOf("presence");
    const response = await fetch(`${nodes[1].url}/api/broadcast`, {
      method: "POST",
      headers: { authorization: `Bearer ${API_KEY}` },
      body: JSON.stringify({ channel: "news", text: "to all nodes" }),
    });
    assert.equal(response.status, 202);
    assert.equal((await response.json()).delivered, 2);
    for (const client of [alice, bob]) {
      const message: Frame = await client.nextOf("message");
      assert.equal(message.text, "to all nodes");
      assert.equal(message.from, "server");
    }
  });

  Deno.test(`cluster ${on}: a kick on one node removes the holder on another`, async () => {
    await using nodes = await startNodes(kind, 2);
    const alice = await nodes[0].user("alice");
    const response = await fetch(`${nodes[1].url}/api/disconnect`, {
      method: "POST",
      headers: { authorization: `Bearer ${API_KEY}` },
      body: JSON.stringify({ name: "alice" }),
    });
    // This node does not hold the name: it says so, and asks the others to act.
    assert.equal(response.status, 404);
    await response.body?.cancel();
    assert.equal((await withTimeout(alice.closed, "the kick")).code, CloseCode.Kicked);
  });

  Deno.test(`cluster ${on}: a node that leaves takes its members with it; the others hear them go`, async () => {
    await using nodes = await startNodes(kind, 2);
    const alice = await nodes[0].user("alice", "lobby");
    await nodes[1].user("bob", "lobby");
    await alice.nextOf("presence");
    await nodes[1][Symbol.asyncDispose]();
    assert.deepEqual(await alice.nextOf("presence"), {
      type: "presence",
      channel: "lobby",
      event: "leave",
      name: "bob",
    });
    // bob's name is free on the cluster again (a node's stop waits for its releases).
    const again = await nodes[0].connect();
    assert.equal((await again.login("bob")).name, "bob");
    const metrics = await metricsOf(nodes[0]);
    assert.match(metrics, /^hubbub_cluster_up 1$/m);
    assert.match(metrics, /^hubbub_cluster_nodes 0$/m);
    assert.match(metrics, /^hubbub_cluster_claims_total\{outcome="claimed"\} 2$/m);
  });

  Deno.test(`cluster ${on}: a dialect login of a name held on another node is closed with 4409`, async () => {
    await using nodes = await startNodes(kind, 2, {}, [loginChat]);
    await nodes[0].user("alice");
    const url = `${nodes[1].url.replace("http", "ws")}/compat/login-chat/`;
    const client = await openDialectClient(url);
    // Dialect logins answer at once, as their originals do; the cluster check follows.
    client.send({ type: "login", username: "Alice" });
    assert.equal((await client.next()).type, "logged_in");
    assert.equal((await withTimeout(client.closed, "the conflict close")).code, CloseCode.Conflict);
    // The name stays with its first holder.
    const other = await nodes[1].connect();
    other.send({ type: "login", name: "alice" });
    assert.equal((await other.next()).code, "name_taken");
    assert.match(await metricsOf(nodes[1]), /^hubbub_cluster_names_lost_total 1$/m);
  });

  Deno.test(`cluster ${on}: garbage on the bus is counted and ignored; the node keeps serving`, async () => {
    await using nodes = await startNodes(kind, 1);
    const [node] = nodes;
    const rogue = await nodes.group.engine();
    rogue.start({ message() {}, up() {}, down() {} });
    await nodes.settled();
    const alice = await node.user("alice", "lobby");
    const garbage = [
      "not json",
      "[]",
      JSON.stringify({ n: "x", m: [{ t: "pub", c: "lobby" }] }),
      JSON.stringify({ n: "x", m: [{ t: "nope" }] }),
      JSON.stringify({ n: "", m: [] }),
      JSON.stringify({ n: "x", m: [{ t: "join", c: "lobby", s: -1, m: "eve" }] }),
    ];
    for (const payload of garbage) assert.equal(rogue.publish(payload), true);
    await nodes.settled();
    alice.send({ type: "broadcast", channel: "lobby", text: "still fine" });
    assert.equal((await alice.nextOf("message")).text, "still fine");
    assert.match(await metricsOf(node), /^hubbub_cluster_bad_payloads_total 6$/m);
  });
}

Deno.test("cluster: a lone node shows no cluster metrics", async () => {
  await using server = startServer();
  const metrics = await metricsOf(server);
  assert.doesNotMatch(metrics, /hubbub_cluster/);
});

for (const kind of ENGINE_KINDS) {
  const on = `(${kind.name})`;

  Deno.test(`cluster ${on}: a login lost to a look-alike on its own node frees its claim`, async () => {
    await using nodes = await startNodes(kind, 2, { connectRate: 10_000 });
    for (let round = 0; round < 5; round++) {
      const name = `Tom${round}`;
      const lookAlike = `\u0422om${round}`; // a Cyrillic Т: another key, the same skeleton
      const [a, b] = await Promise.all([nodes[0].connect(), nodes[0].connect()]);
      a.send({ type: "login", name: lookAlike });
      b.send({ type: "login", name });
      const replies = await Promise.all([a.next(), b.next()]);
      assert.equal(replies.filter((reply) => reply.type === "welcome").length, 1);
      // The winner lets go by logging out (its reply says the server has released the name);
      // the loser holds nothing, which is what this test is about.
      const winner = replies[0].type === "welcome" ? a : b;
      winner.send({ type: "logout" });
      await winner.nextOf("logged_out");
      await Promise.all([a.close(), b.close()]);
      await nodes.settled();
      // Nobody holds either name now, so both are free on every node.
      for (const wanted of [name, lookAlike]) {
        const other = await nodes[1].connect();
        assert.equal((await other.login(wanted)).type, "welcome", `round ${round}: ${wanted}`);
        await other.close();
        await nodes.settled();
      }
    }
  });

  Deno.test(`cluster ${on}: a node forgets other nodes' sessions once they are in no channel`, async () => {
    await using nodes = await startNodes(kind, 2, { connectRate: 10_000 });
    const gauge = async () =>
      Number(/^hubbub_cluster_remote_sessions (\d+)$/m.exec(await metricsOf(nodes[0]))?.[1]);
    // On node 1 too: its presence says when node 1 has handled each close.
    const watcher = await nodes[1].user("watcher", "news");
    const clients = [];
    for (let i = 0; i < 10; i++) {
      clients.push(await nodes[1].user(`churn${i}`, "lobby", "news"));
      await watcher.nextOf("presence");
    }
    await nodes.settled();
    assert.equal(await gauge(), 11);
    for (const client of clients.slice(0, 5)) {
      client.send({ type: "leave", channel: "lobby" });
      client.send({ type: "leave", channel: "news" });
      await client.nextOf("left");
      await client.nextOf("left");
      await watcher.nextOf("presence");
    }
    for (const client of clients.slice(5)) {
      await client.close();
      await watcher.nextOf("presence");
    }
    await nodes.settled();
    assert.equal(await gauge(), 1, "the watcher alone");
  });
}
