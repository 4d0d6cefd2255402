/**
 * Checkpoints the SQLite history's write-ahead log on a thread of its own.
 *
 * A checkpoint copies the log into the database and syncs both files: on
 * this project's VM disks the two syncs alone take 30–100 ms. SQLite runs
 * it inside the commit that passes `wal_autocheckpoint`, which stalled the
 * whole event loop that long about once a second under load (the p99 of
 * rooms of 10 went from 19 to 122 ms). Here a Web Worker with its own
 * connection copies and syncs (`PASSIVE`: it never waits for the writer),
 * and the writer's connection never checkpoints. Under a load that never
 * pauses, a passive checkpoint cannot reach the end of the log, which then
 * only grows; past `RESTART_FRAMES` the worker asks for `RESTART`, which
 * holds the writer off once for the little left to copy and the syncs,
 * and lets the log start over.
 *
 * After a checkpoint that copied the whole log (passive or `RESTART`), the
 * next write starts the log over and syncs its header to disk. The worker
 * makes that write itself (it counts the restarts in `meta`), so the sync is
 * its own. While the worker holds the write lock, the writer's scheduled
 * commits are put off for a millisecond rather than waited for
 * (`history.ts`): under steady traffic the event loop waits for no disk.
 *
 * The worker's code is a string run from a blob URL, so that it needs no
 * file of its own inside `deno compile` or `bun build --compile` binaries.
 *
 * @module
 */

/**
 * How often the worker checkpoints. A page written many times in between is copied once: at
 * 100 ms, rooms of 10 on Deno took 5% more server CPU at the same load than at 1 s. It is also
 * how often the log reaches the disk: what a power cut can lose.
 */
export const CHECKPOINT_EVERY_MS = 1000;

/** Log frames (pages, 4 KiB each) past which the worker restarts the log: 64 MiB. */
export const RESTART_FRAMES = 16_384;

/**
 * How long the worker waits for a lock or for readers. A `RESTART` holds the write lock while it
 * waits for every reader to leave the old log: with SQLite's usual 5 s, one outside reader (a
 * `sqlite3` shell, a backup or a replicator holding a read transaction) held every commit off for
 * 5 s, the event loop with it. Given up after this long, the checkpoint counts as a passive one,
 * and the worker tries again a second later.
 */
export const WORKER_WAIT_MS = 100;

/** How long `stop` waits for the worker to close its connection. */
const STOP_WAIT_MS = 2000;

/** A running checkpointer. */
export interface Checkpointer {
  /** Closes the worker's connection and ends the worker (waits at most 2 s, synchronously). */
  stop(): void;
}

/** What one checkpoint did, as `PRAGMA wal_checkpoint` reports it. */
export interface CheckpointResult {
  /** Whether it was a `RESTART` (else `PASSIVE`). */
  restart: boolean;
  /** 1 when it could not finish: a lock or a reader in the way. */
  busy: number;
  /** Frames in the log, and how many of them are in the database now. */
  log: number;
  checkpointed: number;
}

/** What tests may change of the worker's ways. */
export interface CheckpointerTuning {
  /** Log frames past which it restarts the log; `RESTART_FRAMES` by default. */
  restartFrames?: number;
  /** Told of each checkpoint (tests watch the worker with it). */
  onCheckpoint?: (result: CheckpointResult) => void;
}

/** What the worker is told at start. */
interface StartMessage {
  path: string;
  everyMs: number;
  restartFrames: number;
  waitMs: number;
  /** Whether it posts each checkpoint's result. */
  report: boolean;
  /** The worker writes 1 into its first slot once it has closed its connection. */
  stopped: SharedArrayBuffer;
}

// Runs in the worker. Plain JavaScript (it is not type-checked or bundled): keep it small.
const WORKER_SOURCE = `
import { DatabaseSync } from "node:sqlite";
let db, timer, stopped;
const close = () => {
  clearInterval(timer);
  try { db?.close(); } catch {}
  if (stopped) { Atomics.store(stopped, 0, 1); Atomics.notify(stopped, 0); }
};
self.onmessage = ({ data }) => {
  if (data === "stop") return close();
  stopped = new Int32Array(data.stopped);
  try {
    db = new DatabaseSync(data.path);
    db.exec("PRAGMA busy_timeout = " + data.waitMs + "; PRAGMA synchronous = NORMAL");
    const passive = db.prepare("PRAGMA wal_checkpoint(PASSIVE)");
    const restart = db.prepare("PRAGMA wal_checkpoint(RESTART)");
    // The first write after a full checkpoint starts the log over and syncs its header: made
    // here, that sync is this thread's, not the event loop's. The write counts the restarts in
    // meta (SQLite skips a write that changes no byte). A log holding only this write's own
    // frame is left alone, so an idle server's disk stays idle.
    const startOver = () => {
      try {
        db.exec("BEGIN IMMEDIATE; INSERT INTO meta (key, value) VALUES ('log_restarts', '1') " +
          "ON CONFLICT (key) DO UPDATE SET value = CAST(value AS INTEGER) + 1; COMMIT");
      } catch {
        try { db.exec("ROLLBACK"); } catch {}
      }
    };
    timer = setInterval(() => {
      try {
        let done = passive.get();
        const restarting = done.log > data.restartFrames;
        if (restarting) done = restart.get();
        if (done.busy === 0 && done.log > 1 && done.checkpointed === done.log) startOver();
        if (data.report) self.postMessage({ done: { restart: restarting, ...done } });
      } catch (error) {
        self.postMessage({ failed: String(error?.message ?? error) });
        close();
      }
    }, data.everyMs);
  } catch (error) {
    self.postMessage({ failed: String(error?.message ?? error) });
    close();
  }
};
`;

/**
 * Starts checkpointing the database at `path` on a worker; null where the
 * runtime has no module workers. `failed` is called if the worker cannot go
 * on: the caller then lets its own connection checkpoint again.
 */
export function startCheckpointer(
  path: string,
  failed: (reason: string) => void,
  tuning: CheckpointerTuning = {},
): Checkpointer | null {
  if (typeof Worker !== "function") return null;
  const url = URL.createObjectURL(new Blob([WORKER_SOURCE], { type: "text/javascript" }));
  let worker: Worker;
  try {
    worker = new Worker(url, { type: "module" });
  } catch {
    URL.revokeObjectURL(url);
    return null;
  }
  const stopped = new SharedArrayBuffer(4);
  let running = true;
  worker.onmessage = ({ data }) => {
    if (!running) return;
    if (typeof data?.failed === "string") failed(data.failed);
    else if (data?.done !== undefined) tuning.onCheckpoint?.(data.done);
  };
  worker.onerror = (event) => {
    event.preventDefault();
    if (running) failed(event.message);
  };
  const start: StartMessage = {
    path,
    everyMs: CHECKPOINT_EVERY_MS,
    restartFrames: tuning.restartFrames ?? RESTART_FRAMES,
    waitMs: WORKER_WAIT_MS,
    report: tuning.onCheckpoint !== undefined,
    stopped,
  };
  worker.postMessage(start);
  return {
    stop() {
      if (!running) return;
      running = false;
      worker.postMessage("stop");
      // Synchronous, as closing the store is: the worker's thread answers while this one waits.
      Atomics.wait(new Int32Array(stopped), 0, 0, STOP_WAIT_MS);
      worker.terminate();
      URL.revokeObjectURL(url);
    },
  };
}
