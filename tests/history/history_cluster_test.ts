/**
 * Durable channels across a cluster (issue 15), over real sockets: nodes in
 * one process on a memory cluster (lib/cluster/engine.ts), whose engines
 * share one log (lib/cluster/history_memory.ts, the double of the Redis
 * streams). One seq order per channel whatever node a message was sent on,
 * recovery on another node, keys across nodes, the join that races a stream
 * of messages, and what clients see while the log is cut off and after.
 * The nodes share a manual clock, so the retry that gives a gapped channel
 * its new epoch runs when a test says, not after a real second.
 */
import assert from "node:assert/strict";
import type { Config } from "../../lib/config.ts";
import { loginChat } from "../../lib/dialects/login_chat.ts";
import { expectError, type Frame, type TestServer } from "../_helpers.ts";
import { startMemoryNodes } from "../cluster/_memory_nodes.ts";
import { openDialectClient } from "../dialects/_client.ts";
import {
  barrier,
  brief,
  broadcast,
  expectFrame,
  join,
  messages,
  range,
  say,
  seqs,
} from "./_history.ts";

const API_KEY = "api-key-0123456789abcdef";

/** `count` nodes on one memory cluster, with the API and login-chat; see `startMemoryNodes`. */
const startNodes = (
  count: number,
  overrides: Partial<Config> = {},
  history?: { maxPerChannel: number; ttlMs: number },
) =>
  startMemoryNodes({
    count,
    config: { apiKey: API_KEY, ...overrides },
    history,
    dialects: [loginChat],
  });

Deno.test("history cluster: two nodes publishing into one channel give every member, on both, the same seq order", async () => {
  await using c = startNodes(2);
  const [a, b] = c.nodes;
  const members = [
    await a.user("alice", "room"),
    await b.user("bob", "room"),
    await a.user("carol", "room"),
    await b.user("dave", "room"),
  ];
  const [alice, bob] = members;
  const perSender = 30;
  for (let i = 1; i <= perSender; i++) {
    broadcast(alice, "room", `a${i}`);
    broadcast(bob, "room", `b${i}`);
  }
  const total = 2 * perSender;
  const seen = await Promise.all(members.map((member) => messages(member, total)));
  for (const frames of seen) {
    assert.deepEqual(seqs(frames), range(1, total));
    assert.deepEqual(frames.map(brief), seen[0].map(brief), "one order on every node");
  }
  for (const prefix of ["a", "b"]) {
    const own = seen[0].filter((frame) => frame.text.startsWith(prefix));
    assert.deepEqual(own.map((f) => f.text), range(1, perSender).map((i) => `${prefix}${i}`));
  }
  for (const [node, name] of [[a, "erin"], [b, "fay"]] as const) {
    const joined = await join(await node.user(name), "room", { history: total });
    assert.equal(joined.seq, total);
    assert.deepEqual(joined.messages.map(brief), seen[0].map(brief), "history in that order");
  }
});

Deno.test("history cluster: a client that leaves node A recovers on node B with since: exactly what it missed", async () => {
  await using c = startNodes(2);
  const [a, b] = c.nodes;
  const alice = await a.user("alice", "room");
  let bob = await a.user("bob");
  const first = await join(bob, "room");
  await say(alice, "room", "seen", 2);
  const last = { epoch: first.epoch, seq: (await messages(bob, 2))[1].seq };
  await bob.close();

  const missed = await say(alice, "room", "missed", 3);
  bob = await b.user("bob");
  const back = await join(bob, "room", { since: last, history: 1 });
  assert.deepEqual([back.epoch, back.recovered, back.seq], [first.epoch, true, 5]);
  assert.deepEqual(back.messages, missed);
  assert.deepEqual(await barrier(bob), [], "none of them again");
  broadcast(alice, "room", "live from A");
  assert.deepEqual(seqs(await messages(bob, 1)), [6]);
  broadcast(bob, "room", "live from B");
  assert.deepEqual((await messages(alice, 2)).map((m) => [m.text, m.seq]), [
    ["live from A", 6],
    ["live from B", 7],
  ]);

  const wrong = await join(await b.user("carol"), "room", {
    since: { epoch: "elsewhere", seq: 5 },
    history: 2,
  });
  assert.deepEqual([wrong.recovered, seqs(wrong.messages)], [false, [6, 7]]);
  const atHead = await join(await b.user("dave"), "room", {
    since: { epoch: first.epoch, seq: 7 },
  });
  assert.deepEqual([atHead.recovered, atHead.messages], [true, []]);
});

