/**
 * The SQLite message store, on the runtime's built-in `node:sqlite` (the same
 * code runs on Deno and Bun, with no npm package). The epoch and each
 * channel's head seq live in their own tables, so they survive trimming and
 * restarts; a new file gets a new epoch. Each append batch is one transaction
 * (WAL, `synchronous=NORMAL`), so a tick's messages cost one commit.
 *
 * @module
 */
import { DatabaseSync } from "node:sqlite";
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
  CREATE INDEX IF NOT EXISTS messages_at ON messages (channel, at);
  CREATE INDEX IF NOT EXISTS messages_key ON messages (channel, from_name, key) WHERE key IS NOT NULL;
`;

type Row = {
  channel: string;
  seq: number;
  id: string;
  from_name: string;
  text: string;
  ts: string;
};

const toMessage = (row: Row): StoredMessage => ({
  type: "message",
  channel: row.channel,
  from: row.from_name,
  text: row.text,
  id: row.id,
  ts: row.ts,
  seq: Number(row.seq),
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
export function openSqliteStore(path: string, options: StoreOptions = {}): Opened {
  let db: DatabaseSync;
  try {
    db = new DatabaseSync(path);
  } catch (error) {
    return { ok: false, message: `Cannot open the history database "${path}": ${reason(error)}` };
  }
  try {
    return { ok: true, store: createSqliteStore(db, options) };
  } catch (error) {
    db.close();
    return { ok: false, message: `Cannot open the history database "${path}": ${reason(error)}` };
  }
}

function createSqliteStore(db: DatabaseSync, options: StoreOptions): MessageStore {
  const { maxPerChannel, maxAgeMs, now } = resolveOptions(options);
  db.exec("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 5000;");
  db.exec(SCHEMA);
  const found = db.prepare("SELECT value FROM meta WHERE key = 'epoch'").get() as
    | { value: string }
    | undefined;
  const epoch = found?.value ?? newEpoch();
  if (found === undefined) {
    db.prepare("INSERT INTO meta (key, value) VALUES ('epoch', ?)").run(epoch);
  }

  const columns = "channel, seq, id, from_name, text, ts";
  const q = {
    head: db.prepare("SELECT seq FROM heads WHERE channel = ?"),
    setHead: db.prepare(
      "INSERT INTO heads (channel, seq) VALUES (?, ?) ON CONFLICT (channel) DO UPDATE SET seq = excluded.seq",
    ),
    insert: db.prepare(
      "INSERT INTO messages (channel, seq, id, from_name, text, ts, key, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    ),
    trimCount: db.prepare("DELETE FROM messages WHERE channel = ? AND seq <= ?"),
    trimAge: db.prepare("DELETE FROM messages WHERE channel = ? AND at <= ?"),
    latest: db.prepare(
      `SELECT ${columns} FROM messages WHERE channel = ? AND at > ? ORDER BY seq DESC LIMIT ?`,
    ),
    before: db.prepare(
      `SELECT ${columns} FROM messages WHERE channel = ? AND seq < ? AND at > ? ORDER BY seq DESC LIMIT ?`,
    ),
    after: db.prepare(
      `SELECT ${columns} FROM messages WHERE channel = ? AND seq > ? AND at > ? ORDER BY seq`,
    ),
    oldest: db.prepare("SELECT MIN(seq) AS seq FROM messages WHERE channel = ? AND at > ?"),
    byKey: db.prepare(
      `SELECT ${columns} FROM messages WHERE channel = ? AND from_name = ? AND key = ? AND at > ? ORDER BY seq LIMIT 1`,
    ),
  };

  const headSeq = (channel: string): number => {
    const row = q.head.get(channel) as { seq: number } | undefined;
    return row === undefined ? 0 : Number(row.seq);
  };
  // Reads skip expired messages (a read never writes); appends delete them.
  const cutoff = () => now() - maxAgeMs;
  const expire = (channel: string) => q.trimAge.run(channel, cutoff());
  const newestFirst = (rows: unknown[]): StoredMessage[] =>
    (rows as Row[]).map(toMessage).reverse();

  const store: MessageStore = {
    append(channel: string, messages: readonly NewMessage[]): Appended {
      return store.appendAll(messages.map((message) => ({ channel, message })));
    },
    appendAll(entries: readonly ChannelMessage[]): Appended {
      if (entries.length === 0) return { ok: true, epoch, messages: [] };
      try {
        db.exec("BEGIN IMMEDIATE");
      } catch (error) {
        return { ok: false, message: `Cannot store messages: ${reason(error)}` };
      }
      try {
        const heads = new Map<string, number>();
        const at = now();
        const stored = entries.map(({ channel, message }): StoredMessage => {
          const { from, text, id, ts, key } = message;
          const seq = (heads.get(channel) ?? headSeq(channel)) + 1;
          heads.set(channel, seq);
          q.insert.run(channel, seq, id, from, text, ts, key ?? null, at);
          return { type: "message", channel, from, text, id, ts, seq };
        });
        for (const [channel, seq] of heads) {
          q.setHead.run(channel, seq);
          q.trimCount.run(channel, seq - maxPerChannel);
          expire(channel);
        }
        db.exec("COMMIT");
        return { ok: true, epoch, messages: stored };
      } catch (error) {
        db.exec("ROLLBACK");
        return { ok: false, message: `Cannot store messages: ${reason(error)}` };
      }
    },
    latest(channel, limit) {
      const n = clampLimit(limit);
      if (n === 0) return [];
      return newestFirst(q.latest.all(channel, cutoff(), n));
    },
    before(channel, seq, limit) {
      const n = clampLimit(limit);
      if (n === 0) return [];
      return newestFirst(q.before.all(channel, seq, cutoff(), n));
    },
    since(channel, sinceEpoch, seq, limit) {
      const head = { epoch, seq: headSeq(channel) };
      const row = q.oldest.get(channel, cutoff()) as { seq: number | null } | undefined;
      const oldest = row?.seq == null ? null : Number(row.seq);
      const n = clampLimit(limit);
      if (canRecover(head, oldest, sinceEpoch, seq, n)) {
        return {
          recovered: true,
          epoch,
          messages: (q.after.all(channel, seq, cutoff()) as Row[]).map(toMessage),
        };
      }
      return { recovered: false, epoch, messages: store.latest(channel, n) };
    },
    head(channel) {
      return { epoch, seq: headSeq(channel) };
    },
    byKey(channel, from, key) {
      const row = q.byKey.get(channel, from, key, cutoff()) as Row | undefined;
      return row === undefined ? null : toMessage(row);
    },
    close() {
      db.close();
    },
  };
  return store;
}
