/**
 * What `main.ts` needs from a JavaScript runtime. Each runtime adapter in
 * this folder implements it; nothing else in `lib/` touches a runtime API.
 *
 * @module
 */
import type { App } from "../app.ts";
import type { HubFactory } from "../delivery/hub.ts";

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
  /** The process's resident memory in bytes. */
  residentBytes(): number;
  /** Calls `handler` once on SIGINT or SIGTERM. */
  onShutdownSignal(handler: (signal: string) => void): void;
  exit(code: number): never;
}
