/**
 * The SQLite message store, on the runtime's built-in `node:sqlite` (the same
 * code runs on Deno and Bun, with no npm package). The epoch and each
 * channel's head seq live in their own tables, so they survive trimming and
 * restarts; a new file gets a new epoch. Each append batch is one transaction
 * (WAL, `synchronous=NORMAL`), so a tick's messages cost one commit, and it
 * writes them to the `journal` table in arrival order, so the commit touches
 * the journal's last page or two whatever the channels (`journal.ts`).
 * Every 4096 messages one transaction folds the journal into the per-channel
 * `messages` table, where each channel's page is then written once for many
 * messages (measured with 1000 channels and 8 messages per commit: 27–31 µs
 * of CPU a message when each went straight to its channel's page, 17–20 µs
 * so); reads take the unfolded messages from memory. What a process that died left in the journal is folded when the
 * file is opened again.
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
import { createJournal, type JournalRow, toStored } from "./journal.ts";
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
  CREATE TABLE IF NOT EXISTS journal (
    channel TEXT NOT NULL, seq INTEGER NOT NULL, id TEXT NOT NULL, from_name TEXT NOT NULL,
    text TEXT NOT NULL, ts TEXT NOT NULL, key TEXT, at INTEGER NOT NULL
  );
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
  /** Messages in the journal that make the store fold it into the per-channel table; 4096. */
  foldEvery?: number;
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
/** Messages in the journal that make the store fold it into the per-channel table. */
const FOLD_EVERY = 4096;

const COLUMNS = "channel, seq, id, from_name, text, ts";
const ALL_COLUMNS = `${COLUMNS}, key, at`;

/**
 * The store's statements. `+at`: the age is filtered row by row while the
 * primary key gives the order (with an index on the age, SQLite read and
 * sorted every kept row of the channel to return the latest 50).
 */
function prepare(db: DatabaseSync) {
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
    journal: db.prepare(`INSERT INTO journal (${ALL_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`),
    journalRows: db.prepare(`SELECT ${ALL_COLUMNS} FROM journal ORDER BY rowid`),
    fold: db.prepare(
      `INSERT INTO messages (${ALL_COLUMNS}) SELECT ${ALL_COLUMNS} FROM journal ORDER BY channel, seq`,
    ),
    emptyJournal: db.prepare("DELETE FROM journal"),
    trimCount: db.prepare("DELETE FROM messages WHERE channel = ? AND seq <= ?"),
    trimAge: db.prepare(
      "DELETE FROM messages WHERE channel = ?1 AND seq < " +
        "(SELECT seq FROM messages WHERE channel = ?1 AND +at > ?2 ORDER BY seq LIMIT 1)",
    ),
    latest: db.prepare(
      `SELECT ${COLUMNS} FROM messages WHERE channel = ? AND +at > ? ORDER BY seq DESC LIMIT ?`,
    ),
    before: db.prepare(
      `SELECT ${COLUMNS} FROM messages WHERE channel = ? AND seq < ? AND seq > ? AND +at > ? ` +
        "ORDER BY seq DESC LIMIT ?",
    ),
    after: db.prepare(
      `SELECT ${COLUMNS} FROM messages WHERE channel = ? AND seq > ? AND +at > ? ORDER BY seq`,
    ),
    oldest: db.prepare(
      "SELECT seq FROM messages WHERE channel = ? AND seq > ? AND +at > ? ORDER BY seq LIMIT 1",
    ),
    byKey: db.prepare(
      `SELECT ${COLUMNS} FROM messages WHERE channel = ? AND from_name = ? AND key = ? ` +
        "AND seq > ? AND at > ? ORDER BY seq LIMIT 1",
    ),
  };
  // Rows as arrays: on Deno, building an object per row took two thirds of a 50-message read.
  // (Deno 2.9 and Bun 1.4 have it; where it is missing, `toRow` takes the object's values.)
  for (const read of [q.latest, q.before, q.after, q.byKey, q.journalRows]) {
    (read as Partial<{ setReturnArrays(enabled: boolean): void }>).setReturnArrays?.(true);
  }
  return q;
}

