/**
 * History across a cluster as operators run it: two hubbub processes on a
 * real Redis (started by the test, no persistence). Messages sent on both
 * nodes reach every member in one seq order; a client whose node is killed
 * recovers on the other node exactly what it missed; a Redis that restarts
 * empty means a new epoch, and recovery from the old one says so.
 */
import assert from "node:assert/strict";
import { type TestClient, waitFor, withTimeout } from "../_helpers.ts";
import {
  assertContinuous,
  assertIn,
  member,
  type Seen,
  seen,
  send,
  type Sent,
  watch,
} from "./_history.ts";
import { startRedis, type TestRedis } from "./_redis.ts";
import { type SpawnedServer, spawnServer, waitForMetric } from "./_server.ts";

const CHANNEL = "room";
/** Where a message is sent while Redis is down. */
const OUTAGE = "outage";
/** Above everything a test sends, so that `since` seq 0 can recover it all. */
const HISTORY_LIMIT = 1000;
/** A generous bound for traffic: a Bun binary or a loaded machine may be slow. */
const TRAFFIC_MS = 30_000;

const debug = Deno.env.get("DEBUG_LOG") !== undefined;

/** Starts two nodes on `redis` and waits until each sees the other. */
async function startNodes(redis: TestRedis): Promise<SpawnedServer[]> {
  const nodes = await Promise.all([0, 1].map(() =>
    spawnServer({
      args: [
        ...["--redis-url", redis.url, "--history-limit", String(HISTORY_LIMIT)],
        ...["--rate-limit", "100000", "--rate-burst", "100000", "--connect-rate", "1000"],
      ],
    })
  ));
  for (const node of nodes) await waitForMetric(node, "hubbub_cluster_nodes", 1);
  return nodes;
}

/** The fields of messages that identify them, as `Seen`. */
function seenAll(messages: Seen[]): Seen[] {
  return messages.map(seen);
}

/** Leaves the channel and joins it again with `join`'s fields; the `joined` frame. */
async function rejoin(client: TestClient, join: Record<string, unknown>) {
  client.send({ type: "leave", channel: CHANNEL });
  assert.equal((await client.nextOf("left")).channel, CHANNEL);
  client.send({ type: "join", channel: CHANNEL, ...join });
  return await client.nextOf("joined");
}

/** Sends `count` acknowledged broadcasts, `window` at a time. */
function sendCount(client: TestClient, name: string, count: number, window = 8): Promise<Sent> {
  let sent = 0;
  return send(client, name, CHANNEL, { window, more: () => sent++ < count });
}

Deno.test("history cluster e2e: two nodes publishing into one channel give every member the same seq order", async () => {
  await using redis = await startRedis();
  const nodes = await startNodes(redis);
  const clients: TestClient[] = [];
  const PER_SENDER = 150;
  const total = 2 * PER_SENDER;
  try {
    const members = [];
    for (const [node, names] of [[nodes[0], ["a1", "a2"]], [nodes[1], ["b1", "b2"]]] as const) {
      for (const name of names) {
        const joined = await member(node.wsUrl, name, CHANNEL);
        clients.push(joined.client);
        members.push({ name, ...joined });
      }
    }
    const epoch = members[0].joined.epoch;
    for (const { joined } of members) assert.deepEqual([joined.epoch, joined.seq], [epoch, 0]);
    const [a1, a2, b1, b2] = members;

    const started = performance.now();
    // Both senders at once, each WINDOW broadcasts ahead; the watchers take all they see.
    const sending = [a1, b1].map(({ client, name }) => sendCount(client, name, PER_SENDER));
    const watching = [a2, b2].map(({ client }) =>
      watch(client, CHANNEL, (received) => received.length === total)
    );
    const sent = await withTimeout(Promise.all(sending), "both senders' acks", TRAFFIC_MS);
    // A sender's own messages may still be on their way when its last ack arrives.
    const senderViews = await withTimeout(
      Promise.all(sent.map(async ({ received }, i) => {
        if (received.length === total) return received;
        const rest = await watch(
          [a1, b1][i].client,
          CHANNEL,
          (more) => received.length + more.length === total,
        );
        return [...received, ...rest];
      })),
      "the senders to receive every message",
      TRAFFIC_MS,
    );
    const views = [
      ...senderViews,
      ...await withTimeout(Promise.all(watching), "the watchers' messages", TRAFFIC_MS),
    ];
    const elapsed = performance.now() - started;

    const reference = views[0];
    assertContinuous(reference, "a1's view");
    for (const [i, view] of views.entries()) {
      assert.deepEqual(view, reference, `${[a1, b1, a2, b2][i].name} sees a1's order`);
    }
    const acked = sent.flatMap((s) => s.acked);
    assert.equal(acked.length, total);
    assertIn(reference, acked, "an acknowledged message");
    // The log holds the same: a join on either node with since seq 0 recovers it all.
    for (const [i, node] of nodes.entries()) {
      const late = await member(node.wsUrl, `late${i}`, CHANNEL, { since: { epoch, seq: 0 } });
      clients.push(late.client);
      assert.equal(late.joined.recovered, true);
      assert.deepEqual(seenAll(late.joined.messages), reference);
    }
    if (debug) {
      console.log(
        `history cluster: ${total} messages from two nodes to four members in ${
          Math.round(elapsed)
        } ms; ${switches(reference)} switches between the senders`,
      );
    }
  } finally {
    await Promise.all(clients.map((client) => client.close()));
    await Promise.all(nodes.map((node) => node.stop()));
  }
});

