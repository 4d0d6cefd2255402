import assert from "node:assert/strict";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { createManualClock } from "../../lib/core/clock.ts";
import { createMemoryStore } from "../../lib/store/memory.ts";
import { openSqliteStore, type SqliteOptions } from "../../lib/store/sqlite.ts";
import type { MessageStore, NewMessage, StoreOptions } from "../../lib/store/store.ts";
import { waitFor } from "../_helpers.ts";

const HOUR = 60 * 60 * 1000;

function sqliteStore(path: string, options: SqliteOptions = {}): MessageStore {
  const opened = openSqliteStore(path, options);
  if (!opened.ok) throw new Error(opened.message);
  return opened.store;
}

const IMPLEMENTATIONS: [string, (options?: StoreOptions) => MessageStore][] = [
  ["memory", (options) => createMemoryStore(options)],
  ["sqlite :memory:", (options) => sqliteStore(":memory:", options)],
];

/** `n` messages from `from`, with texts `${prefix}1`, `${prefix}2`, …. */
function batch(n: number, from = "ann", prefix = "m"): NewMessage[] {
  return Array.from({ length: n }, (_, i) => ({
    from,
    text: `${prefix}${i + 1}`,
    id: crypto.randomUUID(),
    ts: new Date(0).toISOString(),
  }));
}

function append(store: MessageStore, channel: string, messages: NewMessage[]) {
  const result = store.append(channel, messages);
  assert.ok(result.ok);
  return result;
}

const seqs = (messages: { seq: number }[]) => messages.map((m) => m.seq);

