/**
 * A cluster as operators run it: two or three hubbub processes on their own
 * ports sharing a real Redis that the test starts on a free port. Messages,
 * presence and member lists cross nodes; names are unique cluster-wide; a
 * node killed with SIGKILL frees its names within the lease; a Redis restart
 * stops new logins but not local traffic, and the cluster heals after it,
 * giving out no name until every node has put its own back.
 */
import assert from "node:assert/strict";
import { openClient, type TestClient, waitFor, withTimeout } from "../_helpers.ts";
import { startRedis, type TestRedis } from "./_redis.ts";
import { metric, type SpawnedServer, spawnServer, waitForMetric } from "./_server.ts";

const API_KEY = "api-key-0123456789abcdef";
/** Short, so that expiry is quick to observe; the default is 30 s. */
const LEASE_SECONDS = 2;
/** The Redis key of bob's claim (lib/cluster/engine_redis.ts: `<prefix>:name:<folded name>`). */
const BOB_KEY = "hubbub:name:bob";

/** Starts `count` nodes on `redis` and waits until each sees all the others. */
async function startNodes(redis: TestRedis, count: number): Promise<SpawnedServer[]> {
  const nodes = await Promise.all(Array.from({ length: count }, () =>
    spawnServer({
      args: [
        ...["--redis-url", redis.url, "--name-lease", String(LEASE_SECONDS)],
        ...["--api-key", API_KEY, "--connect-rate", "1000"],
        ...["--rate-limit", "1000", "--rate-burst", "1000"],
      ],
    })));
  for (const node of nodes) await waitForMetric(node, "hubbub_cluster_nodes", count - 1);
  return nodes;
}

async function stopAll(nodes: SpawnedServer[]) {
  await Promise.all(nodes.map((node) => node.stop()));
}

async function members(node: SpawnedServer, channel: string): Promise<string[]> {
  const response = await fetch(`${node.url}/api/channels/${channel}`, {
    headers: { authorization: `Bearer ${API_KEY}` },
  });
  if (response.status === 404) {
    await response.body?.cancel();
    return [];
  }
  return (await response.json()).members;
}

/** A logged-in client in `channels`. */
async function user(node: SpawnedServer, name: string, ...channels: string[]) {
  const client = await openClient(node.wsUrl);
  await client.login(name);
  for (const channel of channels) await client.join(channel);
  return client;
}

async function closeAll(clients: TestClient[]) {
  await Promise.all(clients.map((client) => client.close()));
}

Deno.test("cluster e2e: messages, presence and member lists cross three nodes", async () => {
  await using redis = await startRedis();
  const nodes = await startNodes(redis, 3);
  const clients: TestClient[] = [];
  try {
    const alice = await user(nodes[0], "alice", "lobby");
    clients.push(alice);
    await waitFor(
      "alice listed on node 2",
      async () => (await members(nodes[1], "lobby")).includes("alice"),
    );
    const bob = await user(nodes[1], "bob");
    clients.push(bob);
    assert.deepEqual((await bob.join("lobby")).members, ["alice", "bob"]);
    assert.equal((await alice.nextOf("presence")).name, "bob");
    const carol = await user(nodes[2], "carol");
    clients.push(carol);
    await waitFor(
      "bob listed on node 3",
      async () => (await members(nodes[2], "lobby")).length === 2,
    );
    assert.deepEqual((await carol.join("lobby")).members, ["alice", "bob", "carol"]);

    carol.send({ type: "broadcast", channel: "lobby", text: "from node 3" });
    for (const client of [alice, bob, carol]) {
      assert.equal((await client.nextOf("message")).text, "from node 3");
    }
    const response = await fetch(`${nodes[0].url}/api/broadcast`, {
      method: "POST",
      headers: { authorization: `Bearer ${API_KEY}` },
      body: JSON.stringify({ channel: "lobby", text: "from the API on node 1" }),
    });
    assert.equal(response.status, 202);
    await response.body?.cancel();
    for (const client of [alice, bob, carol]) {
      assert.equal((await client.nextOf("message")).text, "from the API on node 1");
    }
    // Per-sender order holds across nodes.
    for (let i = 0; i < 50; i++) bob.send({ type: "broadcast", channel: "lobby", text: `${i}` });
    for (const client of [alice, carol]) {
      for (let i = 0; i < 50; i++) assert.equal((await client.nextOf("message")).text, `${i}`);
    }
  } finally {
    await closeAll(clients);
    await stopAll(nodes);
  }
});

