/**
 * The SQLite message store, on the runtime's built-in `node:sqlite` (the same
 * code runs on Deno and Bun, with no npm package). The epoch and each
 * channel's head seq live in their own tables, so they survive trimming and
 * restarts; a new file gets a new epoch. Each append batch is one transaction
 * (WAL, `synchronous=NORMAL`), so a tick's messages cost one commit.
 *
 * One process at a time: `<path>-lock` is held for as long as the store is
 * open, and a second server on the same directory waits 5 s, then runs on
 * memory. Heads are therefore kept in memory too; a channel's head is its
 * newest row's seq (trimming never removes that row); and trimming runs once
 * per 64 messages of a channel, so a commit usually writes its rows and
 * little else. Reads skip what is trimmed but not yet deleted (older than
 * `--history-size` messages or than `--history-ttl`), so what they return is
 * as if every append trimmed. There is no index on the age: expired messages
 * are the oldest of their channel, deleted in seq order. The write-ahead log
 * is checkpointed on a worker thread (`checkpointer.ts`), so its disk syncs
 * never stall the event loop.
 *
 * @module
 */
import { DatabaseSync } from "node:sqlite";
import { startCheckpointer } from "./checkpointer.ts";
import {
  type Appended,
  canRecover,
  type ChannelMessage,
  clampLimit,
  type MessageStore,
  newEpoch,
  type NewMessage,
  resolveOptions,
  type StoredMessage,
  type StoreOptions,
} from "./store.ts";

/** What opening a database gave: the store, or why it could not be opened. */
export type Opened = { ok: true; store: MessageStore } | { ok: false; message: string };

const SCHEMA = `
  CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
  CREATE TABLE IF NOT EXISTS heads (channel TEXT PRIMARY KEY, seq INTEGER NOT NULL) WITHOUT ROWID;
  CREATE TABLE IF NOT EXISTS messages (
    channel TEXT NOT NULL, seq INTEGER NOT NULL, id TEXT NOT NULL, from_name TEXT NOT NULL,
    text TEXT NOT NULL, ts TEXT NOT NULL, key TEXT, at INTEGER NOT NULL,
    PRIMARY KEY (channel, seq)
  ) WITHOUT ROWID;
  DROP INDEX IF EXISTS messages_at;
  CREATE INDEX IF NOT EXISTS messages_key ON messages (channel, from_name, key) WHERE key IS NOT NULL;
`;

/** A message row as the reads return it: an array (in `columns` order), not an object per row. */
type Row = [channel: string, seq: number, id: string, from: string, text: string, ts: string];

const toRow = (row: unknown): Row =>
  (Array.isArray(row) ? row : Object.values(row as Record<string, unknown>)) as Row;

const toMessage = ([channel, seq, id, from, text, ts]: Row): StoredMessage => ({
  type: "message",
  channel,
  from,
  text,
  id,
  ts,
  seq: Number(seq),
});

const reason = (error: unknown): string => error instanceof Error ? error.message : String(error);

/**
 * Opens (or creates) the history database at `path` (`:memory:` for one that
 * lives only in this process).
 *
 * @example
 * ```ts
 * import { openSqliteStore } from "./sqlite.ts";
 * const opened = openSqliteStore("./data/history.db");
 * if (!opened.ok) throw new Error(opened.message);
 * opened.store.append("lobby", [{ from: "ann", text: "hi", id: "m1", ts: new Date().toISOString() }]);
 * opened.store.close();
 * ```
 */
export function openSqliteStore(path: string, options: SqliteOptions = {}): Opened {
  const onDisk = path !== ":memory:";
  let lock: DatabaseSync | null = null;
  let db: DatabaseSync | null = null;
  try {
    if (onDisk) lock = lockFor(path, options.lockWaitMs ?? LOCK_WAIT_MS);
    db = new DatabaseSync(path);
    return { ok: true, store: createSqliteStore(db, lock, onDisk ? path : null, options) };
  } catch (error) {
    db?.close();
    lock?.close();
    const busy = /locked|busy/i.test(reason(error));
    return {
      ok: false,
      message: `Cannot open the history database "${path}": ${
        busy ? "another process is using it" : reason(error)
      }`,
    };
  }
}

/** How long opening waits for another process to let go of the database. */
const LOCK_WAIT_MS = 5000;

/** What `openSqliteStore` takes besides the store's own options. */
export type SqliteOptions = StoreOptions & {
  /** How long to wait for another process holding the database; 5 s by default. */
  lockWaitMs?: number;
};

/**
 * Keeps the database at `path` to this process: a small database beside it
 * (`<path>-lock`) written once in exclusive locking mode, which holds its
 * lock until closed. (The history database itself is shared with the
 * checkpointer's connection, so it cannot be the lock.) Throws "database is
 * locked" once `waitMs` have passed while another process holds it.
 */
