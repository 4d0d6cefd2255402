/**
 * Durable channels on one node (issue 15), over real sockets: history on
 * join, seq continuity, recovery with `since`, trimming by size and age,
 * paging, idempotent keys, `sent`, dialect traffic in history, the join that
 * races a stream of messages, and the API. Every test runs twice: on the
 * memory store `startServer` makes, and on SQLite in a temporary directory.
 * The cluster counterpart is `history_cluster_test.ts`.
 */
import assert from "node:assert/strict";
import type { Config } from "../../lib/config.ts";
import { historyLimits } from "../../lib/app.ts";
import { type Clock, createManualClock, systemClock } from "../../lib/core/clock.ts";
import type { Dialect } from "../../lib/dialects/dialect.ts";
import { loginChat } from "../../lib/dialects/login_chat.ts";
import { wschat } from "../../lib/dialects/wschat.ts";
import { openDataDir } from "../../lib/store/open.ts";
import { expectError, type Frame, startServer, TEST_CONFIG, type TestServer } from "../_helpers.ts";
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

type Kind = "memory" | "sqlite";
const KINDS: readonly Kind[] = ["memory", "sqlite"];

/** A test server on a `kind` store; a SQLite one lives in `dataDir` (a new temporary one by default). */
async function serve(
  kind: Kind,
  overrides: Partial<Config> = {},
  deps: { clock?: Clock; dialects?: readonly Dialect[]; dataDir?: string } = {},
): Promise<TestServer> {
  const { clock = systemClock, dialects } = deps;
  if (kind === "memory") return startServer(overrides, { clock, dialects });
  const dir = deps.dataDir ?? await Deno.makeTempDir({ prefix: "hubbub-history-" });
  const opened = openDataDir(dir, historyLimits({ ...TEST_CONFIG, ...overrides }, clock));
  assert.ok(opened.ok, opened.ok ? "" : opened.message);
  const server = startServer(overrides, { clock, dialects, store: opened.store });
  return {
    ...server,
    async [Symbol.asyncDispose]() {
      await server[Symbol.asyncDispose]();
      if (deps.dataDir === undefined) await Deno.remove(dir, { recursive: true });
    },
  };
}

/** Calls `POST /api/broadcast` with `body`; returns the status and the JSON answer. */
async function apiBroadcast(server: TestServer, body: unknown): Promise<[number, Frame]> {
  const response = await fetch(`${server.url}/api/broadcast`, {
    method: "POST",
    headers: { authorization: `Bearer ${API_KEY}` },
    body: JSON.stringify(body),
  });
  return [response.status, await response.json()];
}