for (const [name, create] of IMPLEMENTATIONS) {
  Deno.test(`store (${name}): behaves as the interface says`, async (t) => {
    await t.step("an empty channel has head seq 0 and no messages", () => {
      const store = create();
      const head = store.head("lobby");
      assert.equal(head.seq, 0);
      assert.ok(head.epoch.length > 0);
      assert.deepEqual(store.latest("lobby", 10), []);
      assert.deepEqual(store.before("lobby", 5, 10), []);
      store.close();
    });

    await t.step("append assigns continuous seqs per channel and returns full frames", () => {
      const store = create();
      const first = append(store, "lobby", batch(2));
      const second = append(store, "lobby", batch(1, "bob", "x"));
      const other = append(store, "random", batch(1));
      assert.equal(first.epoch, store.head("lobby").epoch);
      assert.deepEqual(seqs(first.messages), [1, 2]);
      assert.deepEqual(seqs(second.messages), [3]);
      assert.deepEqual(seqs(other.messages), [1]);
      const [message] = second.messages;
      assert.deepEqual(Object.keys(message).sort(), [
        "channel",
        "from",
        "id",
        "seq",
        "text",
        "ts",
        "type",
      ]);
      assert.equal(message.type, "message");
      assert.equal(message.channel, "lobby");
      assert.equal(message.from, "bob");
      assert.equal(message.text, "x1");
      assert.deepEqual(store.head("lobby"), { epoch: first.epoch, seq: 3 });
      assert.deepEqual(store.latest("lobby", 10), [...first.messages, ...second.messages]);
      store.close();
    });

    await t.step("an empty append stores nothing", () => {
      const store = create();
      assert.deepEqual(seqs(append(store, "lobby", []).messages), []);
      assert.equal(store.head("lobby").seq, 0);
      store.close();
    });

    await t.step("latest and before page oldest first", () => {
      const store = create();
      append(store, "lobby", batch(10));
      assert.deepEqual(seqs(store.latest("lobby", 3)), [8, 9, 10]);
      assert.deepEqual(seqs(store.before("lobby", 8, 3)), [5, 6, 7]);
      assert.deepEqual(seqs(store.before("lobby", 3, 5)), [1, 2]);
      assert.deepEqual(store.before("lobby", 1, 5), []);
      assert.deepEqual(store.latest("lobby", 0), []);
      store.close();
    });

    await t.step("since recovers everything after the seq, possibly nothing", () => {
      const store = create();
      const { epoch } = append(store, "lobby", batch(5));
      const after2 = store.since("lobby", epoch, 2, 100);
      assert.equal(after2.recovered, true);
      assert.deepEqual(seqs(after2.messages), [3, 4, 5]);
      assert.deepEqual(store.since("lobby", epoch, 5, 100), {
        recovered: true,
        epoch,
        messages: [],
      });
      assert.deepEqual(seqs(store.since("lobby", epoch, 0, 100).messages), [1, 2, 3, 4, 5]);
      assert.deepEqual(store.since("empty", epoch, 0, 100), {
        recovered: true,
        epoch,
        messages: [],
      });
      store.close();
    });

    await t.step("since with another epoch gives the latest, not recovered", () => {
      const store = create();
      const { epoch } = append(store, "lobby", batch(5));
      const result = store.since("lobby", `${epoch}x`, 2, 2);
      assert.equal(result.recovered, false);
      assert.equal(result.epoch, epoch);
      assert.deepEqual(seqs(result.messages), [4, 5]);
      store.close();
    });

    await t.step("since past the head, or more than the limit, is not recovered", () => {
      const store = create();
      const { epoch } = append(store, "lobby", batch(5));
      assert.equal(store.since("lobby", epoch, 6, 10).recovered, false);
      const capped = store.since("lobby", epoch, 1, 3);
      assert.equal(capped.recovered, false);
      assert.deepEqual(seqs(capped.messages), [3, 4, 5]);
      store.close();
    });

    await t.step("trimming by count keeps the head and refuses recovery past it", () => {
      const store = create({ maxPerChannel: 3 });
      const { epoch } = append(store, "lobby", batch(4));
      append(store, "lobby", batch(2));
      assert.deepEqual(seqs(store.latest("lobby", 10)), [4, 5, 6]);
      assert.deepEqual(store.head("lobby"), { epoch, seq: 6 });
      assert.deepEqual(seqs(store.since("lobby", epoch, 3, 10).messages), [4, 5, 6]);
      assert.equal(store.since("lobby", epoch, 3, 10).recovered, true);
      const trimmed = store.since("lobby", epoch, 2, 2);
      assert.equal(trimmed.recovered, false);
      assert.deepEqual(seqs(trimmed.messages), [5, 6]);
      assert.deepEqual(seqs(append(store, "lobby", batch(1)).messages), [7]);
      store.close();
    });

    await t.step("trimming by age keeps the head and seqs continue", () => {
      const clock = createManualClock(1_000_000);
      const store = create({ maxAgeMs: HOUR, clock });
      const { epoch } = append(store, "lobby", batch(2));
      clock.advance(HOUR / 2);
      append(store, "lobby", batch(1));
      clock.advance(HOUR / 2);
      // The first two are an hour old now: gone. The third is half an hour old.
      assert.deepEqual(seqs(store.latest("lobby", 10)), [3]);
      assert.equal(store.since("lobby", epoch, 1, 10).recovered, false);
      assert.deepEqual(store.since("lobby", epoch, 2, 10).recovered, true);
      clock.advance(HOUR);
      assert.deepEqual(store.latest("lobby", 10), []);
      assert.deepEqual(store.head("lobby"), { epoch, seq: 3 });
      assert.deepEqual(store.since("lobby", epoch, 3, 10), {
        recovered: true,
        epoch,
        messages: [],
      });
      const gap = store.since("lobby", epoch, 2, 10);
      assert.deepEqual(gap, { recovered: false, epoch, messages: [] });
      assert.deepEqual(seqs(append(store, "lobby", batch(1)).messages), [4]);
      store.close();
    });

    await t.step("byKey finds the first kept message of a sender's key in a channel", () => {
      const store = create({ maxPerChannel: 2 });
      const [first] = append(store, "lobby", [{ ...batch(1)[0], key: "k1" }]).messages;
      assert.deepEqual(store.byKey("lobby", "ann", "k1"), first);
      assert.equal(store.byKey("lobby", "bob", "k1"), null);
      assert.equal(store.byKey("random", "ann", "k1"), null);
      assert.equal(store.byKey("lobby", "ann", "k2"), null);
      append(store, "lobby", batch(2));
      // Trimmed out of the window: the key is free again.
      assert.equal(store.byKey("lobby", "ann", "k1"), null);
      store.close();
    });
  });
}

