/**
 * The SQLite message store, on the runtime's built-in `node:sqlite` (the same
 * code runs on Deno and Bun, with no npm package). A new file gets a new
 * epoch, kept in `meta`.
 *
 * Messages of every channel go to one table, `log`, in arrival order (its
 * rowids only grow), and each append batch is one transaction (WAL,
 * `synchronous=NORMAL`): a tick's messages cost one commit, which touches
 * the log's last page or two whatever the channels. The table has no index:
 * which row holds each kept seq of a channel, and each sender's key, are in
 * memory (`log_index.ts`, about 24 bytes a kept message plus ~100 per keyed
 * one), built by one scan of the table when the file is opened. Reads fetch
 * their rows by rowid. (With the rows in a per-channel table, each commit
 * wrote a page per channel it touched: 27–31 µs of CPU a message with 1000
 * channels and 8 messages per commit; 6–8 µs so.)
 *
 * Rows trimmed by `--history-size`, or older than `--history-ttl`, leave the
 * index at once (reads never see them) and the table in batches of 2048, in
 * rowid order, within an append's transaction; expiry is checked when a
 * channel is read or written, and in every channel once a minute. A channel
 * whose every message expired keeps its head in `heads`, so its numbering
 * goes on across restarts.
 *
 * One process at a time: `<path>-lock` is held for as long as the store is
 * open, and a second server on the same directory waits 5 s, then runs on
 * memory, so what is in memory stays true. The write-ahead log is
 * checkpointed on a worker thread (`checkpointer.ts`), so its disk syncs
 * never stall the event loop.
 *
 * @module
 */
