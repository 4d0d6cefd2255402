/**
 * The workers of one `deno serve --parallel` process, as each sees the
 * others. `Deno.exit` in any worker ends the whole process, so a worker
 * that has closed its own sockets must not exit while another still closes
 * its: each says when it has stopped, over a `BroadcastChannel` (which
 * crosses the workers of one process), and exits once every worker it knows
 * of has. A worker that never says so is waited for until the shutdown's
 * grace period runs out.
 *
 * @module
 */

/** This worker's view of its siblings. */
export interface Workers {
  /** Says this worker has stopped; resolves once every worker known so far has too. */
  stopped(): Promise<void>;
  /** Leaves the group; nothing is heard afterwards. */
  close(): void;
}

/** What workers tell each other. */
export type WorkerNote =
  /** A worker started (`up`) or answers one that did (`here`); `done` once it stopped. */
  { t: "up" | "here" | "done"; id: string };

/** The part of a `BroadcastChannel` the group uses (tests pass a double). */
export interface WorkerChannel {
  postMessage(note: WorkerNote): void;
  onmessage: ((event: MessageEvent<WorkerNote>) => void) | null;
  close(): void;
}

/**
 * Joins, as `id`, the group of workers on `channel` (a `BroadcastChannel`
 * that only the workers of this process share).
 */
export function joinWorkers(id: string, channel: WorkerChannel): Workers {
  const known = new Set<string>([id]);
  const done = new Set<string>();
  let allDone: (() => void) | undefined;
  const check = () => {
    if (done.has(id) && [...known].every((worker) => done.has(worker))) allDone?.();
  };
  const post = (note: WorkerNote) => channel.postMessage(note);
  channel.onmessage = (event) => {
    const note = event.data;
    if (typeof note?.id !== "string" || note.id === id) return;
    known.add(note.id);
    if (note.t === "up") post({ t: done.has(id) ? "done" : "here", id });
    if (note.t === "done") done.add(note.id);
    check();
  };
  post({ t: "up", id });
  return {
    stopped() {
      done.add(id);
      post({ t: "done", id });
      const { promise, resolve } = Promise.withResolvers<void>();
      allDone = resolve;
      check();
      return promise;
    },
    close() {
      channel.onmessage = null;
      channel.close();
    },
  };
}