for (const kind of KINDS) {
  const test = (name: string, fn: () => Promise<void>) =>
    Deno.test(`history (${kind}): ${name}`, fn);

  test("join with history N gets the last N messages, oldest first, each with its seq; joined.seq is the head", async () => {
    await using server = await serve(kind);
    const alice = await server.user("alice");
    const fresh = await join(alice, "room", { history: 5 });
    assert.equal(fresh.seq, 0, "a channel with no message yet");
    assert.deepEqual(fresh.messages, []);
    assert.match(fresh.epoch, /^\S+$/, "an epoch, even before the first message");
    const sent = await say(alice, "room", "m", 5);
    assert.deepEqual(seqs(sent), [1, 2, 3, 4, 5]);

    const bob = await server.user("bob");
    const joined = await join(bob, "room", { history: 3 });
    assert.deepEqual(joined.members, ["alice", "bob"]);
    assert.equal(joined.epoch, fresh.epoch);
    assert.equal(joined.seq, 5);
    assert.equal(joined.recovered, undefined, "recovered only answers since");
    // Full message objects, as members received them live.
    assert.deepEqual(joined.messages, sent.slice(2));

    const all = await join(await server.user("carol"), "room", { history: 100 });
    assert.deepEqual(all.messages, sent, "asking for more than there is gets everything");
    const none = await join(await server.user("dave"), "room", { history: 0 });
    assert.deepEqual([none.seq, none.messages], [5, []], "history 0: the head, no message");
  });

  test("a join without history gets --history-on-join messages (none by default)", async () => {
    await using plain = await serve(kind);
    const alice = await plain.user("alice", "room");
    await say(alice, "room", "m", 3);
    const joined = await join(await plain.user("bob"), "room");
    assert.deepEqual([joined.seq, joined.messages], [3, []]);

    await using configured = await serve(kind, { historyOnJoin: 2 });
    const ann = await configured.user("ann", "room");
    const sent = await say(ann, "room", "m", 3);
    const bea = await configured.user("bea");
    assert.deepEqual((await join(bea, "room")).messages, sent.slice(1));
    const cid = await configured.user("cid");
    assert.deepEqual((await join(cid, "room", { history: 0 })).messages, [], "0 overrides it");
  });

  test("history above --history-limit is bad_request, on join and on history; the join is not applied", async () => {
    await using server = await serve(kind, { historyLimit: 10 });
    const alice = await server.user("alice");
    const refused = await expectError(alice, { type: "join", channel: "room", history: 11 });
    assert.equal(refused.code, "bad_request");
    const notJoined = await expectError(alice, { type: "broadcast", channel: "room", text: "x" });
    assert.equal(notJoined.code, "not_joined", "the refused join joined nothing");
    assert.equal((await join(alice, "room", { history: 10 })).seq, 0, "the limit itself is fine");
    const page = await expectError(alice, { type: "history", channel: "room", limit: 11 });
    assert.equal(page.code, "bad_request");
  });

  test("seq runs 1, 2, 3 … across senders, and every member sees the same order", async () => {
    await using server = await serve(kind);
    const members = [
      await server.user("alice", "room"),
      await server.user("bob", "room"),
      await server.user("carol", "room"),
    ];
    const perSender = 20;
    // Interleaved on three sockets, nobody waiting for anybody.
    for (let i = 1; i <= perSender; i++) {
      for (const [n, member] of members.entries()) broadcast(member, "room", `${n}:${i}`);
    }
    const total = perSender * members.length;
    const seen = await Promise.all(members.map((member) => messages(member, total)));
    for (const frames of seen) {
      assert.deepEqual(seqs(frames), range(1, total));
      assert.deepEqual(frames.map(brief), seen[0].map(brief), "one order for every member");
    }
    for (const n of [0, 1, 2]) {
      const own = seen[0].filter((frame) => frame.text.startsWith(`${n}:`));
      assert.deepEqual(own.map((frame) => frame.text), range(1, perSender).map((i) => `${n}:${i}`));
    }
    const joined = await join(await server.user("dave"), "room", { history: total });
    assert.deepEqual(joined.messages.map(brief), seen[0].map(brief), "history has that order too");
  });

  test("since in the right epoch: recovered with exactly the missed messages, after a leave or a reconnect", async () => {
    await using server = await serve(kind);
    const alice = await server.user("alice", "room");
    let bob = await server.user("bob");
    const first = await join(bob, "room");
    await say(alice, "room", "before", 2);
    const seen = await messages(bob, 2);
    const last = { epoch: first.epoch, seq: seen[1].seq };

    bob.send({ type: "leave", channel: "room" });
    await expectFrame(bob, "left");
    const missed = await say(alice, "room", "missed", 3);
    // history 1 does not cut a recovery short: every missed message comes back.
    const back = await join(bob, "room", { since: last, history: 1 });
    assert.equal(back.recovered, true);
    assert.equal(back.seq, 5);
    assert.deepEqual(back.messages, missed);
    assert.deepEqual(await barrier(bob), [], "and none of them again after joined");

    await bob.close();
    const later = await say(alice, "room", "while away", 2);
    bob = await server.user("bob");
    const reconnected = await join(bob, "room", { since: { epoch: back.epoch, seq: back.seq } });
    assert.equal(reconnected.recovered, true);
    assert.deepEqual(reconnected.messages, later);
    broadcast(alice, "room", "live");
    assert.deepEqual(seqs(await messages(bob, 1)), [8], "live traffic goes on from there");
  });

  test("since at the head: recovered with no message", async () => {
    await using server = await serve(kind);
    const alice = await server.user("alice");
    const empty = await join(alice, "room", { since: { epoch: "anything", seq: 0 } });
    assert.equal(empty.recovered, false, "another epoch, even for an empty channel");
    const fresh = await join(alice, "other", { since: { epoch: empty.epoch, seq: 0 } });
    assert.deepEqual([fresh.recovered, fresh.seq, fresh.messages], [true, 0, []]);

    await say(alice, "room", "m", 3);
    const bob = await server.user("bob");
    const atHead = await join(bob, "room", { since: { epoch: empty.epoch, seq: 3 }, history: 3 });
    assert.deepEqual([atHead.recovered, atHead.seq, atHead.messages], [true, 3, []]);
  });

  test("since in another epoch or past the head: not recovered; the latest history messages instead", async () => {
    await using server = await serve(kind);
    const alice = await server.user("alice", "room");
    const sent = await say(alice, "room", "m", 5);
    const bob = await server.user("bob");
    const wrong = await join(bob, "room", { since: { epoch: "elsewhere", seq: 2 }, history: 2 });
    assert.equal(wrong.recovered, false);
    assert.equal(wrong.seq, 5);
    assert.deepEqual(wrong.messages, sent.slice(3));

    const carol = await server.user("carol");
    const ahead = await join(carol, "room", { since: { epoch: wrong.epoch, seq: 9 } });
    assert.deepEqual([ahead.recovered, ahead.messages], [false, []], "history 0 by default");
  });

  test("since a seq trimmed away by --history-size: not recovered; just kept is recovered", async () => {
    await using server = await serve(kind, { historySize: 3 });
    const alice = await server.user("alice");
    const { epoch } = await join(alice, "room");
    const sent = await say(alice, "room", "m", 6);
    // Kept: 4, 5, 6. After 2, message 3 is missing: a gap.
    const bob = await server.user("bob");
    const gap = await join(bob, "room", { since: { epoch, seq: 2 }, history: 10 });
    assert.equal(gap.recovered, false);
    assert.deepEqual(gap.messages, sent.slice(3), "what is kept, up to history");
    const carol = await server.user("carol");
    const whole = await join(carol, "room", { since: { epoch, seq: 3 } });
    assert.equal(whole.recovered, true, "everything after 3 is kept");
    assert.deepEqual(whole.messages, sent.slice(3));
  });

  test("since more messages ago than --history-limit: not recovered (never a partial recovery)", async () => {
    await using server = await serve(kind, { historyLimit: 4 });
    const alice = await server.user("alice");
    const { epoch } = await join(alice, "room");
    const sent = await say(alice, "room", "m", 7);
    const far = await join(await server.user("bob"), "room", {
      since: { epoch, seq: 2 },
      history: 4,
    });
    assert.equal(far.recovered, false);
    assert.deepEqual(far.messages, sent.slice(3));
    const near = await join(await server.user("carol"), "room", { since: { epoch, seq: 3 } });
    assert.equal(near.recovered, true);
    assert.deepEqual(near.messages, sent.slice(3));
  });

  test("--history-size keeps the latest N per channel; numbering goes on", async () => {
    await using server = await serve(kind, { historySize: 3 });
    const alice = await server.user("alice", "room", "side");
    const sent = await say(alice, "room", "m", 5);
    const aside = await say(alice, "side", "s", 2);
    const joined = await join(await server.user("bob"), "room", { history: 10 });
    assert.equal(joined.seq, 5);
    assert.deepEqual(joined.messages, sent.slice(2));
    const other = await join(await server.user("carol"), "side", { history: 10 });
    assert.deepEqual(other.messages, aside, "per channel");
    broadcast(alice, "room", "next");
    assert.deepEqual(seqs(await messages(alice, 1)), [6]);
  });

  test("--history-ttl drops messages older than the TTL; numbering goes on", async () => {
    const clock = createManualClock(Date.UTC(2026, 0, 1));
    // The manual clock refills nothing, and moving it must not end idle sessions.
    const overrides = { historyTtl: 60, rateBurst: 100_000, idleTimeout: 0 };
    await using server = await serve(kind, overrides, { clock });
    const alice = await server.user("alice");
    const { epoch } = await join(alice, "room");
    await say(alice, "room", "old", 2);
    clock.advance(30_000);
    const young = await say(alice, "room", "young", 1);
    clock.advance(30_000);
    // Now the old ones are 60 s old: expired; the young one is 30 s old.
    const bob = await server.user("bob");
    const joined = await join(bob, "room", { history: 10 });
    assert.deepEqual([joined.seq, joined.messages], [3, young]);
    const carol = await server.user("carol");
    const kept = await join(carol, "room", { since: { epoch, seq: 2 }, history: 10 });
    assert.deepEqual([kept.recovered, kept.messages], [true, young]);
    const dave = await server.user("dave");
    const gap = await join(dave, "room", { since: { epoch, seq: 1 }, history: 10 });
    assert.deepEqual([gap.recovered, gap.messages], [false, young], "message 2 expired: a gap");

    clock.advance(30_000);
    const eve = await server.user("eve");
    const expired = await join(eve, "room", { since: { epoch, seq: 3 }, history: 10 });
    assert.deepEqual([expired.recovered, expired.seq, expired.messages], [true, 3, []]);
    broadcast(alice, "room", "new");
    assert.deepEqual(seqs(await messages(alice, 1)), [4]);
  });

  test("history pages backwards with before and limit; needs membership; limit defaults to --history-limit", async () => {
    await using server = await serve(kind, { historyLimit: 5 });
    const alice = await server.user("alice");
    const refused = await expectError(alice, { type: "history", channel: "room", ref: 1 });
    assert.deepEqual([refused.code, refused.ref], ["not_joined", 1]);
    const { epoch } = await join(alice, "room");
    const sent = await say(alice, "room", "m", 7);

    const page = async (extra: Record<string, unknown>) => {
      alice.send({ type: "history", channel: "room", ref: "p", ...extra });
      const frame = await expectFrame(alice, "history");
      assert.deepEqual([frame.channel, frame.epoch, frame.ref], ["room", epoch, "p"]);
      return frame.messages;
    };
    assert.deepEqual(await page({}), sent.slice(2), "the latest --history-limit");
    assert.deepEqual(await page({ limit: 2 }), sent.slice(5));
    assert.deepEqual(await page({ before: 4, limit: 2 }), sent.slice(1, 3));
    assert.deepEqual(await page({ before: 3 }), sent.slice(0, 2));
    assert.deepEqual(await page({ before: 1 }), []);
    assert.deepEqual(await page({ limit: 0 }), []);

    const bob = await server.user("bob");
    await join(bob, "other");
    const stranger = await expectError(bob, { type: "history", channel: "room" });
    assert.equal(stranger.code, "not_joined");
    alice.send({ type: "leave", channel: "room" });
    await expectFrame(alice, "left");
    const left = await expectError(alice, { type: "history", channel: "room" });
    assert.equal(left.code, "not_joined", "nor after leaving");
  });

  test("sent answers a broadcast with ref once stored; without ref there is no sent", async () => {
    await using server = await serve(kind);
    const alice = await server.user("alice", "room");
    broadcast(alice, "room", "quiet");
    const [quiet] = await messages(alice, 1);
    assert.deepEqual(await barrier(alice), [], "no sent without a ref");

    broadcast(alice, "room", "loud", { ref: "r1" });
    const [loud] = await messages(alice, 1);
    const sent = await expectFrame(alice, "sent");
    assert.deepEqual(sent, { type: "sent", channel: "room", id: loud.id, seq: 2, ref: "r1" });
    assert.equal(quiet.seq, 1);
    // A numeric ref comes back as it was.
    broadcast(alice, "room", "numbered", { ref: 7 });
    await messages(alice, 1);
    assert.equal((await expectFrame(alice, "sent")).ref, 7);
  });

  test("a key: the same user's second broadcast into the same channel is not published; sent names the first", async () => {
    await using server = await serve(kind);
    const alice = await server.user("alice", "room");
    const bob = await server.user("bob", "room");

    // One after the other: the second finds the first stored.
    broadcast(alice, "room", "once", { key: "k1", ref: 1 });
    const [first] = await messages(alice, 1);
    const firstSent = await expectFrame(alice, "sent");
    assert.deepEqual([firstSent.id, firstSent.seq], [first.id, 1]);
    broadcast(alice, "room", "once, again", { key: "k1", ref: 2 });
    const again = await expectFrame(alice, "sent");
    assert.deepEqual(again, { type: "sent", channel: "room", id: first.id, seq: 1, ref: 2 });
    broadcast(alice, "room", "once more, no ref", { key: "k1" });
    assert.deepEqual(await barrier(alice), [], "not published, and no sent without a ref");
    assert.deepEqual((await messages(bob, 1)).map(brief), [brief(first)]);
    assert.deepEqual(await barrier(bob), [], "bob got it once");

    // Back to back: the second may arrive before the first is stored.
    broadcast(alice, "room", "twice", { key: "k2", ref: 3 });
    broadcast(alice, "room", "twice", { key: "k2", ref: 4 });
    const [twice] = await messages(alice, 1);
    const replies = [await expectFrame(alice, "sent"), await expectFrame(alice, "sent")];
    assert.deepEqual(replies.map((r) => [r.ref, r.id, r.seq]), [[3, twice.id, 2], [
      4,
      twice.id,
      2,
    ]]);
    assert.deepEqual(await barrier(alice), []);
    assert.deepEqual(seqs(await messages(bob, 1)), [2]);
    assert.deepEqual(await barrier(bob), []);

    const joined = await join(await server.user("carol"), "room", { history: 10 });
    assert.deepEqual(joined.messages.map((m: Frame) => m.text), ["once", "twice"]);
  });

  test("a key is per user and per channel: another user or another channel publishes again", async () => {
    await using server = await serve(kind);
    const alice = await server.user("alice", "room", "side");
    const bob = await server.user("bob", "room");
    broadcast(alice, "room", "from alice", { key: "same", ref: "a" });
    const [fromAlice] = await messages(alice, 1);
    await expectFrame(alice, "sent");
    broadcast(bob, "room", "from bob", { key: "same", ref: "b" });
    await messages(bob, 2); // alice's, then his own
    const bobSent = await expectFrame(bob, "sent");
    assert.equal(bobSent.seq, 2);
    assert.notEqual(bobSent.id, fromAlice.id);
    assert.deepEqual(seqs(await messages(alice, 1)), [2], "alice sees bob's");
    broadcast(alice, "side", "elsewhere", { key: "same", ref: "c" });
    const [side] = await messages(alice, 1);
    assert.deepEqual([side.channel, side.seq], ["side", 1]);
    assert.equal((await expectFrame(alice, "sent")).id, side.id);
  });

  test("a key holds across a reconnect, within the history window only", async () => {
    await using server = await serve(kind, { historySize: 2 });
    let alice = await server.user("alice", "room");
    const bob = await server.user("bob", "room");
    broadcast(alice, "room", "keyed", { key: "resend", ref: 1 });
    const [first] = await messages(alice, 1);
    await expectFrame(alice, "sent");
    await messages(bob, 1);

    // The client library re-sends what it has no sent for with the same key.
    await alice.close();
    alice = await server.user("alice", "room");
    broadcast(alice, "room", "keyed", { key: "resend", ref: 2 });
    const again = await expectFrame(alice, "sent");
    assert.deepEqual([again.id, again.seq], [first.id, 1]);
    assert.deepEqual(await barrier(bob), [], "bob gets it once");

    // Trimmed out of the window (two kept, two newer): the key is free again.
    await say(alice, "room", "filler", 2);
    await messages(bob, 2);
    broadcast(alice, "room", "keyed", { key: "resend", ref: 3 });
    const [republished] = await messages(alice, 1);
    assert.equal(republished.seq, 4);
    assert.deepEqual([(await expectFrame(alice, "sent")).id], [republished.id]);
    assert.deepEqual(seqs(await messages(bob, 1)), [4]);
  });

  test("dialect traffic in the compat channel is stored; a native joiner sees it in history", async () => {
    await using server = await serve(kind, {}, { dialects: [wschat, loginChat] });
    const base = server.url.replace("http", "ws");
    const lc = await openDialectClient(`${base}/compat/login-chat/`);
    const ws = await openDialectClient(`${base}/compat/wschat/`);
    try {
      lc.send({ type: "login", username: "lc" });
      assert.deepEqual(await lc.next(), { type: "logged_in", username: "lc" });
      lc.send({ type: "chat", value: "from login-chat" });
      assert.deepEqual(await lc.next(), { type: "chat", username: "lc", value: "from login-chat" });
      assert.equal((await ws.next()).msg, "from login-chat");
      ws.send({ usr: "old-client", msg: "from wschat" });
      assert.equal((await lc.next()).value, "from wschat");
      assert.equal((await ws.next()).msg, "from wschat", "wschat echoes to its sender");

      const nat = await server.user("nat");
      const joined = await join(nat, "lobby", { history: 10 });
      assert.deepEqual(
        joined.messages.map((m: Frame) => [m.from, m.text, m.seq]),
        [["lc", "from login-chat", 1], ["old-client", "from wschat", 2]],
      );
      // And the dialects go on with their own formats, without history frames.
      broadcast(nat, "lobby", "native");
      assert.deepEqual(await lc.next(), { type: "chat", username: "nat", value: "native" });
      assert.equal((await ws.next()).msg, "native");
      assert.equal((await messages(nat, 1))[0].seq, 3);
    } finally {
      await Promise.all([lc.close(), ws.close()]);
    }
  });

  test("a message sent while a join is applied is in messages or after joined: never both, never neither", async () => {
    await using server = await serve(kind, { rateBurst: 100_000 });
    const alice = await server.user("alice", "room");
    const joiners = await Promise.all(range(1, 6).map((i) => server.user(`joiner${i}`)));
    const chunk = 20;
    const chunks = 15;
    const total = chunk * chunks;
    for (let c = 0; c < chunks; c++) {
      for (let i = 1; i <= chunk; i++) {
        broadcast(alice, "room", `c${c}m${i}`);
        // Each joiner joins in the middle of a chunk, while messages are in flight.
        if (i === chunk / 2 && c < joiners.length) {
          joiners[c].send({ type: "join", channel: "room", history: 100 });
        }
      }
      await messages(alice, chunk);
    }
    for (const joiner of joiners) {
      const joined = await expectFrame(joiner, "joined");
      const head = joined.seq;
      assert.deepEqual(seqs(joined.messages), range(Math.max(1, head - 99), head));
      const live = await messages(joiner, total - head);
      assert.deepEqual(seqs(live), range(head + 1, total), `joined at ${head}`);
      assert.deepEqual(await barrier(joiner), [], "nothing twice");
    }
  });

  test("POST /api/broadcast with a key answers id and seq; the same key answers the first's, published once", async () => {
    await using server = await serve(kind, { apiKey: API_KEY });
    const bob = await server.user("bob", "room");
    const [status, body] = await apiBroadcast(server, { channel: "room", text: "hi", key: "a1" });
    assert.equal(status, 202);
    const [message] = await messages(bob, 1);
    assert.deepEqual(body, { delivered: 1, id: message.id, seq: 1 });
    assert.equal(message.from, "server");

    const [again, second] = await apiBroadcast(server, { channel: "room", text: "hi", key: "a1" });
    assert.equal(again, 202);
    assert.deepEqual([second.id, second.seq], [message.id, 1]);
    assert.deepEqual(await barrier(bob), [], "nobody receives it twice");

    const [, batch] = await apiBroadcast(server, {
      messages: [
        { channel: "room", text: "b", key: "b1" },
        { channel: "room", text: "b", key: "b1" },
        { channel: "room", text: "unkeyed" },
      ],
    });
    const [b, unkeyed] = await messages(bob, 2);
    assert.deepEqual(batch.messages, [
      { id: b.id, seq: 2 },
      { id: b.id, seq: 2 },
      { id: unkeyed.id, seq: 3 },
    ]);
    assert.deepEqual(await barrier(bob), []);
  });

  test("/metrics counts stored messages (a duplicate key is not stored again)", async () => {
    await using server = await serve(kind);
    const alice = await server.user("alice", "room");
    await say(alice, "room", "m", 3);
    broadcast(alice, "room", "again", { key: "k", ref: 1 });
    await messages(alice, 1);
    await expectFrame(alice, "sent");
    broadcast(alice, "room", "again", { key: "k", ref: 2 });
    await expectFrame(alice, "sent");
    const text = await (await fetch(`${server.url}/metrics`)).text();
    assert.match(text, /^hubbub_messages_stored_total 4$/m);
    assert.match(text, /^hubbub_history_failures_total 0$/m);
  });
}