Deno.test("history cluster: since a seq the shared log trimmed is not recovered", async () => {
  await using c = startNodes(2, {}, { maxPerChannel: 3, ttlMs: 3_600_000 });
  const [a, b] = c.nodes;
  const alice = await a.user("alice");
  const { epoch } = await join(alice, "room");
  const sent = await say(alice, "room", "m", 6);
  const gap = await join(await b.user("bob"), "room", { since: { epoch, seq: 2 }, history: 10 });
  assert.deepEqual([gap.recovered, gap.messages], [false, sent.slice(3)]);
  const kept = await join(await b.user("carol"), "room", { since: { epoch, seq: 3 } });
  assert.deepEqual([kept.recovered, kept.messages], [true, sent.slice(3)]);
});

Deno.test("history cluster: history on join and paging read the shared log on any node", async () => {
  await using c = startNodes(2, { historyLimit: 5 });
  const [a, b] = c.nodes;
  const alice = await a.user("alice", "room");
  const sent = await say(alice, "room", "m", 7);
  const bob = await b.user("bob");
  const refused = await expectError(bob, { type: "history", channel: "room" });
  assert.equal(refused.code, "not_joined");
  const joined = await join(bob, "room", { history: 2 });
  assert.deepEqual([joined.seq, joined.messages], [7, sent.slice(5)]);
  const page = async (extra: Record<string, unknown>) => {
    bob.send({ type: "history", channel: "room", ref: "p", ...extra });
    const frame = await expectFrame(bob, "history");
    assert.deepEqual([frame.epoch, frame.ref], [joined.epoch, "p"]);
    return frame.messages;
  };
  assert.deepEqual(await page({}), sent.slice(2), "the latest --history-limit");
  assert.deepEqual(await page({ before: 4, limit: 2 }), sent.slice(1, 3));
  assert.deepEqual(await page({ before: 1 }), []);
});

Deno.test("history cluster: sent only with ref; a key resent on another node is not published again", async () => {
  await using c = startNodes(2);
  const [a, b] = c.nodes;
  let alice = await a.user("alice", "room");
  const carol = await a.user("carol", "room");
  const dave = await b.user("dave", "room");
  broadcast(alice, "room", "quiet");
  await messages(alice, 1);
  assert.deepEqual(await barrier(alice), [], "no sent without a ref");

  broadcast(alice, "room", "keyed", { key: "k", ref: 1 });
  const [first] = await messages(alice, 1);
  assert.deepEqual(await expectFrame(alice, "sent"), {
    type: "sent",
    channel: "room",
    id: first.id,
    seq: 2,
    ref: 1,
  });
  await alice.close();
  alice = await b.user("alice", "room");
  broadcast(alice, "room", "keyed", { key: "k", ref: 2 });
  const again = await expectFrame(alice, "sent");
  assert.deepEqual([again.id, again.seq, again.ref], [first.id, 2, 2]);
  for (const member of [carol, dave]) {
    assert.deepEqual(seqs(await messages(member, 2)), [1, 2]);
    assert.deepEqual(await barrier(member), [], "once on each node");
  }

  // Another user with that key publishes.
  broadcast(dave, "room", "dave's", { key: "k", ref: 3 });
  await messages(dave, 1);
  assert.equal((await expectFrame(dave, "sent")).seq, 3);
  assert.deepEqual(seqs(await messages(carol, 1)), [3]);

  // The API on either node, keyed: the first's id and seq, published once.
  const post = async (node: TestServer) => {
    const response = await fetch(`${node.url}/api/broadcast`, {
      method: "POST",
      headers: { authorization: `Bearer ${API_KEY}` },
      body: JSON.stringify({ channel: "room", text: "from the API", key: "api" }),
    });
    assert.equal(response.status, 202);
    return await response.json();
  };
  const posted = await post(a);
  const [viaApi] = await messages(dave, 1);
  assert.deepEqual([posted.id, posted.seq], [viaApi.id, 4]);
  const repeated = await post(b);
  assert.deepEqual([repeated.id, repeated.seq], [viaApi.id, 4]);
  assert.deepEqual(await barrier(dave), []);
  assert.deepEqual(seqs(await messages(carol, 1)), [4]);
  assert.deepEqual(await barrier(carol), []);
});