/** The epoch the file was given when it was created (a new file gets one now). */
function epochOf(db: DatabaseSync): string {
  const found = db.prepare("SELECT value FROM meta WHERE key = 'epoch'").get() as
    | { value: string }
    | undefined;
  if (found !== undefined) return found.value;
  const epoch = newEpoch();
  db.prepare("INSERT INTO meta (key, value) VALUES ('epoch', ?)").run(epoch);
  return epoch;
}

function createSqliteStore(
  db: DatabaseSync,
  lock: DatabaseSync | null,
  path: string | null,
  options: SqliteOptions,
): MessageStore {
  const { maxPerChannel, maxAgeMs, now } = resolveOptions(options);
  const foldEvery = Math.max(1, Math.floor(options.foldEvery ?? FOLD_EVERY));
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
  const epoch = epochOf(db);
  const q = prepare(db);
  const journal = createJournal();

  // The file is this process's alone (`<path>-lock`; the checkpointer writes no rows), so a head
  // read once stays true. A channel with journal rows is never evicted: the query reads only
  // the folded rows.
  const heads = new Map<string, number>();
  const headSeq = (channel: string): number => {
    let seq = heads.get(channel);
    if (seq === undefined) {
      seq = Number((q.head.get(channel) as { seq: number }).seq);
      if (heads.size >= MAX_CACHED_HEADS) {
        for (const known of heads.keys()) if (!journal.has(known)) heads.delete(known);
      }
      heads.set(channel, seq);
    }
    return seq;
  };
  // Reads skip expired and count-trimmed messages (a read never writes); folds delete them.
  const cutoff = () => now() - maxAgeMs;
  /** The newest seq of `channel` that `--history-size` trims, deleted or not yet. */
  const floor = (channel: string) => headSeq(channel) - maxPerChannel;
  /** `channel`'s journal rows that reads return: not trimmed, not expired. */
  const recent = (channel: string): JournalRow[] => {
    const rows = journal.rows(channel);
    if (rows.length === 0) return [];
    const [oldestKept, expired] = [floor(channel), cutoff()];
    return rows.filter((row) => row.seq > oldestKept && row.at > expired);
  };
  const oldestFirst = (rows: unknown[]): StoredMessage[] =>
    rows.map((row) => toMessage(toRow(row)));
  const newestFirst = (rows: unknown[]): StoredMessage[] => oldestFirst(rows).reverse();
  /** The folded rows' `count` newest of a read, then the journal's `newer`: oldest first. */
  const joined = (newer: JournalRow[], count: number, folded: (n: number) => unknown[]) => {
    if (newer.length >= count) return newer.slice(newer.length - count).map(toStored);
    return [...newestFirst(folded(count - newer.length)), ...newer.map(toStored)];
  };

  /**
   * Moves the journal into `messages` in one transaction, and trims each
   * channel whose head passed a multiple of `TRIM_EVERY`. On failure the rows
   * stay in the journal (and in memory) and the next fold takes them.
   */
  let nextFold = foldEvery;
  const fold = (): void => {
    if (journal.size === 0) return;
    const at = now();
    try {
      q.begin.run();
      try {
        q.fold.run();
        q.emptyJournal.run();
        for (const [channel, rows] of journal.channels()) trim(channel, rows, at);
        q.commit.run();
      } catch (error) {
        db.exec("ROLLBACK");
        throw error;
      }
      journal.clear();
      nextFold = foldEvery;
    } catch {
      nextFold = journal.size + foldEvery;
    }
  };
  const trim = (channel: string, rows: readonly JournalRow[], at: number) => {
    const before = rows[0].seq - 1, last = rows[rows.length - 1].seq;
    if (Math.floor(last / TRIM_EVERY) === Math.floor(before / TRIM_EVERY)) return;
    q.trimCount.run(channel, last - maxPerChannel);
    // The age trim keeps the channel's first row younger than the cutoff, and every row when
    // none is, so the newest row still names the head; the heads table is written only when
    // it deletes.
    if (Number(q.trimAge.run(channel, at - maxAgeMs).changes) > 0) q.setHead.run(channel, last);
  };

  // What a process that stopped without closing left in the journal is folded first.
  for (const row of q.journalRows.all()) {
    const [channel, seq, id, from, text, ts, key, at] = toRow(row) as unknown as JournalColumns;
    journal.add({ type: "message", channel, from, text, id, ts, seq: Number(seq), key, at });
    heads.set(channel, Number(seq));
  }
  fold();

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
      const at = now();
      const rows: JournalRow[] = [];
      try {
        /** Per channel of the batch: its last seq so far. */
        const lastSeqs = new Map<string, number>();
        for (const { channel, message } of entries) {
          const { from, text, id, ts } = message;
          const seq = (lastSeqs.get(channel) ?? headSeq(channel)) + 1;
          lastSeqs.set(channel, seq);
          const key = message.key ?? null;
          q.journal.run(channel, seq, id, from, text, ts, key, at);
          rows.push({ type: "message", channel, from, text, id, ts, seq, key, at });
        }
        q.commit.run();
        for (const [channel, seq] of lastSeqs) heads.set(channel, seq);
      } catch (error) {
        db.exec("ROLLBACK");
        return { ok: false, message: `Cannot store messages: ${reason(error)}` };
      }
      for (const row of rows) journal.add(row);
      if (journal.size >= nextFold) fold();
      return { ok: true, epoch, messages: rows.map(toStored) };
    },
    latest(channel, limit) {
      const n = Math.min(clampLimit(limit), maxPerChannel);
      if (n === 0) return [];
      // Seqs are continuous up to the head: the newest rows are the ones `--history-size` keeps.
      return joined(recent(channel), n, (rest) => q.latest.all(channel, cutoff(), rest));
    },
    before(channel, seq, limit) {
      const n = clampLimit(limit);
      if (n === 0) return [];
      const newer = recent(channel).filter((row) => row.seq < seq);
      return joined(newer, n, (rest) => q.before.all(channel, seq, floor(channel), cutoff(), rest));
    },
    since(channel, sinceEpoch, seq, limit) {
      const head = { epoch, seq: headSeq(channel) };
      const newer = recent(channel);
      const row = q.oldest.get(channel, floor(channel), cutoff()) as { seq: number } | undefined;
      const oldest = row !== undefined ? Number(row.seq) : newer.length > 0 ? newer[0].seq : null;
      const n = clampLimit(limit);
      if (!canRecover(head, oldest, sinceEpoch, seq, n)) {
        return { recovered: false, epoch, messages: store.latest(channel, n) };
      }
      const missed = newer.filter((message) => message.seq > seq).map(toStored);
      const folded = missed.length > 0 && missed[0].seq === seq + 1
        ? []
        : oldestFirst(q.after.all(channel, seq, cutoff()));
      return { recovered: true, epoch, messages: [...folded, ...missed] };
    },
    head(channel) {
      return { epoch, seq: headSeq(channel) };
    },
    byKey(channel, from, key) {
      const row = q.byKey.get(channel, from, key, floor(channel), cutoff());
      if (row !== undefined) return toMessage(toRow(row));
      const found = recent(channel).find((message) => message.from === from && message.key === key);
      return found === undefined ? null : toStored(found);
    },
    close() {
      if (closed) return;
      closed = true;
      fold();
      checkpointer?.stop();
      db.close(); // (the last connection to close checkpoints the log and deletes it)
      lock?.close();
    },
  };
  return store;
}

/** A journal row as `journalRows` returns it. */
type JournalColumns = [
  channel: string,
  seq: number,
  id: string,
  from: string,
  text: string,
  ts: string,
  key: string | null,
  at: number,
];