Deno.test("history (sqlite): a restart on the same data directory keeps the epoch, the messages and the numbering", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "hubbub-history-" });
  try {
    let sent: Frame[];
    let epoch: string;
    {
      await using server = await serve("sqlite", {}, { dataDir });
      const alice = await server.user("alice");
      epoch = (await join(alice, "room")).epoch;
      sent = await say(alice, "room", "m", 3);
    }
    await using server = await serve("sqlite", {}, { dataDir });
    const alice = await server.user("alice");
    const back = await join(alice, "room", { since: { epoch, seq: 1 } });
    assert.deepEqual([back.epoch, back.recovered, back.seq], [epoch, true, 3]);
    assert.deepEqual(back.messages, sent.slice(1));
    broadcast(alice, "room", "after");
    assert.deepEqual(seqs(await messages(alice, 1)), [4]);
  } finally {
    await Deno.remove(dataDir, { recursive: true });
  }
});

Deno.test("history (memory): a restart starts a new epoch, so a since from before is not recovered", async () => {
  let epoch: string;
  {
    await using server = await serve("memory");
    const alice = await server.user("alice");
    epoch = (await join(alice, "room")).epoch;
    await say(alice, "room", "m", 3);
  }
  await using server = await serve("memory");
  const alice = await server.user("alice");
  const back = await join(alice, "room", { since: { epoch, seq: 3 }, history: 10 });
  assert.notEqual(back.epoch, epoch);
  assert.deepEqual([back.recovered, back.seq, back.messages], [false, 0, []]);
});
