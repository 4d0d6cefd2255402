import assert from "node:assert/strict";
import { join } from "node:path";
import { createManualClock } from "../../lib/core/clock.ts";
import { createMemoryStore } from "../../lib/store/memory.ts";
import { openSqliteStore } from "../../lib/store/sqlite.ts";
import type { ChannelMessage, MessageStore, StoredMessage } from "../../lib/store/store.ts";

const MINUTE = 60 * 1000;

/** A small deterministic generator (mulberry32), so a failure can be replayed. */
function random(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const plain = (messages: StoredMessage[]) => messages.map((m) => ({ ...m }));

/**
 * The SQLite store keeps messages in one append-ordered table with its
 * index in memory, deletes trimmed rows in batches and expires lazily; what
 * it returns must still be what the memory store (which trims on every
 * append) returns, whatever the sizes, ages, batches, restarts and reads.
 */
for (const [maxPerChannel, deleteEvery] of [[1, 1], [5, 37], [70, 2048], [200, 300]]) {
  Deno.test(`store (sqlite file): answers as the memory store does, --history-size ${maxPerChannel}, dead rows deleted ${deleteEvery} at a time`, async () => {
    const dir = await Deno.makeTempDir({ prefix: "hubbub-store-" });
    const clock = createManualClock(0);
    const options = { maxPerChannel, maxAgeMs: 10 * MINUTE, clock, deleteEvery };
    const opened = openSqliteStore(join(dir, "history.db"), options);
    if (!opened.ok) throw new Error(opened.message);
    let sqlite: MessageStore = opened.store;
    const memory = createMemoryStore(options);
    const next = random(maxPerChannel);
    const pick = <T>(items: T[]) => items[Math.floor(next() * items.length)];
    const channels = ["a", "b", "c"];
    const keys: [string, string, string][] = [];
    let counter = 0;
    try {
      for (let step = 0; step < 1500; step++) {
        const roll = next();
        if (roll < 0.35) {
          const entries: ChannelMessage[] = Array.from(
            { length: 1 + Math.floor(next() * 80) },
            () => {
              const channel = pick(channels);
              const from = pick(["ann", "bob"]);
              const key = next() < 0.2 ? `k${++counter}` : undefined;
              if (key) keys.push([channel, from, key]);
              const message = {
                from,
                text: `t${++counter}`,
                id: `i${counter}`,
                ts: "2026-01-01T00:00:00.000Z",
              };
              return { channel, message: key ? { ...message, key } : message };
            },
          );
          const [s, m] = [sqlite.appendAll(entries), memory.appendAll(entries)];
          assert.ok(s.ok && m.ok);
          assert.deepEqual(plain(s.messages), plain(m.messages), `append at step ${step}`);
        } else if (roll < 0.4) {
          clock.advance(pick([MINUTE, 3 * MINUTE, 11 * MINUTE]));
        } else if (roll < 0.42) {
          // A restart on the same file: heads and trimming come back from the rows.
          sqlite.close();
          const reopened = openSqliteStore(join(dir, "history.db"), options);
          if (!reopened.ok) throw new Error(reopened.message);
          sqlite = reopened.store;
        } else {
          const channel = pick(channels);
          const head = memory.head(channel).seq;
          assert.equal(sqlite.head(channel).seq, head, `head at step ${step}`);
          const n = Math.floor(next() * 260);
          const seq = Math.floor(next() * (head + 2));
          const what = `step ${step}: ${channel}, n ${n}, seq ${seq}, head ${head}`;
          assert.deepEqual(
            plain(sqlite.latest(channel, n)),
            plain(memory.latest(channel, n)),
            `latest ${what}`,
          );
          assert.deepEqual(
            plain(sqlite.before(channel, seq, n)),
            plain(memory.before(channel, seq, n)),
            `before ${what}`,
          );
          const [s, m] = [
            sqlite.since(channel, sqlite.head(channel).epoch, seq, n),
            memory.since(channel, memory.head(channel).epoch, seq, n),
          ];
          assert.equal(s.recovered, m.recovered, `since ${what}`);
          assert.deepEqual(plain(s.messages), plain(m.messages), `since ${what}`);
          if (keys.length > 0) {
            const [keyChannel, from, key] = pick(keys);
            const [ks, km] = [
              sqlite.byKey(keyChannel, from, key),
              memory.byKey(keyChannel, from, key),
            ];
            assert.deepEqual(ks && { ...ks }, km && { ...km }, `byKey ${key} at step ${step}`);
          }
        }
      }
    } finally {
      sqlite.close();
      memory.close();
      await Deno.remove(dir, { recursive: true });
    }
  });
}