Deno.test("history cluster: a message sent while a join is applied is in messages or after joined: never both, never neither", async () => {
  await using c = startNodes(2);
  const [a, b] = c.nodes;
  const alice = await a.user("alice", "room");
  const bob = await b.user("bob", "room");
  // Joiners on both nodes: on the sender's, and on the other.
  const joiners = await Promise.all(
    range(1, 8).map((i) => (i % 2 === 0 ? a : b).user(`joiner${i}`)),
  );
  const chunk = 20;
  const chunks = 12;
  const total = chunk * chunks;
  for (let n = 0; n < chunks; n++) {
    for (let i = 1; i <= chunk; i++) {
      // From both nodes, so the joins race traffic that crosses the bus too.
      broadcast(i % 2 === 0 ? alice : bob, "room", `c${n}m${i}`);
      if (n < joiners.length && i === 1 + (n * 7) % chunk) {
        joiners[n].send({ type: "join", channel: "room", history: 100 });
      }
    }
    await messages(alice, chunk);
  }
  await messages(bob, total);
  for (const joiner of joiners) {
    const joined = await expectFrame(joiner, "joined");
    const head = joined.seq;
    assert.deepEqual(seqs(joined.messages), range(Math.max(1, head - 99), head));
    const live = await messages(joiner, total - head);
    assert.deepEqual(seqs(live), range(head + 1, total), `joined at ${head}`);
    assert.deepEqual(await barrier(joiner), [], "nothing twice");
  }
});

Deno.test("history cluster: dialect traffic on one node is in the history a native joiner gets on another", async () => {
  await using c = startNodes(2);
  const [a, b] = c.nodes;
  const lc = await openDialectClient(`${a.url.replace("http", "ws")}/compat/login-chat/`);
  try {
    lc.send({ type: "login", username: "lc" });
    assert.deepEqual(await lc.next(), { type: "logged_in", username: "lc" });
    lc.send({ type: "chat", value: "from login-chat" });
    assert.deepEqual(await lc.next(), { type: "chat", username: "lc", value: "from login-chat" });
    const nat = await b.user("nat");
    const joined = await join(nat, "lobby", { history: 5 });
    assert.deepEqual(joined.messages.map((m: Frame) => [m.from, m.text, m.seq]), [
      ["lc", "from login-chat", 1],
    ]);
  } finally {
    await lc.close();
  }
});

