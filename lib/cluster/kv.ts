/**
 * The part of Deno KV the KV engine uses, typed structurally so that
 * `lib/cluster` names no `Deno.` identifier: the caller opens the store
 * (`await Deno.openKv(path)`) and passes it in, and a `Deno.Kv` is a
 * `KvHandle` as it is. Tests wrap one to cut it off.
 *
 * Also the limits Deno KV enforces on every backend (measured on Deno 2.9.6:
 * a larger value or operation is refused with an error, not truncated).
 *
 * @module
 */

/** One part of a key, as the engine builds them. */
export type KvKeyPart = Uint8Array | string | number | bigint | boolean;

/** A key: its parts, most significant first. */
export type KvKey = readonly KvKeyPart[];

/** What a read returns for one key: its value and versionstamp, both null when it is absent. */
export type KvEntryMaybe =
  | { readonly key: readonly unknown[]; readonly value: unknown; readonly versionstamp: string }
  | { readonly key: readonly unknown[]; readonly value: null; readonly versionstamp: null };

/** An entry a `list` found. */
export type KvEntry = {
  readonly key: readonly unknown[];
  readonly value: unknown;
  readonly versionstamp: string;
};

/** Read consistency: the engine always asks for "strong". */
export type KvReadOptions = { consistency?: "strong" | "eventual" };

/** What `list` reads: a range of keys, the end excluded. */
export type KvRange = { start: KvKey; end: KvKey };

/** Options of `list`. */
export type KvListOptions = KvReadOptions & {
  limit?: number;
  reverse?: boolean;
  batchSize?: number;
};

/** An atomic operation being built: checks, then mutations, committed all or nothing. */
export interface KvAtomic {
  /** Fails the commit unless each key's versionstamp is this one (null: the key is absent). */
  check(...checks: { key: KvKey; versionstamp: string | null }[]): KvAtomic;
  /** Sets `key`; `expireIn` is the earliest time it may be deleted, not a deadline. */
  set(key: KvKey, value: unknown, options?: { expireIn?: number }): KvAtomic;
  /** Deletes `key`. */
  delete(key: KvKey): KvAtomic;
  /** Commits: `ok: false` when a check failed; throws when the store cannot be reached. */
  commit(): Promise<{ ok: true; versionstamp: string } | { ok: false }>;
}

/** The subset of `Deno.Kv` the KV engine uses. */
export interface KvHandle {
  /** Reads one key. */
  get(key: KvKey, options?: KvReadOptions): Promise<KvEntryMaybe>;
  /** Reads up to `KV_LIMITS.readKeys` keys at once, in one consistent read. */
  getMany(keys: readonly KvKey[], options?: KvReadOptions): Promise<KvEntryMaybe[]>;
  /** Reads a range of keys in key order (or reversed). */
  list(selector: KvRange, options?: KvListOptions): AsyncIterable<KvEntry>;
  /** Starts an atomic operation. */
  atomic(): KvAtomic;
  /**
   * Reports the entries of `keys` now, then again when they change; rapid
   * changes may be reported once, with a value that is not the latest.
   */
  watch(keys: readonly KvKey[]): ReadableStream<KvEntryMaybe[]>;
}

/** What one Deno KV operation may hold. */
export const KV_LIMITS = {
  /** Keys per `getMany`. */
  readKeys: 10,
  /** Checks per atomic operation. */
  checks: 100,
  /** Mutations per atomic operation. */
  mutations: 1000,
  /** Bytes of keys and values per atomic operation. */
  operationBytes: 800 * 1024,
  /** Bytes of one serialized value. */
  valueBytes: 64 * 1024,
} as const;

/**
 * The bytes a string takes in a KV value: V8 stores a string whose every
 * unit is below U+0100 one byte per unit, any other two.
 */
export function storedBytes(text: string): number {
  // deno-lint-ignore no-control-regex
  return /[^\u0000-\u00ff]/.test(text) ? text.length * 2 : text.length;
}

/** A thrown KV error as text, for the log and `down`. */
export function kvReason(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** Whether `error` is local SQLite's "database is locked": another handle was writing. */
function isBusy(error: unknown): boolean {
  return error instanceof Error && /database is locked/i.test(error.message);
}

/**
 * Tries `read` again while the store is busy (a few times, briefly): it fails only if it stays
 * so. Opening a KV file is such a read: workers opening one file at once refuse each other.
 */
export async function again<T>(read: () => Promise<T>): Promise<T> {
  for (let tries = 1;; tries++) {
    try {
      return await read();
    } catch (error) {
      if (!isBusy(error) || tries >= 20) throw error;
    }
    await new Promise((resolve) => setTimeout(resolve, 1 + Math.random() * 4 * tries));
  }
}

/**
 * The same store, patient with a local file shared by several handles (the
 * workers of one process): SQLite refuses a write with "database is locked"
 * while another handle writes, which nothing was committed by, so a commit
 * refused so reads as a lost race (`ok: false`: read again, try again) and a
 * read refused so is tried again. On Deno Deploy this never happens.
 */
export function patient(kv: KvHandle): KvHandle {
  const atomic = (op: KvAtomic): KvAtomic => ({
    check: (...checks) => atomic(op.check(...checks)),
    set: (key, value, options) => atomic(op.set(key, value, options)),
    delete: (key) => atomic(op.delete(key)),
    async commit() {
      try {
        return await op.commit();
      } catch (error) {
        if (isBusy(error)) return { ok: false };
        throw error;
      }
    },
  });
  return {
    get: (key, options) => again(() => kv.get(key, options)),
    getMany: (keys, options) => again(() => kv.getMany(keys, options)),
    list: (selector, options) => ({
      async *[Symbol.asyncIterator]() {
        // The ranges read here are small (a page): read whole, so a retry repeats nothing.
        const rows = await again(async () => {
          const found: KvEntry[] = [];
          for await (const row of kv.list(selector, options)) found.push(row);
          return found;
        });
        yield* rows;
      },
    }),
    atomic: () => atomic(kv.atomic()),
    watch: (keys) => kv.watch(keys),
  };
}