Deno.test("history cluster e2e: a client of a node killed with SIGKILL recovers on the other node exactly what it missed", async () => {
  await using redis = await startRedis();
  const nodes = await startNodes(redis);
  const clients: TestClient[] = [];
  const SEEN_BEFORE_KILL = 20;
  const SENT_AFTER_KILL = 30;
  try {
    const alice = await member(nodes[0].wsUrl, "alice", CHANNEL);
    const bob = await member(nodes[1].wsUrl, "bob", CHANNEL);
    clients.push(alice.client, bob.client);
    const epoch = alice.joined.epoch;
    assert.equal(bob.joined.epoch, epoch);

    // Bob sends steadily from node B; node A dies once alice has seen some of it.
    let killed = false;
    let afterKill = 0;
    const bobSending = send(bob.client, "bob", CHANNEL, {
      window: 4,
      more: () => !killed || afterKill++ < SENT_AFTER_KILL,
    });
    const before = await withTimeout(
      watch(alice.client, CHANNEL, (received) => received.length === SEEN_BEFORE_KILL),
      "alice's first messages",
      TRAFFIC_MS,
    );
    nodes[0].child.kill("SIGKILL");
    killed = true;
    const killedAt = performance.now();
    // What alice still got before her socket closed.
    const rest = await withTimeout(watch(alice.client, CHANNEL), "alice cut off", TRAFFIC_MS);
    const aliceSaw = [...before, ...rest];
    assertContinuous(aliceSaw, "what alice saw");
    const last = aliceSaw.at(-1)!.seq;
    const bobSent = await withTimeout(bobSending, "bob's acks", TRAFFIC_MS);
    const all = bobSent.acked.toSorted((a, b) => a.seq - b.seq);
    assertContinuous(all, "bob's acknowledged messages");
    assert.ok(all.length >= last + SENT_AFTER_KILL, "alice missed messages");

    // Node A's names stay taken for their lease: alice comes back under another name.
    const back = await member(nodes[1].wsUrl, "alice2", CHANNEL, { since: { epoch, seq: last } });
    const recoveredAt = performance.now();
    clients.push(back.client);
    assert.equal(back.joined.recovered, true);
    assert.equal(back.joined.epoch, epoch);
    assert.equal(back.joined.seq, all.length);
    assert.deepEqual(seenAll(back.joined.messages), all.slice(last), "exactly what alice missed");
    if (debug) {
      console.log(
        `history cluster: alice saw ${last}, missed ${all.length - last}; recovered on node B ${
          Math.round(recoveredAt - killedAt)
        } ms after the kill`,
      );
    }
  } finally {
    await Promise.all(clients.map((client) => client.close()));
    await Promise.all(nodes.map((node) => node.stop()));
  }
});

