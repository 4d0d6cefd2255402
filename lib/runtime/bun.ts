/**
 * The Bun adapter: `Bun.serve` with its uWebSockets `websocket` handlers
 * bound to the runtime-free app. Channel fan-out goes through native topics
 * (`server.publish`), which Bun sends from native code, corked per socket.
 * The only file that touches Bun's sockets.
 *
 * @module
 */
import type { App, Connection } from "../app.ts";
import type { Upgrade } from "../http/http.ts";
import { HARD_BACKLOG_FACTOR } from "../delivery/hub.ts";
import { createTopicHub } from "../delivery/hub_topics.ts";
import { CloseCode } from "../core/protocol.ts";
import type { TopicSocket } from "../core/socket.ts";
import type { ListenError, RunningServer, Runtime, ServeOptions } from "./types.ts";

/** The part of Bun's ServerWebSocket this adapter uses. */
interface BunSocket {
  data: SocketData;
  send(data: string): number;
  close(code?: number, reason?: string): void;
  ping(): number;
  getBufferedAmount(): number;
  subscribe(topic: string): void;
  unsubscribe(topic: string): void;
  publish(topic: string, data: string): number;
}

interface SocketData {
  upgrade: Upgrade;
  connection?: Connection;
  /** The liveness sweep's tick when something last arrived from the peer. */
  heard?: number;
}

/** The part of Bun's Server this adapter uses. */
interface BunServer {
  readonly port: number;
  readonly hostname: string;
  upgrade(
    request: Request,
    options: { data: SocketData; headers?: Record<string, string> },
  ): boolean;
  requestIP(request: Request): { address: string } | null;
  publish(topic: string, data: string): number;
  stop(closeActiveConnections?: boolean): Promise<void>;
}

interface BunGlobal {
  serve(options: unknown): BunServer;
}

/** The part of Node's `process` Bun provides that this adapter uses. */
interface BunProcess {
  argv: string[];
  env: Record<string, string | undefined>;
  exit(code: number): never;
  on(signal: string, handler: () => void): void;
  memoryUsage: { rss(): number };
}

const bun = () => (globalThis as unknown as { Bun: BunGlobal }).Bun;
const bunProcess = () => (globalThis as unknown as { process: BunProcess }).process;

/** Every listener: Bun's topics are per server, so a publication goes through each. */
const servers = new Set<BunServer>();

/** Serves `app` with `Bun.serve`. */
export function serveBun(app: App, options: ServeOptions): RunningServer {
  const limits = options.limits ?? { maxMessageBytes: 65536, maxBufferedBytes: 1 << 20 };
  const liveness = watchLiveness(options.pingTimeout);
  const server = bun().serve({
    port: options.port,
    hostname: options.hostname,
    // Never Bun's development error page (stack frames, the working directory, source lines),
    // whatever NODE_ENV says; `error` below answers what escapes `fetch`.
    development: false,
    async fetch(request: Request, server: BunServer) {
      const answer = await app.fetch(withAbsoluteUrl(request, server), {
        ip: server.requestIP(request)?.address ?? "",
        listener: options.listener,
      });
      if (answer instanceof Response) return answer;
      // Without a header of ours, Bun answers with the first subprotocol offered, whoever asks.
      const headers = answer.protocol === undefined
        ? undefined
        : { "sec-websocket-protocol": answer.protocol };
      if (server.upgrade(request, { data: { upgrade: answer }, headers })) return undefined;
      app.abandon(answer);
      return new Response("Bad WebSocket upgrade", { status: 400 });
    },
    // A bug while answering a request: a plain 500, the details in the log only.
    error(error: unknown) {
      app.metrics.internalErrors++;
      app.log.limited("error", "http:internal", "answering a request failed", {
        error: error instanceof Error ? error.stack ?? error.message : String(error),
      });
      return new Response("Internal Server Error", {
        status: 500,
        headers: { "content-type": "text/plain; charset=utf-8" },
      });
    },
    websocket: {
      // uWebSockets enforces these while reading, fragments included: an
      // oversize message is closed with 1009 before it is buffered whole.
      maxPayloadLength: limits.maxMessageBytes,
      // Off: the server's own sends restart uWebSockets' idle timer, so a dead peer in a busy
      // channel never timed out. `watchLiveness` pings and closes instead, as Deno does.
      idleTimeout: 0,
      sendPings: false,
      // The topic hub closes slow consumers; this only caps what one can hold meanwhile
      // (above the hub's own hard limit, so that one can still be seen).
      backpressureLimit: limits.maxBufferedBytes * HARD_BACKLOG_FACTOR * 2,
      closeOnBackpressureLimit: false,
      perMessageDeflate: false,
      open: guard(app, (ws) => {
        liveness?.add(ws);
        ws.data.connection = app.open(adapt(ws), ws.data.upgrade);
      }),
      // Any frame from the peer, pings and pongs included, shows it is alive.
      ping: (ws: BunSocket) => void (ws.data.heard = liveness?.tick),
      pong: (ws: BunSocket) => void (ws.data.heard = liveness?.tick),
      message: guard(app, (ws, message: string | Uint8Array) => {
        ws.data.heard = liveness?.tick;
        ws.data.connection?.message(
          // Bun hands each message a buffer of its own, so a frame may wait in a backlog as it is.
          typeof message === "string" ? message : { binary: true, bytes: message },
        );
      }),
      close: guard(app, (ws, code: number) => {
        liveness?.sockets.delete(ws);
        const { connection } = ws.data;
        ws.data.connection = undefined;
        connection?.closed(code);
      }),
    },
  });
  servers.add(server);
  options.signal?.addEventListener("abort", () => {
    servers.delete(server);
    liveness?.stop();
    server.stop(true);
  });
  let finish: () => void;
  const finished = new Promise<void>((resolve) => finish = resolve);
  return {
    hostname: server.hostname,
    port: server.port,
    async shutdown() {
      servers.delete(server);
      await server.stop(false);
      liveness?.stop();
      finish();
    },
    finished,
  };
}