import { DatabaseSync } from "node:sqlite";
import { type CheckpointerTuning, startCheckpointer } from "./checkpointer.ts";
import { type ChannelIndex, createLogIndex, keyOf } from "./log_index.ts";
import {
  type Appended,
  canRecover,
  type ChannelMessage,
  clampLimit,
  EXPIRE_EVERY_MS,
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
  CREATE TABLE IF NOT EXISTS log (
    channel TEXT NOT NULL, seq INTEGER NOT NULL, id TEXT NOT NULL, from_name TEXT NOT NULL,
    text TEXT NOT NULL, ts TEXT NOT NULL, key TEXT, at INTEGER NOT NULL
  );
`;

/**
 * Databases of earlier versions kept messages in a table per channel order
 * (`messages`) and, briefly, a `journal`: their rows move to the log, in
 * each channel's seq order, when such a file is opened.
 */
const EARLIER_TABLES = ["messages", "journal"];

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
  /** Rows out of the kept window deleted together; 2048 (tests make it small). */
  deleteEvery?: number;
  /** How long a write waits for a lock another connection holds; 5 s (tests make it short). */
  busyTimeoutMs?: number;
  /** The most pages the file may grow to (`max_page_count`): tests fill the "disk" with it. */
  maxPages?: number;
  /** How the checkpointer works (tests watch it, and make it restart the log early). */
  checkpointer?: CheckpointerTuning;
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

/** How long a connection waits for another's lock (the checkpointer's, another process's). */
const BUSY_TIMEOUT_MS = 5000;
/**
 * SQLite's primary result code for a lock another connection holds. node:sqlite's `errcode` is
 * the extended code (`SQLITE_BUSY_SNAPSHOT` is 517, `SQLITE_BUSY_RECOVERY` 261): its low byte.
 */
const SQLITE_BUSY = 5;
/** Pages of log after which the writer's own connection checkpoints, when no worker does. */
const AUTOCHECKPOINT_PAGES = 10_000;
/** Rows out of the kept window deleted together (in one append's transaction), in rowid order. */
const DELETE_EVERY = 2048;

const COLUMNS = "channel, seq, id, from_name, text, ts";
const ALL_COLUMNS = `${COLUMNS}, key, at`;

/** The store's statements. */
function prepare(db: DatabaseSync) {
  const q = {
    begin: db.prepare("BEGIN IMMEDIATE"),
    commit: db.prepare("COMMIT"),
    insert: db.prepare(`INSERT INTO log (${ALL_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`),
    remove: db.prepare("DELETE FROM log WHERE rowid = ?"),
    removeHead: db.prepare("DELETE FROM heads WHERE channel = ?"),
    setFloor: db.prepare(
      "INSERT INTO meta (key, value) VALUES ('heads_floor', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    ),
    setHead: db.prepare(
      "INSERT INTO heads (channel, seq) VALUES (?, ?) ON CONFLICT (channel) DO UPDATE SET seq = excluded.seq",
    ),
    // Rows by rowid, in one statement whatever their number (a JSON array of rowids).
    rows: db.prepare(
      `SELECT ${COLUMNS} FROM log WHERE rowid IN (SELECT value FROM json_each(?)) ORDER BY rowid`,
    ),
    heads: db.prepare("SELECT channel, seq FROM heads"),
    scan: db.prepare(
      "SELECT rowid, channel, seq, at, key, CASE WHEN key IS NULL THEN NULL ELSE from_name END " +
        "FROM log ORDER BY rowid",
    ),
  };
  // Rows as arrays: on Deno, building an object per row took two thirds of a 50-message read.
  // (Deno 2.9 and Bun 1.4 have it; where it is missing, `toRow` takes the object's values.)
  for (const read of [q.rows, q.scan]) {
    (read as Partial<{ setReturnArrays(enabled: boolean): void }>).setReturnArrays?.(true);
  }
  return q;
}

/** The highest head of the channels whose heads were folded (`StoreOptions.maxEmptyHeads`). */
function floorOf(db: DatabaseSync): number {
  const found = db.prepare("SELECT value FROM meta WHERE key = 'heads_floor'").get() as
    | { value: string }
    | undefined;
  return found === undefined ? 0 : Number(found.value);
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

/** Moves the rows of an earlier version's tables into the log, in one transaction. */
function migrate(db: DatabaseSync): void {
  const present = (table: string) =>
    db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?").get(table) !==
      undefined;
  const earlier = EARLIER_TABLES.filter(present);
  if (earlier.length === 0) return;
  db.exec("BEGIN IMMEDIATE");
  try {
    for (const table of earlier) {
      const order = table === "messages" ? "channel, seq" : "rowid";
      db.exec(
        `INSERT INTO log (${ALL_COLUMNS}) SELECT ${ALL_COLUMNS} FROM ${table} ORDER BY ${order}`,
      );
      db.exec(`DROP TABLE ${table}`);
    }
    db.exec("COMMIT");
  } catch (error) {
    rollback(db);
    throw error;
  }
}

/**
 * Ends a failed transaction. SQLite may have ended it already (it rolls back by itself on a full
 * disk or an I/O error), and a `ROLLBACK` then throws: that must not turn a failed write into a
 * crash.
 */
function rollback(db: DatabaseSync): void {
  try {
    db.exec("ROLLBACK");
  } catch {
    // No transaction left to end.
  }
}

/**
 * Reads the heads and every row's place into `index`; throws when the file is damaged. (Deno's
 * `iterate()` ends quietly at a damaged page, where `all()` throws. Counting the table reads its
 * every page and throws at a damaged one, and the rows seen must match the count: a cut-short
 * history is never taken for the whole one, its seqs handed out again under the same epoch.)
 */
function load(
  db: DatabaseSync,
  q: ReturnType<typeof prepare>,
  index: ReturnType<typeof createLogIndex>,
  dead: number[],
): void {
  for (const row of q.heads.all()) {
    const { channel, seq } = row as { channel: string; seq: number };
    index.setHead(channel, Number(seq));
  }
  let rows = 0;
  for (const row of q.scan.iterate()) {
    const [rowid, channel, seq, at, key, from] = toRow(row) as unknown as Scanned;
    const keyed = key === null ? undefined : keyOf(from!, key);
    index.add(channel, Number(seq), Number(rowid), Number(at), keyed, dead);
    rows++;
  }
  const { count } = db.prepare("SELECT count(*) AS count FROM log").get() as { count: number };
  if (rows !== Number(count)) {
    throw new Error(`the file is damaged: ${rows} of its ${count} messages could be read`);
  }
}

/** A row of the startup scan: rowid, channel, seq, at, and a keyed message's key and sender. */
type Scanned = [
  rowid: number,
  channel: string,
  seq: number,
  at: number,
  key: string | null,
  from: string | null,
];

function createSqliteStore(
  db: DatabaseSync,
  lock: DatabaseSync | null,
  path: string | null,
  options: SqliteOptions,
): MessageStore {
  const { maxPerChannel, maxAgeMs, maxEmptyHeads, now } = resolveOptions(options);
  const deleteEvery = Math.max(1, Math.floor(options.deleteEvery ?? DELETE_EVERY));
  const busyTimeoutMs = Math.max(0, Math.floor(options.busyTimeoutMs ?? BUSY_TIMEOUT_MS));
  db.exec(`PRAGMA busy_timeout = ${busyTimeoutMs}; PRAGMA cache_size = -16384;`);
  db.exec("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;");
  // Checkpoints run on a worker (checkpointer.ts), never inside this connection's commits; if
  // there is no worker, or it fails, this connection checkpoints every 10,000 pages (40 MB).
  if (options.maxPages !== undefined) db.exec(`PRAGMA max_page_count = ${options.maxPages}`);
  let closed = false;
  const checkpointer = path === null ? null : startCheckpointer(path, () => {
    if (!closed) db.exec(`PRAGMA wal_autocheckpoint = ${AUTOCHECKPOINT_PAGES}`);
  }, options.checkpointer);
  const index = createLogIndex(maxPerChannel);
  /** Rows out of the kept window (trimmed or expired), deleted `deleteEvery` at a time. */
  let dead: number[] = [];
  let epoch: string;
  /** Where a channel with no head of its own counts from (see `fold`). */
  let floor: number;
  let q: ReturnType<typeof prepare>;
  try {
    db.exec(`PRAGMA wal_autocheckpoint = ${checkpointer === null ? AUTOCHECKPOINT_PAGES : 0}`);
    db.exec(SCHEMA);
    migrate(db);
    epoch = epochOf(db);
    floor = floorOf(db);
    q = prepare(db);
    load(db, q, index, dead);
  } catch (error) {
    // The caller falls back to memory: the worker must not go on checkpointing this file.
    checkpointer?.stop();
    throw error;
  }
  /** Channels whose every row went: their heads table entry is written with the next append. */
  const emptied = new Set<ChannelIndex>();

  /** Drops what expired from `channel`'s entries (a channel left with none keeps its head). */
  const expire = (channel: ChannelIndex, time: number) => {
    const before = channel.rowids.length;
    index.expire(channel, time - maxAgeMs, dead);
    if (before > 0 && channel.rowids.length === 0) emptied.add(channel);
  };
  /** `channel`'s kept entries now, or undefined when it has had no message. */
  const kept = (channel: string): ChannelIndex | undefined => {
    const found = index.get(channel);
    if (found !== undefined) expire(found, now());
    return found;
  };
  /** The messages of seqs `from` to `to` of `channel`, oldest first. */
  const fetch = (channel: ChannelIndex, from: number, to: number): StoredMessage[] => {
    const lo = Math.max(from, channel.first);
    const hi = Math.min(to, channel.first + channel.rowids.length - 1);
    if (hi < lo) return [];
    const rowids = channel.rowids.slice(lo - channel.first, hi - channel.first + 1);
    return q.rows.all(JSON.stringify(rowids)).map((row) => toMessage(toRow(row)));
  };
  /**
   * Inside an append's transaction: expires every channel now and then (and
   * folds the channels left with no row when there are too many), keeps the
   * heads of channels left with no row, and deletes the dead rows once there
   * are enough of them or after a fold; true when it deleted them (every row
   * in `dead`).
   */
  let lastExpiry = now();
  const collect = (time: number): boolean => {
    let folded = false;
    if (time - lastExpiry >= EXPIRE_EVERY_MS) {
      lastExpiry = time;
      const empty: ChannelIndex[] = [];
      for (const channel of index.all()) {
        expire(channel, time);
        if (channel.rowids.length === 0) empty.push(channel);
      }
      folded = empty.length > maxEmptyHeads;
      if (folded) fold(empty);
    }
    for (const channel of emptied) q.setHead.run(channel.channel, channel.head);
    // A folded channel's rows go now: read back at a restart, they would give it its old head,
    // below the floor its clients may have been told.
    if (!folded && dead.length < deleteEvery) return false;
    // In rowid order: the oldest pages first, each written once.
    for (const rowid of dead.sort((x, y) => x - y)) q.remove.run(rowid);
    return true;
  };

  /**
   * Inside an append's transaction: forgets channels that have no message left, keeping only the
   * highest of their heads (`floor`), from which such a channel counts again. (In memory, the
   * change stands even if the transaction fails: the floor only rises, so no seq is given twice.)
   */
  const fold = (empty: readonly ChannelIndex[]) => {
    for (const channel of empty) {
      floor = Math.max(floor, channel.head);
      index.remove(channel.channel);
      emptied.delete(channel);
      q.removeHead.run(channel.channel);
    }
    q.setFloor.run(String(floor));
  };

  /**
   * Starts an append's transaction, or says why it could not. Without `mayWait`, a write lock
   * held by the checkpointer (while it starts the log over and syncs it) answers `busy` at once,
   * so that a commit the caller can put off does not hold the event loop for that sync.
   */
  const begin = (mayWait: boolean): Appended | undefined => {
    // (By `exec`: a prepared `PRAGMA busy_timeout = N` sets N when prepared, not when run.)
    if (!mayWait) db.exec("PRAGMA busy_timeout = 0");
    try {
      q.begin.run();
      return undefined;
    } catch (error) {
      const message = `Cannot store messages: ${reason(error)}`;
      const code = (error as { errcode?: unknown }).errcode;
      const busy = !mayWait && typeof code === "number" && (code & 0xff) === SQLITE_BUSY;
      return busy ? { ok: false, message, busy: true } : { ok: false, message };
    } finally {
      if (!mayWait) db.exec(`PRAGMA busy_timeout = ${busyTimeoutMs}`);
    }
  };

  const store: MessageStore = {
    append(channel: string, messages: readonly NewMessage[]): Appended {
      return store.appendAll(messages.map((message) => ({ channel, message })));
    },
    appendAll(entries: readonly ChannelMessage[], mayWait = true): Appended {
      if (entries.length === 0) return { ok: true, epoch, messages: [] };
      const failed = begin(mayWait);
      if (failed !== undefined) return failed;
      const at = now();
      const stored: StoredMessage[] = [];
      const added: { channel: string; seq: number; rowid: number; key?: string }[] = [];
      let deleted = false;
      try {
        /** Per channel of the batch: its last seq so far. */
        const lastSeqs = new Map<string, number>();
        for (const { channel, message } of entries) {
          const { from, text, id, ts } = message;
          const seq = (lastSeqs.get(channel) ?? index.get(channel)?.head ?? floor) + 1;
          lastSeqs.set(channel, seq);
          const key = message.key ?? null;
          const { lastInsertRowid } = q.insert.run(channel, seq, id, from, text, ts, key, at);
          added.push({
            channel,
            seq,
            rowid: Number(lastInsertRowid),
            ...(key === null ? {} : { key: keyOf(from, key) }),
          });
          stored.push({ type: "message", channel, from, text, id, ts, seq });
        }
        deleted = collect(at);
        q.commit.run();
      } catch (error) {
        rollback(db);
        return { ok: false, message: `Cannot store messages: ${reason(error)}` };
      }
      if (deleted) dead = [];
      emptied.clear();
      for (const { channel, seq, rowid, key } of added) {
        index.add(channel, seq, rowid, at, key, dead);
      }
      return { ok: true, epoch, messages: stored };
    },
    latest(channel, limit) {
      const n = Math.min(clampLimit(limit), maxPerChannel);
      const found = kept(channel);
      if (n === 0 || found === undefined) return [];
      return fetch(found, found.head - n + 1, found.head);
    },
    before(channel, seq, limit) {
      const n = clampLimit(limit);
      const found = kept(channel);
      if (n === 0 || found === undefined || !(seq > 0)) return [];
      const end = Math.min(Math.ceil(seq) - 1, found.head);
      return fetch(found, end - n + 1, end);
    },
    since(channel, sinceEpoch, seq, limit) {
      const found = kept(channel);
      const head = { epoch, seq: found?.head ?? floor };
      const oldest = found === undefined || found.rowids.length === 0 ? null : found.first;
      const n = clampLimit(limit);
      if (!canRecover(head, oldest, sinceEpoch, seq, n)) {
        return { recovered: false, epoch, messages: store.latest(channel, n) };
      }
      const missed = found === undefined ? [] : fetch(found, seq + 1, found.head);
      return { recovered: true, epoch, messages: missed };
    },
    head(channel) {
      return { epoch, seq: index.get(channel)?.head ?? floor };
    },
    byKey(channel, from, key) {
      const found = kept(channel);
      const seq = found?.byKey.get(keyOf(from, key));
      if (found === undefined || seq === undefined) return null;
      return fetch(found, seq, seq)[0] ?? null;
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