Deno.test("cluster e2e: one name raced from two nodes: exactly one wins, 100 times out of 100", async () => {
  await using redis = await startRedis();
  const nodes = await startNodes(redis, 2);
  try {
    for (let round = 0; round < 100; round++) {
      const [a, b] = await Promise.all([openClient(nodes[0].wsUrl), openClient(nodes[1].wsUrl)]);
      const name = `racer${round}`;
      a.send({ type: "login", name });
      b.send({ type: "login", name });
      const replies = await Promise.all([a.next(), b.next()]);
      const outcomes = replies.map((reply) => reply.type === "welcome" ? "welcome" : reply.code);
      assert.deepEqual(outcomes.toSorted(), ["name_taken", "welcome"], `round ${round}`);
      await closeAll([a, b]);
    }
  } finally {
    await stopAll(nodes);
  }
});

Deno.test("cluster e2e: kill -9 one node: its names free within the lease, the others carry on", async () => {
  await using redis = await startRedis();
  const nodes = await startNodes(redis, 3);
  const clients: TestClient[] = [];
  try {
    const alice = await user(nodes[0], "alice", "lobby");
    const carol = await user(nodes[2], "carol", "lobby");
    clients.push(alice, carol);
    await alice.nextOf("presence");
    await waitFor(
      "carol listed on node 2",
      async () => (await members(nodes[1], "lobby")).includes("carol"),
    );
    const bob = await user(nodes[1], "bob", "lobby");
    clients.push(bob);
    for (const client of [alice, carol]) {
      assert.equal((await client.nextOf("presence")).name, "bob");
    }

    // Redis tells when bob's claim expires: an event, where a clock would race a busy machine.
    using redisEvents = await redis.connect();
    using redisCommands = await redis.connect();
    await redisCommands.command("CONFIG", "SET", "notify-keyspace-events", "Ex");
    assert.deepEqual(await redisEvents.command("SUBSCRIBE", "__keyevent@0__:expired"), [
      "subscribe",
      "__keyevent@0__:expired",
      1,
    ]);
    nodes[1].child.kill("SIGKILL");
    // bob's name frees within the lease: its claim, renewed no more, has at most that long to live.
    const ttl = await redisCommands.command("PTTL", BOB_KEY);
    assert.ok(typeof ttl === "number" && ttl > 0 && ttl <= LEASE_SECONDS * 1000, `PTTL ${ttl}`);
    await bob.closed;
    // The others hear bob leave once node 2 has been silent for a lease.
    for (const client of [alice, carol]) {
      const leave = await client.nextOf("presence");
      assert.deepEqual([leave.event, leave.name], ["leave", "bob"]);
    }
    // Nothing else holds the name once the claim is gone: the first login takes it.
    assert.deepEqual(
      await withTimeout(redisEvents.next(), "bob's claim to expire"),
      ["message", "__keyevent@0__:expired", BOB_KEY],
    );
    const again = await openClient(nodes[0].wsUrl);
    clients.push(again);
    again.send({ type: "login", name: "bob" });
    assert.deepEqual(await again.next(), { type: "welcome", name: "bob" });
    // The survivors still talk.
    carol.send({ type: "broadcast", channel: "lobby", text: "still here" });
    assert.equal((await alice.nextOf("message")).text, "still here");
  } finally {
    await closeAll(clients);
    await stopAll(nodes);
  }
});

