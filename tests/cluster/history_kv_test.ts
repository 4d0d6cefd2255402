/**
 * What is particular to the Deno KV history (lib/cluster/history_kv.ts);
 * the contract every shared log keeps runs in `shared_log_test.ts`. Time is
 * a manual clock: expiry is decided by the time stored in each value, never
 * by when KV gets round to deleting it.
 */
import assert from "node:assert/strict";
import { busOpen, decodePayload } from "../../lib/cluster/cluster_bus.ts";
import { createKvEngine } from "../../lib/cluster/engine_kv.ts";
import { FOLLOW_SLACK } from "../../lib/cluster/history_kv.ts";
import type { Engine } from "../../lib/cluster/engine.ts";
import { createManualClock } from "../../lib/core/clock.ts";
import type { SharedMessage, StoredMessage } from "../../lib/store/store.ts";
import { withTimeout } from "../_helpers.ts";
import { kvDir } from "./_kv.ts";

const PREFIX = "test";
const TS = "2026-01-01T00:00:00.000Z";
let ids = 0;

/** A message for `channel` as the app hands it to a shared log. */
function message(channel: string, from: string, text: string, key?: string): SharedMessage {
  const id = `m${++ids}`;
  const frame = { type: "message", channel, from, text, id, ts: TS };
  return {
    from,
    text,
    id,
    ts: TS,
    ...(key === undefined ? {} : { key }),
    frameOpen: JSON.stringify(frame).slice(0, -1),
    busOpen: busOpen(channel),
  };
}

const seqs = (found: { messages: StoredMessage[] } | null) => {
  assert.ok(found !== null, "the history could not be read");
  return found.messages.map((m) => m.seq);
};

/** One engine on a new store, up, with the payloads it hears; disposed with the store. */
async function single(history: { maxPerChannel: number; ttlMs: number }, now?: () => number) {
  const dir = await kvDir();
  const kv = await Deno.openKv(dir.path());
  const engine: Engine = createKvEngine({
    kv,
    prefix: PREFIX,
    history,
    ...(now && { clock: { now } }),
  });
  const heard: string[] = [];
  let wake = () => {};
  await withTimeout(
    new Promise<void>((up) =>
      engine.start({
        message(payload) {
          heard.push(payload);
          wake();
        },
        up,
        down() {},
      })
    ),
    "the engine to start",
  );
  return {
    kv,
    log: engine.log!,
    /** The seqs of the next `count` published messages, in order. */
    async published(count: number): Promise<number[]> {
      const found: number[] = [];
      while (found.length < count) {
        const payload = heard.shift();
        if (payload === undefined) {
          await withTimeout(new Promise<void>((resolve) => wake = resolve), "a publication");
          continue;
        }
        for (const m of decodePayload(payload)!.m) if (m.t === "pub") found.push(m.f.seq as number);
      }
      return found;
    },
    async [Symbol.asyncDispose]() {
      await engine.stop();
      kv.close();
      await dir[Symbol.asyncDispose]();
    },
  };
}

Deno.test("kv log: keys and values as documented", async () => {
  const clock = createManualClock(1_000_000);
  await using subject = await single({ maxPerChannel: 10, ttlMs: 60_000 }, clock.now);
  const sent = message("lobby", "ann", "hi", "k1");
  const appended = await subject.log.append("node-a", "lobby", [sent]);
  assert.ok(appended.ok);
  const { kv } = subject;
  const meta = (await kv.get([PREFIX, "h", "lobby", "meta"])).value as Record<string, unknown>;
  assert.deepEqual(meta, { epoch: appended.epoch, top: 1, at: 1_000_000, gen: meta.gen });
  assert.equal(typeof meta.gen, "string");
  assert.deepEqual((await kv.get([PREFIX, "h", "lobby", "m", 1])).value, {
    f: `${sent.frameOpen},"seq":1}`,
    at: 1_000_000,
    g: meta.gen,
    b: sent.busOpen,
    n: "node-a",
    c: 1,
  });
  assert.deepEqual((await kv.get([PREFIX, "h", "lobby", "k", "ann", "k1"])).value, {
    seq: 1,
    id: sent.id,
    at: 1_000_000,
    g: meta.gen,
  });
  // A message is the channel's alone: nothing goes on the bus, whose head every engine shares.
  assert.equal((await kv.get([PREFIX, "bus", "head"])).value, null);
});