function lockFor(path: string, waitMs: number): DatabaseSync {
  const lock = new DatabaseSync(`${path}-lock`);
  try {
    lock.exec(`PRAGMA busy_timeout = ${Math.max(0, Math.floor(waitMs))}`);
    lock.exec("PRAGMA locking_mode = EXCLUSIVE");
    lock.exec("CREATE TABLE IF NOT EXISTS holder (pid INTEGER)");
    lock.exec("DELETE FROM holder"); // the first write takes the lock, and keeps it
    return lock;
  } catch (error) {
    lock.close();
    throw error;
  }
}

/** A channel is trimmed when its seq passes a multiple of this: rows go in runs, not one a message. */
const TRIM_EVERY = 64;
/** Heads kept in memory; past this many channels the cache starts over (a query refills it). */
const MAX_CACHED_HEADS = 100_000;
/** Pages of log after which the writer's own connection checkpoints, when no worker does. */
const AUTOCHECKPOINT_PAGES = 10_000;

function createSqliteStore(
  db: DatabaseSync,
  lock: DatabaseSync | null,
  path: string | null,
  options: StoreOptions,
): MessageStore {
  const { maxPerChannel, maxAgeMs, now } = resolveOptions(options);
  db.exec("PRAGMA busy_timeout = 5000; PRAGMA cache_size = -16384;");
  db.exec("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;");
  // Checkpoints run on a worker (checkpointer.ts), never inside this connection's commits; if
  // there is no worker, or it fails, this connection checkpoints every 10,000 pages (40 MB).
  let closed = false;
  const checkpointer = path === null ? null : startCheckpointer(path, () => {
    if (!closed) db.exec(`PRAGMA wal_autocheckpoint = ${AUTOCHECKPOINT_PAGES}`);
  });
  db.exec(`PRAGMA wal_autocheckpoint = ${checkpointer === null ? AUTOCHECKPOINT_PAGES : 0}`);
  db.exec(SCHEMA);
  const found = db.prepare("SELECT value FROM meta WHERE key = 'epoch'").get() as
    | { value: string }
    | undefined;
  const epoch = found?.value ?? newEpoch();
  if (found === undefined) {
    db.prepare("INSERT INTO meta (key, value) VALUES ('epoch', ?)").run(epoch);
  }

  const columns = "channel, seq, id, from_name, text, ts";
  // `+at`: the age is filtered row by row while the primary key gives the order (with an index
  // on the age, SQLite read and sorted every kept row of the channel to return the latest 50).
  const q = {
    begin: db.prepare("BEGIN IMMEDIATE"),
    commit: db.prepare("COMMIT"),
    head: db.prepare(
      "SELECT MAX(IFNULL((SELECT seq FROM heads WHERE channel = ?1), 0), " +
        "IFNULL((SELECT MAX(seq) FROM messages WHERE channel = ?1), 0)) AS seq",
    ),
    setHead: db.prepare(
      "INSERT INTO heads (channel, seq) VALUES (?, ?) ON CONFLICT (channel) DO UPDATE SET seq = excluded.seq",
    ),
    insert: db.prepare(
      "INSERT INTO messages (channel, seq, id, from_name, text, ts, key, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    ),
    trimCount: db.prepare("DELETE FROM messages WHERE channel = ? AND seq <= ?"),
    trimAge: db.prepare(
      "DELETE FROM messages WHERE channel = ?1 AND seq < " +
        "(SELECT seq FROM messages WHERE channel = ?1 AND +at > ?2 ORDER BY seq LIMIT 1)",
    ),
    latest: db.prepare(
      `SELECT ${columns} FROM messages WHERE channel = ? AND +at > ? ORDER BY seq DESC LIMIT ?`,
    ),
    before: db.prepare(
      `SELECT ${columns} FROM messages WHERE channel = ? AND seq < ? AND seq > ? AND +at > ? ` +
        "ORDER BY seq DESC LIMIT ?",
    ),
    after: db.prepare(
      `SELECT ${columns} FROM messages WHERE channel = ? AND seq > ? AND +at > ? ORDER BY seq`,
    ),
    oldest: db.prepare(
      "SELECT seq FROM messages WHERE channel = ? AND seq > ? AND +at > ? ORDER BY seq LIMIT 1",
    ),
    byKey: db.prepare(
      `SELECT ${columns} FROM messages WHERE channel = ? AND from_name = ? AND key = ? ` +
        "AND seq > ? AND at > ? ORDER BY seq LIMIT 1",
    ),
  };

  // Rows as arrays: on Deno, building an object per row took two thirds of a 50-message read.
  // (Deno 2.9 and Bun 1.4 have it; where it is missing, `toRow` takes the object's values.)
  for (const read of [q.latest, q.before, q.after, q.byKey]) {
    (read as Partial<{ setReturnArrays(enabled: boolean): void }>).setReturnArrays?.(true);
  }

  // The file is this process's alone (`<path>-lock`; the checkpointer writes no rows), so a head
  // read once stays true.
  const heads = new Map<string, number>();
  const headSeq = (channel: string): number => {
    let seq = heads.get(channel);
    if (seq === undefined) {
      seq = Number((q.head.get(channel) as { seq: number }).seq);
      if (heads.size >= MAX_CACHED_HEADS) heads.clear();
      heads.set(channel, seq);
    }
    return seq;
  };
  // Reads skip expired and count-trimmed messages (a read never writes); appends delete them.
  const cutoff = () => now() - maxAgeMs;
  /** The newest seq of `channel` that `--history-size` trims, deleted or not yet. */
  const floor = (channel: string) => headSeq(channel) - maxPerChannel;
  const oldestFirst = (rows: unknown[]): StoredMessage[] =>
    rows.map((row) => toMessage(toRow(row)));
  const newestFirst = (rows: unknown[]): StoredMessage[] => oldestFirst(rows).reverse();

  const store: MessageStore = {
    append(channel: string, messages: readonly NewMessage[]): Appended {
      return store.appendAll(messages.map((message) => ({ channel, message })));
    },
    appendAll(entries: readonly ChannelMessage[]): Appended {
      if (entries.length === 0) return { ok: true, epoch, messages: [] };
      try {
        q.begin.run();
      } catch (error) {
        return { ok: false, message: `Cannot store messages: ${reason(error)}` };
      }
      try {
        /** Per channel of the batch: its head before the batch and its last seq in it. */
        const batch = new Map<string, { before: number; last: number }>();
        const at = now();
        const stored = entries.map(({ channel, message }): StoredMessage => {
          const { from, text, id, ts, key } = message;
          let seqs = batch.get(channel);
          if (seqs === undefined) {
            const before = headSeq(channel);
            batch.set(channel, seqs = { before, last: before });
          }
          const seq = ++seqs.last;
          q.insert.run(channel, seq, id, from, text, ts, key ?? null, at);
          return { type: "message", channel, from, text, id, ts, seq };
        });
        for (const [channel, { before, last }] of batch) {
          if (Math.floor(last / TRIM_EVERY) === Math.floor(before / TRIM_EVERY)) continue;
          q.trimCount.run(channel, last - maxPerChannel);
          // Measured from this batch's time, the age trim keeps the rows just written, so the
          // newest row still names the head; the heads table is written only when it deletes.
          if (Number(q.trimAge.run(channel, at - maxAgeMs).changes) > 0) {
            q.setHead.run(channel, last);
          }
        }
        q.commit.run();
        for (const [channel, { last }] of batch) heads.set(channel, last);
        return { ok: true, epoch, messages: stored };
      } catch (error) {
        db.exec("ROLLBACK");
        return { ok: false, message: `Cannot store messages: ${reason(error)}` };
      }
    },
    latest(channel, limit) {
      const n = clampLimit(limit);
      if (n === 0) return [];
      // Seqs are continuous up to the head: the newest rows are the ones `--history-size` keeps.
      return newestFirst(q.latest.all(channel, cutoff(), Math.min(n, maxPerChannel)));
    },
    before(channel, seq, limit) {
      const n = clampLimit(limit);
      if (n === 0) return [];
      return newestFirst(q.before.all(channel, seq, floor(channel), cutoff(), n));
    },
    since(channel, sinceEpoch, seq, limit) {
      const head = { epoch, seq: headSeq(channel) };
      const row = q.oldest.get(channel, floor(channel), cutoff()) as { seq: number } | undefined;
      const oldest = row === undefined ? null : Number(row.seq);
      const n = clampLimit(limit);
      if (canRecover(head, oldest, sinceEpoch, seq, n)) {
        return {
          recovered: true,
          epoch,
          messages: oldestFirst(q.after.all(channel, seq, cutoff())),
        };
      }
      return { recovered: false, epoch, messages: store.latest(channel, n) };
    },
    head(channel) {
      return { epoch, seq: headSeq(channel) };
    },
    byKey(channel, from, key) {
      const row = q.byKey.get(channel, from, key, floor(channel), cutoff());
      return row === undefined ? null : toMessage(toRow(row));
    },
    close() {
      if (closed) return;
      closed = true;
      checkpointer?.stop();
      db.close(); // (the last connection to close checkpoints the log and deletes it)
      lock?.close();
    },
  };
  return store;
}
