/**
 * What `main.ts` needs from a JavaScript runtime. Each runtime adapter in
 * this folder implements it; nothing else in `lib/` touches a runtime API.
 *
 * @module
 */
import type { App } from "../app.ts";
import type { Engine } from "../cluster/engine.ts";
import type { HubFactory } from "../delivery/hub.ts";
import type { Logger } from "../log.ts";

/** Where and how to listen. */
export interface ServeOptions {
  port: number;
  hostname: string;
  /** Seconds without a pong before a WebSocket is dropped (0: never). */
  pingTimeout: number;
  /** Limits a runtime can enforce natively, while reading (Bun). */
  limits?: { maxMessageBytes: number; maxBufferedBytes: number };
  /** For a dialect's own listener (`--dialect NAME=PORT`), the dialect's name. */
  listener?: string;
  /** Aborting it stops the server. */
  signal?: AbortSignal;
}

/** A listening server. */
export interface RunningServer {
  /** The bound address; the real port when 0 was asked for. */
  readonly hostname: string;
  readonly port: number;
  /** Stops accepting, waits for open HTTP requests, then resolves. */
  shutdown(): Promise<void>;
  /** Resolves once the server has stopped. */
  readonly finished: Promise<void>;
}

/** Why a listener could not start: an expected failure, told in one line, never a stack trace. */
export interface ListenError {
  /** in_use: another process (or listener) has the port; denied: not allowed (ports below 1024); unavailable: no such local address. */
  readonly listenError: "in_use" | "denied" | "unavailable" | "other";
  /** What the runtime said. */
  readonly detail: string;
}

/** A JavaScript runtime, as main.ts uses it. */
export interface Runtime {
  readonly name: string;
  args(): string[];
  env(): Record<string, string | undefined>;
  /** Starts a listener, or says why it cannot. */
  serve(app: App, options: ServeOptions): RunningServer | ListenError;
  /** The hub that suits this runtime; the coalescing hub when absent. */
  hub?: HubFactory;
  /**
   * Runs `task` after every event of the current read of the sockets, so
   * that what they brought is stored in one transaction. Absent: a
   * microtask, which Deno and Bun both run after every incoming frame (one
   * transaction per message).
   */
  afterIo?: (task: () => void) => void;
  /** The process's resident memory in bytes. */
  residentBytes(): number;
  /** Opens the Deno KV engine (`--engine kv`); absent where there is no Deno KV. */
  openKvEngine?(options: KvEngineOptions): Promise<{ engine: Engine } | { message: string }>;
  /** Calls `handler` once on SIGINT or SIGTERM. */
  onShutdownSignal(handler: (signal: string) => void): void;
  exit(code: number): never;
}

/** What the Deno KV engine is opened with. */
export interface KvEngineOptions {
  /** The database file; null: the runtime's own (the only one on Deno Deploy). */
  path: string | null;
  /** Prefix of every key, so that clusters can share one database. */
  prefix: string;
  /** Per-channel limits of the shared history. */
  history: { maxPerChannel: number; ttlMs: number };
  log: Logger;
}
