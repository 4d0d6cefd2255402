/**
 * Test helpers: a real server on port 0 and WebSocket clients that read
 * frames as events, with no sleeps.
 *
 * @module
 */
import assert from "node:assert/strict";
import { type App, createApp } from "../lib/app.ts";
import { type Clock, systemClock } from "../lib/core/clock.ts";
import { type Config, parseConfig } from "../lib/config.ts";
import { DIALECTS } from "../lib/dialects/index.ts";
import type { Dialect } from "../lib/dialects/dialect.ts";
import type { Engine } from "../lib/cluster/engine.ts";
import { type Logger, silentLogger } from "../lib/log.ts";
import { denoRuntime, serveDeno } from "../lib/runtime/deno.ts";
import type { MessageStore } from "../lib/store/store.ts";

/** The configuration tests start from. */
export const TEST_CONFIG: Config = (() => {
  const defaults = parseConfig(
    ["--port", "0", "--hostname", "127.0.0.1", "--data-dir", "none"],
    {},
    DIALECTS,
  );
  if (defaults.kind !== "config") throw new Error("The default configuration is invalid");
  return defaults.config;
})();

/** How long a test waits for an expected event before failing. */
export const WAIT_MS = 5000;

/** A server running in this process, stopped by `await using`. */
export interface TestServer extends AsyncDisposable {
  readonly app: App;
  /** `http://127.0.0.1:PORT` */
  readonly url: string;
  /** `ws://127.0.0.1:PORT/ws` */
  readonly wsUrl: string;
  /** Opens a client; it is closed when the server is disposed. */
  connect(options?: { origin?: string }): Promise<TestClient>;
  /** Opens a client logged in as `name` and joined to `channels`, their replies read. */
  user(name: string, ...channels: string[]): Promise<TestClient>;
}

/** Starts a server on a free port with `TEST_CONFIG` plus `overrides`. */
export function startServer(
  overrides: Partial<Config> = {},
  deps: {
    clock?: Clock;
    dialects?: readonly Dialect[];
    engine?: Engine;
    nodeId?: string;
    log?: Logger;
    /** The history store (the app closes it); a new memory store by default. */
    store?: MessageStore;
    /** Under load, how long after a history commit the next one waits. */
    commitGapMs?: number;
    /** How long commits are put off while the store's lock is busy, before one waits. */
    storeBusyGiveUpMs?: number;
  } = {},
): TestServer {
  // The dialects a test hands in are the ones it asks for (`--dialect`), unless it says which.
  const asked = new Map((deps.dialects ?? []).map((dialect) => [dialect.name, 0]));
  const config = { ...TEST_CONFIG, dialects: asked, ...overrides };
  const app = createApp(config, {
    clock: deps.clock ?? systemClock,
    version: "test",
    afterIo: denoRuntime.afterIo,
    dialects: deps.dialects,
    engine: deps.engine,
    nodeId: deps.nodeId,
    store: deps.store,
    commitGapMs: deps.commitGapMs,
    storeBusyGiveUpMs: deps.storeBusyGiveUpMs,
    log: deps.log ?? (Deno.env.get("DEBUG_LOG") ? undefined : silentLogger),
  });
  const abort = new AbortController();
  const server = serveDeno(app, {
    port: 0,
    hostname: "127.0.0.1",
    pingTimeout: config.pingTimeout,
    signal: abort.signal,
  });
  const url = `http://127.0.0.1:${server.port}`;
  const wsUrl = `ws://127.0.0.1:${server.port}/ws`;
  const clients = new Set<TestClient>();
  return {
    app,
    url,
    wsUrl,
    async connect(options = {}) {
      const client = await openClient(wsUrl, options);
      clients.add(client);
      return client;
    },
    async user(name, ...channels) {
      const client = await this.connect();
      await client.login(name);
      for (const channel of channels) await client.join(channel);
      return client;
    },
    async [Symbol.asyncDispose]() {
      await Promise.all([...clients].map((client) => client.close()));
      abort.abort();
      await server.finished;
      await app.stop();
    },
  };
}

/** A frame as a client received it. */
// deno-lint-ignore no-explicit-any
export type Frame = Record<string, any>;

/** A WebSocket client that queues every JSON object the server sends. */
export interface TestClient {
  readonly socket: WebSocket;
  /** The hello frame. */
  readonly hello: Frame;
  /** Sends a JSON value, or a raw string / bytes as they are. */
  send(frame: unknown): void;
  /** The next object the server sent (frames split on `\n`). */
  next(): Promise<Frame>;
  /** Skips frames until one of `type`; returns it. */
  nextOf(type: string): Promise<Frame>;
  /** Resolves with the close event's code and reason. */
  readonly closed: Promise<{ code: number; reason: string }>;
  /** Objects received and not yet read. */
  readonly buffered: Frame[];
  /** Closes (if open) and waits for the close to finish. */
  close(): Promise<void>;
  /** Logs in and returns the welcome frame. */
  login(name: string): Promise<Frame>;
  /** Joins and returns the joined frame. */
  join(channel: string): Promise<Frame>;
}

/** A WebSocket whose incoming messages wait in a queue until read; shared by the test clients. */
export interface QueuedSocket<T> {
  readonly socket: WebSocket;
  /** Items received and not read yet. */
  readonly buffered: T[];
  /** The next item; fails after `WAIT_MS` or when the socket closes first. */
  next(): Promise<T>;
  /** Resolves with the close event's code and reason. */
  readonly closed: Promise<{ code: number; reason: string }>;
  /** Sends a JSON value, or a string / bytes as they are. */
  send(frame: unknown): void;
  /** Closes (if open) and waits for the close to finish. */
  close(): Promise<void>;
}