Deno.test("cluster e2e: Redis restarted mid-test: logins fail clearly, local traffic flows, then all resumes", async () => {
  await using redis = await startRedis();
  const nodes = await startNodes(redis, 2);
  const clients: TestClient[] = [];
  try {
    const alice = await user(nodes[0], "alice", "lobby");
    const dave = await user(nodes[0], "dave", "lobby");
    clients.push(alice, dave);
    await alice.nextOf("presence");
    const bob = await user(nodes[1], "bob", "lobby");
    clients.push(bob);
    await alice.nextOf("presence");
    await dave.nextOf("presence");

    await redis.stop();
    await waitForMetric(nodes[0], "hubbub_cluster_up", 0);
    // A new login cannot be checked against the other nodes: refused, with a reason.
    const late = await openClient(nodes[0].wsUrl);
    clients.push(late);
    late.send({ type: "login", name: "erin", ref: 7 });
    const refused = await late.next();
    assert.deepEqual([refused.type, refused.code, refused.ref], ["error", "unavailable", 7]);
    // Those already here keep talking on their node.
    alice.send({ type: "broadcast", channel: "lobby", text: "during the outage" });
    for (const client of [alice, dave]) {
      assert.equal((await client.nextOf("message")).text, "during the outage");
    }
    assert.equal(await metric(nodes[0], "hubbub_cluster_disconnects_total"), 1);

    await redis.start();
    for (const node of nodes) await waitForMetric(node, "hubbub_cluster_up", 1, 10_000);
    // The restarted Redis is empty: the nodes claim their names again.
    await waitFor("alice's name re-asserted", async () => {
      const probe = await openClient(nodes[1].wsUrl);
      probe.send({ type: "login", name: "alice" });
      const reply = await probe.next();
      await probe.close();
      return reply.code === "name_taken";
    }, 10_000);
    bob.send({ type: "broadcast", channel: "lobby", text: "after the restart" });
    for (const client of [alice, dave]) {
      assert.equal((await client.nextOf("message")).text, "after the restart");
    }
    // Node 0 admits logins once node 1 has said its names are back (a bus round trip).
    await waitFor("erin's login on node 0", async () => {
      late.send({ type: "login", name: "erin" });
      const reply = await late.next();
      if (reply.type === "welcome") return true;
      assert.equal(reply.code, "unavailable");
      return false;
    });
  } finally {
    await closeAll(clients);
    await stopAll(nodes);
  }
});

Deno.test("cluster e2e: Redis restarted empty while one node is frozen: the other gives none of its names out until it is back", async () => {
  await using redis = await startRedis();
  // A long lease: the frozen node must not be dropped for silence while the test looks.
  const nodes = await Promise.all([0, 1].map(() =>
    spawnServer({
      args: [
        ...["--redis-url", redis.url, "--name-lease", "30"],
        ...["--connect-rate", "1000", "--rate-limit", "1000", "--rate-burst", "1000"],
      ],
    })
  ));
  const clients: TestClient[] = [];
  try {
    for (const node of nodes) await waitForMetric(node, "hubbub_cluster_nodes", 1);
    const alice = await user(nodes[0], "alice", "lobby");
    clients.push(alice);
    /** A login on node 1 by a fresh client (each refusal would count as a failed login). */
    const loginOnNode1 = async (name: string) => {
      const probe = await openClient(nodes[1].wsUrl);
      try {
        probe.send({ type: "login", name });
        const reply = await probe.next();
        return reply.type === "error" ? reply.code : reply.type;
      } finally {
        await probe.close();
      }
    };
    assert.equal(await loginOnNode1("alice"), "name_taken");

    await redis.stop();
    for (const node of nodes) await waitForMetric(node, "hubbub_cluster_up", 0);
    // Node 0 cannot come back before node 1 has: the order in which the old code gave alice away.
    nodes[0].child.kill("SIGSTOP");
    try {
      await redis.start();
      await waitForMetric(nodes[1], "hubbub_cluster_up", 1, 10_000);
      // The store is empty and node 0 has not put alice back: node 1 gives out no name at all.
      assert.equal(await loginOnNode1("alice"), "unavailable");
      assert.equal(await loginOnNode1("аlice"), "unavailable", "nor a look-alike of it");
      assert.equal(await loginOnNode1("zoe"), "unavailable");
      const ready = await fetch(`${nodes[1].url}/readyz`);
      assert.deepEqual([ready.status, await ready.json()], [503, {
        status: "not_ready",
        failed: ["cluster"],
      }]);
    } finally {
      nodes[0].child.kill("SIGCONT");
    }

    // Node 0 reconnects and puts alice back; only then does node 1 answer, and alice is taken.
    let answer = "unavailable";
    await waitFor("node 1 to admit logins again", async () => {
      answer = await loginOnNode1("alice");
      return answer !== "unavailable";
    }, 15_000);
    assert.equal(answer, "name_taken");
    assert.equal(await loginOnNode1("zoe"), "welcome");
    // Alice was never closed (4409): her ping is answered.
    alice.send({ type: "ping", ref: 1 });
    assert.deepEqual(await alice.next(), { type: "pong", ref: 1 });
    assert.equal(await metric(nodes[0], "hubbub_cluster_names_lost_total"), 0);
  } finally {
    await closeAll(clients);
    await stopAll(nodes);
  }
});