Deno.test("store: two memory stores have different epochs", () => {
  const a = createMemoryStore();
  const b = createMemoryStore();
  assert.notEqual(a.head("lobby").epoch, b.head("lobby").epoch);
  a.close();
  b.close();
});

Deno.test("store (sqlite file): a reopened file keeps its epoch, seqs and history", async () => {
  const dir = await Deno.makeTempDir({ prefix: "hubbub-store-" });
  try {
    const path = join(dir, "history.db");
    const first = sqliteStore(path);
    const { epoch } = append(first, "lobby", batch(3));
    first.close();

    const second = sqliteStore(path);
    assert.deepEqual(second.head("lobby"), { epoch, seq: 3 });
    const recovery = second.since("lobby", epoch, 1, 100);
    assert.equal(recovery.recovered, true);
    assert.deepEqual(recovery.messages.map((m) => m.text), ["m2", "m3"]);
    const next = append(second, "lobby", batch(1));
    assert.equal(next.epoch, epoch);
    assert.deepEqual(seqs(next.messages), [4]);
    second.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("store (sqlite file): a trimmed channel keeps its head across a restart", async () => {
  const dir = await Deno.makeTempDir({ prefix: "hubbub-store-" });
  try {
    const path = join(dir, "history.db");
    const clock = createManualClock(0);
    const first = sqliteStore(path, { maxAgeMs: HOUR, clock });
    const { epoch } = append(first, "lobby", batch(2));
    first.close();

    clock.advance(2 * HOUR);
    const second = sqliteStore(path, { maxAgeMs: HOUR, clock });
    assert.deepEqual(second.latest("lobby", 10), []);
    assert.deepEqual(second.head("lobby"), { epoch, seq: 2 });
    assert.equal(second.since("lobby", epoch, 0, 10).recovered, false);
    assert.deepEqual(seqs(append(second, "lobby", batch(1)).messages), [3]);
    second.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("store (sqlite file): a new file gets a new epoch", async () => {
  const dir = await Deno.makeTempDir({ prefix: "hubbub-store-" });
  try {
    const a = sqliteStore(join(dir, "a.db"));
    const b = sqliteStore(join(dir, "b.db"));
    assert.notEqual(a.head("lobby").epoch, b.head("lobby").epoch);
    a.close();
    b.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("store (sqlite file): a path that cannot be opened is a value, not a throw", async () => {
  const dir = await Deno.makeTempDir({ prefix: "hubbub-store-" });
  try {
    const opened = openSqliteStore(join(dir, "missing", "dir", "history.db"));
    assert.equal(opened.ok, false);
    if (!opened.ok) assert.match(opened.message, /^Cannot open the history database "/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("store (sqlite file): a second open of the same file waits, then says another process is using it; once the first closed, it opens", async () => {
  const dir = await Deno.makeTempDir({ prefix: "hubbub-store-" });
  try {
    const path = join(dir, "history.db");
    const first = sqliteStore(path);
    const second = openSqliteStore(path, { lockWaitMs: 50 });
    assert.equal(second.ok, false);
    if (!second.ok) assert.match(second.message, /another process is using it/);
    first.close();
    sqliteStore(path).close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("store (sqlite file): the log is checkpointed on a worker: the database file takes the messages while the writer's connection never checkpoints", async () => {
  const dir = await Deno.makeTempDir({ prefix: "hubbub-store-" });
  const path = join(dir, "history.db");
  const store = sqliteStore(path);
  try {
    // 1,000 messages of 300 characters: about 300 KB that only a checkpoint puts in the file.
    const text = "x".repeat(300);
    for (let i = 0; i < 50; i++) {
      const messages = batch(20, "ann", `b${i}-`).map((m) => ({ ...m, text: m.text + text }));
      append(store, `c${i % 10}`, messages);
    }
    await waitFor(
      "the database file to hold the messages",
      async () => (await Deno.stat(path)).size > 250_000,
      20_000, // the worker checkpoints once a second; a busy machine may delay it
    );
  } finally {
    store.close();
    await Deno.remove(dir, { recursive: true });
  }
});

/** The WAL's checkpoint sequence (bumped each time the log starts over), and frame 1's page and salts. */
function walState(path: string) {
  const wal = new DataView(Deno.readFileSync(`${path}-wal`).buffer);
  const salts = [wal.getUint32(16), wal.getUint32(20)];
  const frameOne = wal.byteLength >= 56
    ? {
      page: wal.getUint32(32),
      current: wal.getUint32(40) === salts[0] && wal.getUint32(44) === salts[1],
    }
    : undefined;
  return { sequence: wal.getUint32(12), frameOne };
}

/**
 * Whether the log is copied into the database to its last frame, read from the WAL index
 * (`-shm`): its header's `mxFrame` (at byte 16) against the checkpoint's `nBackfill` (byte 96).
 */
function copiedAll(path: string): boolean {
  const shm = new DataView(Deno.readFileSync(`${path}-shm`).buffer);
  return shm.getUint32(96, true) === shm.getUint32(16, true);
}

Deno.test("store (sqlite file): after a full checkpoint the worker starts the log over itself, so the writer's next commit syncs no log header", async () => {
  const dir = await Deno.makeTempDir({ prefix: "hubbub-store-" });
  const path = join(dir, "history.db");
  const store = sqliteStore(path);
  const reader = new DatabaseSync(path, { readOnly: true });
  try {
    const meta = reader.prepare("SELECT rootpage FROM sqlite_master WHERE name = 'meta'").get() as {
      rootpage: number;
    };
    let { sequence } = walState(path);
    append(store, "room", batch(20));
    for (let tries = 1;; tries++) {
      // Nothing else writes: only the worker can start the log over (its checkpoint copied it all).
      await waitFor(
        "the worker to start the log over",
        () => Promise.resolve(walState(path).sequence !== sequence),
        20_000, // the worker checkpoints once a second; a busy machine may delay it
      );
      const copied = copiedAll(path);
      append(store, "room", batch(5));
      if (!copied) {
        // Had the writer started the log over (and synced its header), frame 1 would be one of
        // its pages; it is the worker's write to meta, still current: the writer's frames follow.
        assert.deepEqual(walState(path).frameOne, { page: meta.rootpage, current: true });
        break;
      }
      // This test stalled for a second, and the worker had copied its own frame as well: the
      // writer has just started the log over itself, as it must after a full copy. Once more.
      assert.ok(tries < 5, "the worker's frame was copied before every try");
      sequence = walState(path).sequence;
    }
    assert.equal(store.latest("room", 1000).length % 5, 0);
  } finally {
    reader.close();
    store.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("store (sqlite file): an append that may not wait answers busy at once while another connection holds the write lock, and stores nothing; then it stores", async () => {
  const dir = await Deno.makeTempDir({ prefix: "hubbub-store-" });
  const path = join(dir, "history.db");
  // A minute's lock timeout: an append that waited for it would take that long, not a moment.
  const store = sqliteStore(path, { busyTimeoutMs: 60_000 });
  const other = new DatabaseSync(path);
  try {
    append(store, "room", batch(1));
    other.exec("BEGIN IMMEDIATE");
    const entries = batch(2).map((message) => ({ channel: "room", message }));
    const started = performance.now();
    const busy = store.appendAll(entries, false);
    assert.ok(performance.now() - started < 30_000, "answered without waiting for the lock");
    assert.equal(busy.ok, false);
    assert.equal(!busy.ok && busy.busy, true, JSON.stringify(busy));
    other.exec("COMMIT");
    // (This one may wait: the checkpointer could be holding the lock for a moment just now.)
    const stored = store.appendAll(entries);
    assert.ok(stored.ok);
    assert.deepEqual(stored.messages.map((message) => message.seq), [2, 3]);
    assert.deepEqual(store.latest("room", 10).map((message) => message.seq), [1, 2, 3]);
  } finally {
    other.close();
    store.close();
    await Deno.remove(dir, { recursive: true });
  }
});

/** Holds the write lock of the database at `path` on a thread of its own (see the test below). */
const LOCK_HOLDER = `
import { DatabaseSync } from "node:sqlite";
self.onmessage = ({ data: { path, signal } }) => {
  const db = new DatabaseSync(path);
  db.exec("BEGIN IMMEDIATE");
  const state = new Int32Array(signal);
  self.postMessage("locked");
  Atomics.wait(state, 0, 0); // until the test is about to append
  Atomics.wait(state, 0, 1, 50); // and a moment longer, so that the append finds the lock held
  db.exec("COMMIT");
  db.close();
  self.postMessage("released");
};`;

Deno.test("store (sqlite file): an append that may wait waits for a write lock another thread holds, also after one that may not", async () => {
  const dir = await Deno.makeTempDir({ prefix: "hubbub-store-" });
  const path = join(dir, "history.db");
  const store = sqliteStore(path);
  const url = URL.createObjectURL(new Blob([LOCK_HOLDER], { type: "text/javascript" }));
  const holder = new Worker(url, { type: "module" });
  try {
    const entries = batch(2).map((message) => ({ channel: "room", message }));
    assert.ok(store.appendAll(entries, false).ok);
    const heard = (what: string) =>
      new Promise<void>((resolve) => {
        holder.onmessage = ({ data }) => data === what && resolve();
      });
    const signal = new SharedArrayBuffer(4);
    const locked = heard("locked");
    holder.postMessage({ path, signal });
    await locked;
    const released = heard("released");
    Atomics.store(new Int32Array(signal), 0, 1);
    Atomics.notify(new Int32Array(signal), 0);
    // Blocks this thread until the holder lets go (it holds the lock 50 ms more, 5 s at most).
    const stored = store.appendAll(entries);
    assert.ok(stored.ok, JSON.stringify(stored));
    assert.deepEqual(stored.messages.map((message) => message.seq), [3, 4]);
    await released;
  } finally {
    holder.terminate();
    URL.revokeObjectURL(url);
    store.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("store (sqlite file): what a process that died had stored is history after a restart: same epoch, seqs continue, trimming and keys hold", async () => {
  const dir = await Deno.makeTempDir({ prefix: "hubbub-store-" });
  const path = join(dir, "history.db");
  try {
    // 500 messages in each of 3 channels, 100 kept each; the child exits without closing.
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "eval",
        `
        import { openSqliteStore } from ${
          JSON.stringify(import.meta.resolve("../../lib/store/sqlite.ts"))
        };
        const opened = openSqliteStore(${
          JSON.stringify(path)
        }, { maxPerChannel: 100, deleteEvery: 64 });
        if (!opened.ok) throw new Error(opened.message);
        for (let i = 1; i <= 1500; i++) {
          const message = { from: "ann", text: "m" + i, id: "i" + i, ts: "t", key: "k" + i };
          if (!opened.store.append("c" + (i % 3), [message]).ok) throw new Error("append " + i);
        }
        console.log(opened.store.head("c0").epoch);
        Deno.exit(0);
      `,
      ],
      stdout: "piped",
      stderr: "inherit",
    });
    const output = await child.output();
    assert.equal(output.code, 0);
    const epoch = new TextDecoder().decode(output.stdout).trim();

    const store = sqliteStore(path, { maxPerChannel: 100 });
    try {
      assert.deepEqual(store.head("c0"), { epoch, seq: 500 });
      const recovery = store.since("c0", epoch, 450, 1000);
      assert.equal(recovery.recovered, true);
      assert.deepEqual(seqs(recovery.messages), Array.from({ length: 50 }, (_, i) => 451 + i));
      assert.equal(recovery.messages.at(-1)?.text, "m1500");
      assert.equal(store.since("c0", epoch, 300, 1000).recovered, false);
      assert.deepEqual(
        seqs(store.latest("c2", 1000)),
        Array.from({ length: 100 }, (_, i) => 401 + i),
      );
      assert.equal(store.byKey("c1", "ann", "k1498")?.seq, 500);
      assert.equal(store.byKey("c1", "ann", "k4"), null); // trimmed
      assert.deepEqual(seqs(append(store, "c0", batch(1)).messages), [501]);
    } finally {
      store.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("store (sqlite file): a file of an earlier version (messages in a per-channel table) opens with its history, epoch and keys, moved to the log", async () => {
  const dir = await Deno.makeTempDir({ prefix: "hubbub-store-" });
  const path = join(dir, "history.db");
  try {
    const earlier = new DatabaseSync(path);
    earlier.exec(`
      CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
      CREATE TABLE heads (channel TEXT PRIMARY KEY, seq INTEGER NOT NULL) WITHOUT ROWID;
      CREATE TABLE messages (
        channel TEXT NOT NULL, seq INTEGER NOT NULL, id TEXT NOT NULL, from_name TEXT NOT NULL,
        text TEXT NOT NULL, ts TEXT NOT NULL, key TEXT, at INTEGER NOT NULL,
        PRIMARY KEY (channel, seq)
      ) WITHOUT ROWID;
      CREATE INDEX messages_key ON messages (channel, from_name, key) WHERE key IS NOT NULL;
      INSERT INTO meta VALUES ('epoch', 'earlier1');
      INSERT INTO heads VALUES ('quiet', 7);
    `);
    const insert = earlier.prepare("INSERT INTO messages VALUES (?, ?, ?, ?, ?, ?, ?, ?)");
    // Inserted out of seq order, as a per-channel table does not keep arrival order.
    for (const seq of [3, 1, 2]) {
      insert.run(
        "lobby",
        seq,
        `i${seq}`,
        "ann",
        `m${seq}`,
        "t",
        seq === 2 ? "k2" : null,
        Date.now(),
      );
    }
    earlier.close();

    const store = sqliteStore(path);
    try {
      assert.deepEqual(store.head("lobby"), { epoch: "earlier1", seq: 3 });
      assert.deepEqual(store.head("quiet"), { epoch: "earlier1", seq: 7 });
      assert.deepEqual(store.latest("lobby", 10).map((m) => m.text), ["m1", "m2", "m3"]);
      assert.equal(store.byKey("lobby", "ann", "k2")?.seq, 2);
      assert.deepEqual(seqs(append(store, "quiet", batch(1)).messages), [8]);
    } finally {
      store.close();
    }
    const moved = new DatabaseSync(path);
    const tables = moved.prepare(
      "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name",
    )
      .all().map((row) => (row as { name: string }).name);
    moved.close();
    assert.deepEqual(tables, ["heads", "log", "meta"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("store (sqlite file): a full disk fails the append as a value, never a throw, and the store goes on", async () => {
  const dir = await Deno.makeTempDir({ prefix: "hubbub-store-" });
  try {
    // SQLite rolls the transaction back by itself when the file cannot grow; a second
    // ROLLBACK threw "no transaction is active", out of a timer: the process died.
    const store = sqliteStore(join(dir, "history.db"), { maxPages: 40 });
    const big = (n: number) => batch(n).map((m) => ({ ...m, text: "x".repeat(3000) }));
    let failed: { ok: false; message: string } | undefined;
    for (let i = 0; i < 100 && failed === undefined; i++) {
      const result = store.appendAll(big(5).map((message) => ({ channel: "lobby", message })));
      if (!result.ok) failed = result;
    }
    assert.ok(failed, "the file filled up");
    assert.match(failed.message, /full/);
    const head = store.head("lobby").seq;
    assert.ok(head > 0);
    assert.equal(store.latest("lobby", 1)[0].seq, head, "what was stored is still read");
    store.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("store (sqlite file): a damaged file is refused, not read cut short (its seqs would be handed out again)", async () => {
  const dir = await Deno.makeTempDir({ prefix: "hubbub-store-" });
  try {
    const path = join(dir, "history.db");
    const first = sqliteStore(path);
    append(first, "lobby", batch(300).map((m) => ({ ...m, text: `${m.text} ${"x".repeat(200)}` })));
    first.close(); // (the last connection to close checkpoints the log into the file)
    const file = await Deno.open(path, { read: true, write: true });
    const pages = (await file.stat()).size / 4096;
    await file.seek(Math.floor(pages * 0.6) * 4096, Deno.SeekMode.Start);
    await file.write(new Uint8Array(4096).fill(0xff));
    file.close();
    const second = openSqliteStore(path);
    if (second.ok) second.store.close();
    assert.equal(second.ok, false, "a damaged file must not open");
    assert.match(second.message, /damaged|malformed/);
    // Nor is it kept open: the checkpointer worker, started before the file was read, stopped.
    // (Reading /proc/<pid>/fd itself would need --allow-all: `ls` reads it.)
    const listed = await new Deno.Command("ls", { args: ["-l", `/proc/${Deno.pid}/fd`] }).output();
    const open = new TextDecoder().decode(listed.stdout).split("\n").filter((l) =>
      l.includes(path)
    );
    assert.deepEqual(open, []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("store (sqlite file): a reader holding the log back does not hold commits off (the worker's RESTART gives up)", async () => {
  const dir = await Deno.makeTempDir({ prefix: "hubbub-store-" });
  const path = join(dir, "history.db");
  let restarts = 0;
  // Commits wait up to 3 s for the lock; the worker's RESTART used to hold it 5 s for the reader.
  const store = sqliteStore(path, {
    busyTimeoutMs: 3000,
    checkpointer: {
      restartFrames: 4,
      onCheckpoint: (done) => {
        if (done.restart) restarts++;
      },
    },
  });
  const reader = new DatabaseSync(path);
  try {
    // An outside reader (a sqlite3 shell, a backup, a replicator) inside a read transaction.
    reader.exec("BEGIN");
    reader.prepare("SELECT count(*) FROM log").get();
    let sent = 0;
    while (restarts < 2) {
      const result = store.appendAll([{ channel: "lobby", message: batch(1)[0] }], true);
      assert.ok(result.ok, `append ${++sent}: ${result.ok ? "" : result.message}`);
      await new Promise((resolve) => setTimeout(resolve, 0)); // (lets the worker's reports in)
    }
  } finally {
    reader.exec("COMMIT");
    reader.close();
    store.close();
    await Deno.remove(dir, { recursive: true });
  }
});

for (const [name, make] of IMPLEMENTATIONS) {
  Deno.test(`store (${name}): channels left with no message fold into one floor, and count on from it`, () => {
    const clock = createManualClock(1_000_000);
    const store = make({ clock, maxAgeMs: HOUR, maxEmptyHeads: 2 });
    append(store, "a", batch(1));
    append(store, "b", batch(3));
    append(store, "c", batch(2));
    const { epoch } = store.head("a");
    clock.advance(HOUR / 2);
    append(store, "kept", batch(1));
    clock.advance(HOUR / 2 + 60_000); // a, b and c expired (three: over 2), and a sweep is due
    append(store, "z", batch(1)); // (an append sweeps)
    for (const channel of ["a", "b", "c", "never"]) {
      assert.deepEqual(store.head(channel), { epoch, seq: 3 }, `${channel}: the floor`);
    }
    assert.equal(store.head("kept").seq, 1, "a channel with a message kept is not folded");
    assert.equal(store.since("a", epoch, 1, 10).recovered, false, "a's seq 2 and 3 never were");
    assert.equal(store.since("b", epoch, 3, 10).recovered, true, "nothing after b's 3");
    assert.deepEqual(seqs(append(store, "a", batch(2)).messages), [4, 5], "never a seq twice");
    store.close();
  });
}

Deno.test("store (sqlite file): folded heads stay folded after a restart", async () => {
  const dir = await Deno.makeTempDir({ prefix: "hubbub-store-" });
  try {
    const path = join(dir, "history.db");
    const clock = createManualClock(1_000_000);
    const options = { clock, maxAgeMs: HOUR, maxEmptyHeads: 1 };
    const first = sqliteStore(path, options);
    append(first, "a", batch(4));
    append(first, "b", batch(2));
    clock.advance(HOUR + 60_000);
    append(first, "z", batch(1));
    first.close();
    const second = sqliteStore(path, options);
    assert.equal(second.head("a").seq, 4);
    assert.equal(second.head("b").seq, 4, "b counts from the floor: its own head is gone");
    assert.deepEqual(seqs(append(second, "b", batch(1)).messages), [5]);
    second.close();
    const db = new DatabaseSync(path);
    const { count } = db.prepare("SELECT count(*) AS count FROM heads").get() as { count: number };
    db.close();
    assert.equal(count, 0, "the heads table keeps none of them");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