Deno.test("kv log: a message goes ttl after it was stored, a key ttl after its message; an idle channel starts over", async () => {
  const clock = createManualClock(1_000_000);
  await using subject = await single({ maxPerChannel: 10, ttlMs: 1000 }, clock.now);
  const { log } = subject;
  const first = await log.append("node-a", "c", [message("c", "ann", "first", "k")]);
  assert.ok(first.ok);
  clock.advance(600);
  assert.ok((await log.append("node-a", "c", [message("c", "bob", "second")])).ok);
  clock.advance(400);
  // The first message and its key are a ttl old: gone, though the channel lives on.
  const page = await log.latest("c", 10);
  assert.equal(page?.epoch, first.epoch);
  assert.equal(page?.seq, 2);
  assert.deepEqual(seqs(page), [2]);
  const recovery = await log.since("c", first.epoch, 0, 10);
  assert.equal(recovery?.recovered, false);
  assert.equal((await log.since("c", first.epoch, 1, 10))?.recovered, true);
  const resent = await log.append("node-a", "c", [message("c", "ann", "first (resent)", "k")]);
  assert.ok(resent.ok);
  assert.deepEqual(resent.results.map((r) => [r.seq, r.duplicate]), [[3, false]]);
  // Idle for a ttl after its last message: a new history, with a new epoch, numbered from 1.
  clock.advance(1000);
  const gone = await log.latest("c", 10);
  assert.ok(gone !== null && gone.epoch !== first.epoch);
  assert.deepEqual({ seq: gone.seq, messages: gone.messages }, { seq: 0, messages: [] });
  assert.equal((await log.since("c", first.epoch, 3, 10))?.recovered, false);
  // The old entries are still in KV (expireIn is real time): never served in the new history.
  assert.notEqual((await subject.kv.get([PREFIX, "h", "c", "m", 3])).value, null);
  const again = await log.append("node-a", "c", [message("c", "ann", "new")]);
  assert.ok(again.ok);
  assert.equal(again.epoch, gone.epoch);
  assert.deepEqual(again.results.map((r) => r.seq), [1]);
  assert.deepEqual(seqs(await log.latest("c", 10)), [1]);
  assert.deepEqual(seqs(await log.latest("c", 1)), [1]);
  assert.deepEqual(seqs(await log.before("c", 5, 10)), [1]);
  const newer = await log.since("c", gone.epoch, 0, 10);
  assert.equal(newer?.recovered, true);
  assert.deepEqual(seqs(newer), [1]);
});

Deno.test("kv log: an append too large for one atomic operation is split, still numbered and published in order", async () => {
  await using subject = await single({ maxPerChannel: 1000, ttlMs: 60_000 });
  const { log } = subject;
  for (const channel of ["big", "many"]) log.follow!(channel);
  await Promise.all(["big", "many"].map((channel) => log.following!(channel)));
  // 3 KB frames: about 1.8 MB stored and published, over the 800 KiB of one operation.
  const large = Array.from(
    { length: 300 },
    (_, i) => message("big", "ann", `${i} ${"x".repeat(3000)}`),
  );
  const appended = await log.append("node-a", "big", large);
  assert.ok(appended.ok, appended.ok ? "" : appended.message);
  const all = Array.from({ length: 300 }, (_, i) => i + 1);
  assert.deepEqual(appended.results.map((r) => r.seq), all);
  assert.deepEqual(await subject.published(300), all);
  assert.deepEqual(seqs(await log.latest("big", 1000)), all);
  // Small but many, each with a key: over the 1000 mutations of one operation.
  const many = Array.from({ length: 700 }, (_, i) => message("many", "bob", `${i}`, `k${i}`));
  const keyed = await log.append("node-a", "many", many);
  assert.ok(keyed.ok);
  assert.deepEqual(keyed.results.map((r) => r.seq), Array.from({ length: 700 }, (_, i) => i + 1));
  assert.deepEqual((await subject.published(700)).at(-1), 700);
  const repeat = await log.append("node-a", "many", [many[0], many[699]]);
  assert.ok(repeat.ok);
  assert.deepEqual(repeat.results.map((r) => [r.seq, r.duplicate]), [[1, true], [700, true]]);
});

Deno.test("kv log: a frame larger than one KV value is refused, and nothing of its append is stored", async () => {
  await using subject = await single({ maxPerChannel: 10, ttlMs: 60_000 });
  const appended = await subject.log.append("node-a", "c", [
    message("c", "ann", "fine"),
    message("c", "ann", "✓".repeat(40_000)),
  ]);
  assert.equal(appended.ok, false);
  assert.match(!appended.ok ? appended.message : "", /^Cannot store a message of \d+ bytes/);
  assert.deepEqual(seqs(await subject.log.latest("c", 10)), []);
  // Within the limit, however its characters are stored.
  const fits = await subject.log.append("node-a", "c", [message("c", "ann", "é".repeat(60_000))]);
  assert.ok(fits.ok);
  assert.deepEqual(seqs(await subject.log.latest("c", 10)), [1]);
});

Deno.test("kv log: messages past --history-size are never served, but stay FOLLOW_SLACK more for engines still delivering them; older ones are deleted", async () => {
  await using subject = await single({ maxPerChannel: 2, ttlMs: 60_000 });
  const { log, kv } = subject;
  const total = 2 + FOLLOW_SLACK + 1;
  for (let sent = 0; sent < total; sent += 100) {
    const batch = Array.from(
      { length: Math.min(100, total - sent) },
      (_, i) => message("c", "ann", `${sent + i}`),
    );
    assert.ok((await log.append("node-a", "c", batch)).ok);
  }
  assert.deepEqual(seqs(await log.latest("c", 10)), [total - 1, total]);
  assert.deepEqual(seqs(await log.before("c", total - 1, 10)), []);
  assert.equal((await kv.get([PREFIX, "h", "c", "m", 1])).value, null);
  assert.notEqual((await kv.get([PREFIX, "h", "c", "m", 2])).value, null);
});