Deno.test("history cluster: while the log is cut off, local traffic flows unnumbered; after it is back, the channel has a new epoch", async () => {
  await using c = startNodes(2);
  const [a, b] = c.nodes;
  const alice = await a.user("alice", "room");
  const bob = await a.user("bob", "room");
  const carol = await b.user("carol", "room");
  const dave = await a.user("dave");
  broadcast(alice, "room", "before");
  const [before] = await messages(alice, 1);
  const mark = { epoch: (await join(dave, "room")).epoch, seq: before.seq };
  for (const member of [bob, carol]) await messages(member, 1);

  c.cluster.cut();
  broadcast(alice, "room", "during");
  const [during] = await messages(bob, 1);
  assert.equal(during.text, "during");
  assert.equal(during.seq, undefined, "unnumbered");
  assert.equal((await messages(alice, 1))[0].seq, undefined);
  assert.equal((await messages(dave, 1))[0].seq, undefined);
  broadcast(alice, "room", "acknowledged?", { ref: 9 });
  assert.equal((await messages(alice, 1))[0].seq, undefined);
  const refused = await expectFrame(alice, "error");
  assert.deepEqual([refused.code, refused.ref], ["unavailable", 9]);
  assert.equal((await messages(bob, 1))[0].text, "acknowledged?", "delivered live all the same");
  assert.deepEqual(await barrier(carol), [], "nothing crosses to node B meanwhile");
  const page = await expectError(bob, { type: "history", channel: "room" });
  assert.equal(page.code, "unavailable");
  assert.equal((await messages(dave, 1))[0].text, "acknowledged?");
  dave.send({ type: "leave", channel: "room" });
  await expectFrame(dave, "left");
  const blind = await join(dave, "room", { since: mark, history: 5 });
  assert.deepEqual(
    [blind.epoch, blind.seq, blind.messages, blind.recovered],
    ["", 0, [], false],
    "a join meanwhile cannot read history",
  );

  for (const engine of c.engines) c.cluster.reconnect(engine);
  c.clock.advance(1000); // the retry that renews gapped channels
  bob.send({ type: "leave", channel: "room" });
  await expectFrame(bob, "left");
  const back = await join(bob, "room", { since: mark, history: 5 });
  assert.equal(back.recovered, false, "the unnumbered messages are a gap");
  assert.notEqual(back.epoch, mark.epoch);
  assert.deepEqual(seqs(back.messages), [1], "what the log has");

  broadcast(alice, "room", "after", { ref: 10 });
  const [after] = await messages(alice, 1);
  assert.equal(typeof after.seq, "number", "numbered again");
  assert.deepEqual([(await expectFrame(alice, "sent")).seq], [after.seq]);
  const seenOnB = (await messages(carol, 1))[0];
  assert.deepEqual(brief(seenOnB), brief(after), "and across nodes again");
});

/** A channel whose last numbered message is 1, then a message its node could not store: a gap. */
async function gapped() {
  const c = startNodes(2);
  const [a, b] = c.nodes;
  const alice = await a.user("alice", "room");
  const bob = await a.user("bob");
  // Logged in before the cut: after it, logins wait until every node has put its names back.
  const carol = await b.user("carol");
  const { epoch } = await join(bob, "room");
  broadcast(alice, "room", "before");
  await messages(alice, 1);
  await messages(bob, 1);
  bob.send({ type: "leave", channel: "room" });
  await expectFrame(bob, "left");

  c.cluster.cut();
  broadcast(alice, "room", "bob misses this one");
  assert.equal((await messages(alice, 1))[0].seq, undefined);
  // Back, and no retry has run (the clock has not moved).
  for (const engine of c.engines) c.cluster.reconnect(engine);
  return { c, alice, bob, carol, mark: { epoch, seq: 1 } };
}

Deno.test("history cluster: right after the log is back, a recovery across the gap on its node is not recovered", async () => {
  const { c, bob, mark } = await gapped();
  await using _ = c;
  const back = await join(bob, "room", { since: mark, history: 5 });
  assert.equal(back.recovered, false, "the gap is not hidden until a retry runs");
  assert.notEqual(back.epoch, mark.epoch);
});

Deno.test("history cluster: right after the log is back, the first message on the gapped node is numbered in a new epoch", async () => {
  const { c, alice, carol, mark } = await gapped();
  await using _ = c;
  broadcast(alice, "room", "first after", { ref: 1 });
  const [after] = await messages(alice, 1);
  assert.equal((await expectFrame(alice, "sent")).seq, after.seq);
  // Even on the other node, which never saw the gap.
  const back = await join(carol, "room", { since: mark, history: 5 });
  assert.equal(back.recovered, false);
  assert.notEqual(back.epoch, mark.epoch);
  assert.deepEqual(brief(back.messages.at(-1)), brief(after));
});

Deno.test("history cluster: right after the log is back, a recovery on another node, with nothing sent since, is not recovered either", async () => {
  const { c, carol, mark } = await gapped();
  await using _ = c;
  // No retry has run and nobody sent anything: only the node that delivered the gap knows of it,
  // and it renews the epoch the moment its engine is back.
  const back = await join(carol, "room", { since: mark, history: 5 });
  assert.equal(back.recovered, false, "another node hid the gap");
  assert.notEqual(back.epoch, mark.epoch);
});