/**
 * Opens a WebSocket (with an `Origin` header when given) and queues what
 * `split` makes of each incoming message; resolves once it is open.
 */
export async function openQueuedSocket<T>(
  url: string,
  split: (data: string) => T[],
  options: { origin?: string } = {},
): Promise<QueuedSocket<T>> {
  const socket = options.origin === undefined
    ? new WebSocket(url)
    : new WebSocket(url, { headers: { origin: options.origin } } as unknown as string[]);
  const buffered: T[] = [];
  const waiters: ((item: T | null) => void)[] = [];
  let isClosed = false;
  const closed = new Promise<{ code: number; reason: string }>((resolve) => {
    socket.onclose = (event) => {
      isClosed = true;
      for (const waiter of waiters.splice(0)) waiter(null);
      resolve({ code: event.code, reason: event.reason });
    };
  });
  socket.onmessage = (event) => {
    for (const item of split(typeof event.data === "string" ? event.data : "<binary>")) {
      const waiter = waiters.shift();
      if (waiter) waiter(item);
      else buffered.push(item);
    }
  };
  const opened = new Promise<void>((resolve, reject) => {
    socket.onopen = () => resolve();
    socket.onerror = () => reject(new Error(`WebSocket to ${url} failed`));
  });
  await withTimeout(opened, "the socket to open");
  return {
    socket,
    buffered,
    async next() {
      if (buffered.length > 0) return buffered.shift()!;
      if (isClosed) throw new Error("Socket closed while waiting for a frame");
      const { promise, resolve } = Promise.withResolvers<T | null>();
      waiters.push(resolve);
      const item = await withTimeout(promise, "a frame");
      if (item === null) throw new Error("Socket closed while waiting for a frame");
      return item;
    },
    closed,
    send(frame) {
      socket.send(
        typeof frame === "string" || frame instanceof Uint8Array ? frame : JSON.stringify(frame),
      );
    },
    async close() {
      if (socket.readyState === WebSocket.OPEN) socket.close(1000);
      await closed;
    },
  };
}

/** Opens a client and waits for the server's hello. */
export async function openClient(
  url: string,
  options: { origin?: string } = {},
): Promise<TestClient> {
  // A native frame may carry several objects, one per line.
  const queue = await openQueuedSocket<Frame>(
    url,
    (data) => data.split("\n").filter((line) => line !== "").map((line) => JSON.parse(line)),
    options,
  );
  const { socket, buffered, next, closed, send, close } = queue;
  const client: TestClient = {
    socket,
    hello: {},
    buffered,
    send,
    next,
    async nextOf(type) {
      for (;;) {
        const frame = await next();
        if (frame.type === type) return frame;
      }
    },
    closed,
    close,
    async login(name) {
      client.send({ type: "login", name });
      return await client.nextOf("welcome");
    },
    async join(channel) {
      client.send({ type: "join", channel });
      return await client.nextOf("joined");
    },
  };
  (client as { hello: Frame }).hello = await next();
  return client;
}

/**
 * Sends each `setup` frame (its reply must not be an error), then `frame`; asserts the reply is
 * an error and that the connection stays open (a ping still gets its pong). Returns the error.
 */
export async function expectError(
  client: TestClient,
  frame: unknown,
  setup: readonly unknown[] = [],
): Promise<Frame> {
  for (const step of setup) {
    client.send(step);
    const reply = await client.next();
    assert.notEqual(
      reply.type,
      "error",
      `setup ${JSON.stringify(step)} got ${JSON.stringify(reply)}`,
    );
  }
  client.send(frame);
  const reply = await client.next();
  assert.equal(reply.type, "error", `expected an error, got ${JSON.stringify(reply)}`);
  assert.equal(typeof reply.message, "string", "an error carries a message");
  client.send({ type: "ping" });
  assert.equal((await client.next()).type, "pong", "the connection stays open");
  return reply;
}

/**
 * Asserts an HTTP answer of exactly `{"error":{"code","message"}}` with `status`, `code` and a
 * non-empty message; returns the response for its headers.
 */
export async function assertJsonError(
  response: Response,
  status: number,
  code: string,
): Promise<Response> {
  assert.equal(response.status, status);
  assert.match(response.headers.get("content-type") ?? "", /^application\/json/);
  const body = await response.json();
  assert.deepEqual(Object.keys(body), ["error"]);
  assert.deepEqual(Object.keys(body.error).sort(), ["code", "message"]);
  assert.equal(body.error.code, code);
  assert.equal(typeof body.error.message, "string");
  assert.notEqual(body.error.message, "");
  return response;
}

/** Waits for `promise`, failing after `WAIT_MS` with what was awaited. */
export async function withTimeout<T>(promise: Promise<T>, what: string, ms = WAIT_MS): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`Timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** A seeded source of numbers in [0, 1) (mulberry32), so that a failing run can be replayed. */
export function seeded(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

/** Polls `check` until it holds: another process's state has no event to await. */
export async function waitFor(
  what: string,
  check: () => Promise<boolean>,
  ms = WAIT_MS,
): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`Timed out after ${ms} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}