Deno.test("history cluster e2e: Redis restarted empty: a new epoch, and since with the old one says recovered:false", async () => {
  await using redis = await startRedis();
  const nodes = await startNodes(redis);
  const clients: TestClient[] = [];
  try {
    let alice = await member(nodes[0].wsUrl, "alice", CHANNEL);
    let bob = await member(nodes[1].wsUrl, "bob", CHANNEL);
    clients.push(alice.client, bob.client);
    const epoch = alice.joined.epoch;
    // Another channel for the outage: one that gets unnumbered messages is given a new epoch
    // when Redis is back, which would race the joins below.
    alice.client.send({ type: "join", channel: OUTAGE });
    assert.equal((await alice.client.nextOf("joined")).channel, OUTAGE);
    const sent = await withTimeout(sendCount(alice.client, "alice", 5), "alice's acks");
    assert.deepEqual(sent.acked.map((m) => m.seq), [1, 2, 3, 4, 5]);
    // Her own messages come back by the bus and may follow her last ack.
    const echoes = sent.received.length === 5 ? [] : await withTimeout(
      watch(alice.client, CHANNEL, (more) => sent.received.length + more.length === 5),
      "alice's own messages",
    );
    assert.deepEqual([...sent.received, ...echoes], sent.acked);
    const bobSaw = await withTimeout(
      watch(bob.client, CHANNEL, (received) => received.length === 5),
      "bob's messages",
    );
    assertContinuous(bobSaw, "what bob saw");

    await redis.stop();
    for (const node of nodes) await waitForMetric(node, "hubbub_cluster_up", 0);
    // Meanwhile a message goes out on its node only, unnumbered, and is not acknowledged.
    alice.client.send({ type: "broadcast", channel: OUTAGE, text: "in the outage", ref: 99 });
    const replies = [await alice.client.next(), await alice.client.next()];
    const outage = replies.find((frame) => frame.type === "message");
    const refused = replies.find((frame) => frame.type === "error");
    assert.ok(outage !== undefined && refused !== undefined, JSON.stringify(replies));
    assert.equal(outage.text, "in the outage");
    assert.equal(outage.seq, undefined);
    assert.deepEqual([refused.code, refused.ref], ["unavailable", 99]);

    await redis.start();
    for (const node of nodes) await waitForMetric(node, "hubbub_cluster_up", 1, 10_000);
    // Their seqs start over, which a client that drops what it has seen would drop: each node
    // closes its members of the channel (1013), and they come back with since.
    for (const client of [alice.client, bob.client]) {
      const closed = await withTimeout(client.closed, "a close after Redis lost the history");
      assert.equal(closed.code, 1013);
    }
    for (const node of nodes) {
      await waitFor("the node admitting logins", async () => {
        const ready = await fetch(`${node.url}/readyz`);
        await ready.body?.cancel();
        return ready.ok;
      }, 10_000);
    }
    alice = await member(nodes[0].wsUrl, "alice", CHANNEL, { since: { epoch, seq: 5 } });
    bob = await member(nodes[1].wsUrl, "bob", CHANNEL, { since: { epoch, seq: 5 } });
    clients.push(alice.client, bob.client);
    const epochs = [];
    for (const [who, { joined }] of [["alice", alice], ["bob", bob]] as const) {
      assert.equal(joined.recovered, false, who);
      assert.notEqual(joined.epoch, epoch, who);
      assert.match(joined.epoch, /^\S+$/, who);
      assert.deepEqual([joined.seq, joined.messages], [0, []], who);
      epochs.push(joined.epoch);
    }
    assert.equal(epochs[1], epochs[0], "one new epoch for the whole cluster");
    // The new epoch numbers from 1, and recovers within itself.
    const again = await withTimeout(sendCount(alice.client, "alice", 1), "alice's ack after");
    assert.equal(again.acked[0].seq, 1);
    const [next] = await withTimeout(
      watch(bob.client, CHANNEL, (received) => received.length === 1),
      "bob's message after",
    );
    assert.deepEqual(next, again.acked[0]);
    const recovered = await rejoin(bob.client, { since: { epoch: epochs[0], seq: 0 } });
    assert.deepEqual([recovered.recovered, recovered.epoch], [true, epochs[0]]);
    assert.deepEqual(seenAll(recovered.messages), again.acked);
  } finally {
    await Promise.all(clients.map((client) => client.close()));
    await Promise.all(nodes.map((node) => node.stop()));
  }
});

/** How often the sender changes from one message to the next: how interleaved the order is. */
function switches(messages: readonly Seen[]): number {
  return messages.filter((m, i) => i > 0 && m.from !== messages[i - 1].from).length;
}