/** Deno's reason for the same close, so that a client sees one behaviour on both runtimes. */
const NO_PONG_REASON = "No response from ping frame.";

/** Sweeps per ping timeout (at least one a second): a close is at most 1/8 of it late. */
const SWEEPS_PER_TIMEOUT = 8;

/** The sockets of one listener, watched for silence by one timer. */
interface Liveness {
  /** Counts sweeps; a socket notes it when something arrives (cheaper than reading the clock). */
  tick: number;
  readonly sockets: Set<BunSocket>;
  add(ws: BunSocket): void;
  stop(): void;
}

/**
 * Deno's ping timeout on Bun, for `pingTimeout` seconds (0: none): a socket
 * that has sent nothing (no frame, ping or pong) for half of it is pinged, and
 * one silent for all of it is closed with 1001. One timer sweeps all sockets;
 * a frame costs one property write.
 */
function watchLiveness(pingTimeout: number): Liveness | undefined {
  if (pingTimeout <= 0) return undefined;
  const sweepMs = Math.min(1000, (pingTimeout * 1000) / SWEEPS_PER_TIMEOUT);
  const closeAfter = Math.round((pingTimeout * 1000) / sweepMs);
  const pingAfter = Math.floor(closeAfter / 2);
  const liveness: Liveness = {
    tick: 0,
    sockets: new Set(),
    add(ws) {
      ws.data.heard = liveness.tick;
      liveness.sockets.add(ws);
    },
    stop: () => clearInterval(timer),
  };
  const timer = setInterval(() => {
    const tick = ++liveness.tick;
    for (const ws of liveness.sockets) {
      // In whole sweeps: over `closeAfter` of them is never shorter than the timeout.
      const silent = tick - (ws.data.heard ?? 0);
      if (silent === pingAfter) ws.ping();
      else if (silent > closeAfter) {
        liveness.sockets.delete(ws);
        try {
          ws.close(CloseCode.GoingAway, NO_PONG_REASON);
        } catch {
          // Already closed; the close handler has run or will.
        }
      }
    }
  }, sweepMs);
  // Never what keeps the process alive.
  (timer as unknown as { unref?: () => void }).unref?.();
  return liveness;
}

/**
 * The request with an absolute URL. Bun leaves an HTTP/1.0 request without
 * `Host` (HAProxy's default health check) with only its path as `url`, which
 * `new URL` refuses; such a request is answered as one to this listener.
 */
function withAbsoluteUrl(request: Request, server: BunServer): Request {
  if (URL.canParse(request.url)) return request;
  const host = server.hostname.includes(":") ? `[${server.hostname}]` : server.hostname;
  const base = `http://${host}:${server.port}`;
  const url = URL.canParse(request.url, base) ? new URL(request.url, base) : new URL(base);
  return new Request(url, request);
}

/** A bug in one callback closes that socket with 1011; the process lives on. */
function guard<A extends unknown[]>(app: App, handler: (ws: BunSocket, ...args: A) => void) {
  return (ws: BunSocket, ...args: A) => {
    try {
      handler(ws, ...args);
    } catch (error) {
      app.metrics.internalErrors++;
      app.log.error("a socket callback failed", {
        error: error instanceof Error ? error.stack ?? error.message : String(error),
      });
      try {
        ws.close(CloseCode.InternalError, "Internal error");
      } catch {
        // Already closed.
      }
    }
  };
}

function adapt(ws: BunSocket): TopicSocket {
  return {
    send: (text) => void ws.send(text),
    close(code, reason) {
      try {
        ws.close(code, reason);
      } catch {
        // Already closed; the close handler has run or will.
      }
    },
    get bufferedAmount() {
      return ws.getBufferedAmount();
    },
    subscribe: (topic) => ws.subscribe(topic),
    unsubscribe: (topic) => ws.unsubscribe(topic),
    publish: (topic, text) => void ws.publish(topic, text),
  };
}

/** Bun's errors from `Bun.serve` (Node-style `code`s), as a ListenError. */
export function bunListenError(error: unknown, port: number): ListenError {
  const detail = error instanceof Error ? error.message : String(error);
  const code = (error as { code?: unknown } | null)?.code;
  // Bun says EADDRINUSE for any failed listen, an unknown hostname included; port 0 is never in use.
  if (code === "EADDRINUSE") return { listenError: port === 0 ? "other" : "in_use", detail };
  if (code === "EACCES" || code === "EPERM") return { listenError: "denied", detail };
  if (code === "EADDRNOTAVAIL") return { listenError: "unavailable", detail };
  return { listenError: "other", detail };
}

/** The Bun runtime. */
export const bunRuntime: Runtime = {
  name: "bun",
  args: () => bunProcess().argv.slice(2),
  env: () => ({ ...bunProcess().env }),
  serve(app, options) {
    try {
      return serveBun(app, options);
    } catch (error) {
      return bunListenError(error, options.port);
    }
  },
  hub: (options) =>
    createTopicHub(options, (topic, text) => {
      for (const server of servers) server.publish(topic, text);
    }),
  // Bun runs immediates after the events of the current poll of the sockets.
  afterIo: (task) => setImmediate(task),
  residentBytes: () => bunProcess().memoryUsage.rss(),
  onShutdownSignal(handler) {
    let called = false;
    for (const signal of ["SIGINT", "SIGTERM"]) {
      bunProcess().on(signal, () => {
        if (called) return;
        called = true;
        handler(signal);
      });
    }
  },
  exit: (code) => bunProcess().exit(code),
};
