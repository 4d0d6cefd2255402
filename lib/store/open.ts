/**
 * Opens the history store `--data-dir` names: `history.db` (SQLite) in that
 * directory, created with its parents when missing. `node:fs` and
 * `node:sqlite` run the same on Deno and Bun, inside both binaries.
 *
 * @module
 */
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { type Opened, openSqliteStore } from "./sqlite.ts";
import type { StoreOptions } from "./store.ts";

/** The database file's name inside the data directory. */
export const DATABASE_FILE = "history.db";

/** Opens (or creates) the SQLite history in `dataDir`, or says why it cannot. */
export function openDataDir(
  dataDir: string,
  options: StoreOptions = {},
): Opened & { path: string } {
  const path = join(dataDir, DATABASE_FILE);
  try {
    mkdirSync(dataDir, { recursive: true });
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    return { ok: false, message: `Cannot create the data directory "${dataDir}": ${reason}`, path };
  }
  return { ...openSqliteStore(path, options), path };
}
