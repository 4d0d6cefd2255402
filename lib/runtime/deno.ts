/**
 * The Deno adapter: `Deno.serve` and `Deno.upgradeWebSocket` bound to the
 * runtime-free app. The only file that touches Deno's sockets.
 *
 * @module
 */
import { dirname } from "node:path";
import type { App, Connection } from "../app.ts";
import { createKvEngine } from "../cluster/engine_kv.ts";
import { again } from "../cluster/kv.ts";
import type { Upgrade } from "../http/http.ts";
import type { Engine } from "../cluster/engine.ts";
import { CloseCode } from "../core/protocol.ts";
import type { Socket } from "../core/socket.ts";
import type { Level } from "../log.ts";
import type {
  KvEngineOptions,
  ListenError,
  RunningServer,
  Runtime,
  ServeOptions,
} from "./types.ts";

/** How long to wait before listening again after the listener failed (e.g. out of file descriptors). */
const RELISTEN_DELAY_MS = 1000;

/** How long the listener may keep failing before the process gives up and exits 1. */
const RELISTEN_GIVE_UP_MS = 60_000;

/** The longest a socket the server closes goes on reading what its client had already sent. */
const CLOSE_LINGER_MS = 1000;

/** What the request handler needs to know of its listener. */
export type HandlerOptions = Pick<ServeOptions, "pingTimeout" | "listener">;

/**
 * The `Deno.serve` handler that feeds `app`: plain requests, and upgrades
 * to WebSockets bound to the app. `serveDeno` listens with it; under `deno
 * serve`, `serve.ts` exports it as the default export's `fetch`.
 */
export function denoHandler(
  app: App,
  options: HandlerOptions,
): (request: Request, info: Deno.ServeHandlerInfo) => Promise<Response> {
  return async (request, info) => {
    // Deno watches for the client leaving only once the signal is read, so read it first; but
    // only where the app may wait on an authorizer: watching costs ~3 KiB per idle connection.
    const signal = app.upgradesWait && request.headers.has("upgrade") ? request.signal : undefined;
    const answer = await app.fetch(request, {
      ip: (info.remoteAddr as Deno.NetAddr).hostname,
      listener: options.listener,
    });
    // Deno.serve has no idle timeout (denoland/deno#3515): a keep-alive connection would stay
    // open for as long as the client likes, so each plain answer ends its connection.
    if (answer instanceof Response) return closingConnection(answer);
    // A client that resets while Deno writes the 101 leaves a socket that never reports open,
    // close or error, and a descriptor Deno never closes. A reset while the authorizer decided
    // shows up as the aborted signal; the rest is caught by the app's open deadline, which frees
    // the slot only. (Waiting a turn of the event loop here to catch resets that came with the
    // request cost every connection ~10 KiB of idle RSS in bench:quick: not worth it.)
    if (signal?.aborted) {
      app.abandon(answer);
      return new Response(null, { status: 400 });
    }
    let upgraded;
    try {
      upgraded = Deno.upgradeWebSocket(request, { idleTimeout: options.pingTimeout });
    } catch {
      app.abandon(answer);
      return new Response("Bad WebSocket upgrade", { status: 400 });
    }
    bindSocket(app, upgraded.socket, answer);
    // Set here rather than with `upgradeWebSocket`'s `protocol` option, which throws unless
    // the client separated its offers with ", " exactly (Node's `ws` sends "a,b").
    if (answer.protocol !== undefined) {
      upgraded.response.headers.set("sec-websocket-protocol", answer.protocol);
    }
    return upgraded.response;
  };
}

/** Serves `app` with `Deno.serve`; recovers the listener when accepting fails. */
export function serveDeno(app: App, options: ServeOptions): RunningServer {
  const handler = denoHandler(app, options);
  let stopped = false;
  let failingSince: number | null = null;
  const { promise: finished, resolve: finish } = Promise.withResolvers<void>();
  const listen = (port: number): Deno.HttpServer<Deno.NetAddr> => {
    const server = Deno.serve({
      port,
      hostname: options.hostname,
      signal: options.signal,
      onListen: () => {},
    }, handler);
    server.finished.then(
      () => finish(),
      (error) => {
        // Deno's accept loop dies on errors like EMFILE; open sockets live on. Listen again.
        app.metrics.acceptErrors++;
        if (stopped || options.signal?.aborted) return finish();
        app.log.error("the listener failed; listening again", { error: String(error) });
        failingSince ??= Date.now();
        setTimeout(relisten, RELISTEN_DELAY_MS);
      },
    );
    return server;
  };
  const relisten = () => {
    if (stopped || options.signal?.aborted) return finish();
    try {
      current = listen(addr.port);
      failingSince = null;
    } catch (error) {
      if (Date.now() - (failingSince ?? Date.now()) > RELISTEN_GIVE_UP_MS) {
        app.log.error("cannot listen again; exiting so a supervisor restarts us", {
          error: String(error),
        });
        Deno.exit(1);
      }
      setTimeout(relisten, RELISTEN_DELAY_MS);
    }
  };
  let current = listen(options.port);
  const addr = current.addr;
  return {
    hostname: addr.hostname,
    port: addr.port,
    async shutdown() {
      stopped = true;
      await current.shutdown();
    },
    finished,
  };
}

/** Wires one Deno WebSocket to a new app connection. */
function bindSocket(app: App, socket: WebSocket, upgrade: Upgrade): void {
  socket.binaryType = "arraybuffer";
  /** The close the app asked for, while frames the client sent before it are still read. */
  let closing: { code: number; reason: string; since: number } | undefined;
  let closeTimer: ReturnType<typeof setTimeout> | undefined;
  const closeNow = () => {
    closeTimer = undefined;
    if (socket.readyState === WebSocket.OPEN) socket.close(closing!.code, closing!.reason);
  };
  // A Deno server socket that reads a data frame after close() drops the connection at once:
  // its close frame may be unsent, and unread bytes make the kernel send a reset, so the client
  // sees 1006 instead of why it was cut off (a flood's 4429). So close only once a turn of the
  // event loop passes without a frame, or after CLOSE_LINGER_MS of a client that never stops.
  const closeWhenQuiet = () => {
    clearTimeout(closeTimer);
    if (Date.now() - closing!.since >= CLOSE_LINGER_MS) closeNow();
    else closeTimer = setTimeout(closeNow, 0);
  };
  const adapted: Socket = {
    send(text) {
      // The hub writes only to an open socket (it learns of it in onopen and forgets it on
      // close), so no readyState read per frame: a socket the peer closed in between throws.
      if (closing !== undefined) return;
      try {
        socket.send(text);
      } catch {
        // The peer is gone; the close event follows and cleans up.
      }
    },
    close(code, reason) {
      if (socket.readyState === WebSocket.CONNECTING) socket.close(code, reason);
      else if (socket.readyState === WebSocket.OPEN && closing === undefined) {
        closing = { code, reason, since: Date.now() };
        closeWhenQuiet();
      }
    },
    get bufferedAmount() {
      return socket.bufferedAmount;
    },
  };
  let connection: Connection | undefined;
  // A bug in one callback closes that socket with 1011; the process lives on.
  const guard = <E>(what: string, handler: (event: E) => void) => (event: E) => {
    try {
      handler(event);
    } catch (error) {
      app.metrics.internalErrors++;
      app.log.error(`a socket's ${what} handler failed`, {
        error: error instanceof Error ? error.stack ?? error.message : String(error),
      });
      adapted.close(CloseCode.InternalError, "Internal error");
    }
  };
  socket.onopen = guard("open", () => {
    connection = app.open(adapted, upgrade);
  });
  socket.onmessage = guard("message", (event: MessageEvent) => {
    if (closing !== undefined) return closeWhenQuiet(); // the app is done with this socket
    const data = event.data;
    connection?.message(
      typeof data === "string" ? data : { binary: true, bytes: new Uint8Array(data) },
    );
  });
  socket.onclose = guard("close", (event: CloseEvent) => {
    clearTimeout(closeTimer);
    if (connection === undefined) app.abandon(upgrade); // closed before it opened
    connection?.closed(event.code);
    connection = undefined;
  });
  socket.onerror = () => {
    // A failed upgrade fires this alone; once open, a close event follows.
    if (connection === undefined) app.abandon(upgrade);
  };
}

/** `response` with `Connection: close`, so the server closes the connection once it is sent. */
function closingConnection(response: Response): Response {
  try {
    response.headers.set("connection", "close");
    return response;
  } catch {
    // Immutable headers (Response.redirect, Response.error): answer with a copy.
    const headers = new Headers(response.headers);
    headers.set("connection", "close");
    return new Response(response.body, {
      status: response.status,
      statusText: response.statusText,
      headers,
    });
  }
}

/** Deno's errors from `Deno.serve`, as a ListenError. */
export function denoListenError(error: unknown): ListenError {
  const detail = error instanceof Error ? error.message : String(error);
  if (error instanceof Deno.errors.AddrInUse) return { listenError: "in_use", detail };
  if (error instanceof Deno.errors.PermissionDenied) return { listenError: "denied", detail };
  if (error instanceof Deno.errors.AddrNotAvailable) return { listenError: "unavailable", detail };
  return { listenError: "other", detail };
}

const lineEncoder = new TextEncoder();

/**
 * Writes one log line to stdout (debug, info) or stderr in one write, past
 * the console: `deno serve --parallel` starts each line a worker writes to
 * the console with the worker's name, which would spoil a JSON line.
 */
export function denoLineWriter(level: Level, line: string): void {
  const stream = level === "debug" || level === "info" ? Deno.stdout : Deno.stderr;
  const bytes = lineEncoder.encode(`${line}\n`);
  for (let written = 0; written < bytes.length;) {
    written += stream.writeSync(bytes.subarray(written));
  }
}

/**
 * Opens the Deno KV database at `path` (the runtime's own when null, as on
 * Deno Deploy) and the engine on it, with a `BroadcastChannel` as its fast
 * path to the other workers of this process; stopping the engine closes
 * the database.
 */
export async function openDenoKvEngine(
  { path, prefix, history }: KvEngineOptions,
): Promise<{ engine: Engine } | { message: string }> {
  if (typeof Deno.openKv !== "function") {
    return {
      message:
        'Deno KV is not available: run with --unstable-kv, or keep "unstable": ["kv"] in deno.json',
    };
  }
  let kv: Deno.Kv;
  try {
    // Deno.openKv creates the file, not the directory it goes in.
    if (path !== null && path !== ":memory:") Deno.mkdirSync(dirname(path), { recursive: true });
    // Workers of `deno serve --parallel` open one file at once; SQLite may refuse all but one
    // ("database is locked", one open in twenty measured with three workers): try again.
    kv = await again(() => Deno.openKv(path ?? undefined));
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    return {
      message: `Cannot open the Deno KV database${path === null ? "" : ` "${path}"`}: ${reason}`,
    };
  }
  const engine = createKvEngine({
    kv,
    prefix,
    history,
    fastPath: new BroadcastChannel(`hubbub:${prefix}`),
  });
  return {
    engine: {
      ...engine,
      async stop() {
        await engine.stop();
        kv.close();
      },
    },
  };
}

/**
 * Keeps `deno serve` from handling SIGINT and SIGTERM itself. Once the
 * module is loaded, deno serve adds a listener for each that shuts its
 * server down at once, which closes every WebSocket with 1001 before
 * hubbub's 1012 goes out, and leaves a worker whose timers still run alive:
 * the process then seems to ignore SIGTERM. Listeners for those signals
 * added after this call are kept and never added: hubbub's own (added
 * before) closes the sockets and ends the process.
 */
export function holdServeSignalListeners(): void {
  const add = Deno.addSignalListener;
  Deno.addSignalListener = (signal, handler) => {
    if (signal === "SIGINT" || signal === "SIGTERM") return;
    add(signal, handler);
  };
}

/** The Deno runtime. */
export const denoRuntime: Runtime = {
  name: "deno",
  args: () => [...Deno.args],
  env: () => Deno.env.toObject(),
  serve(app, options) {
    try {
      return serveDeno(app, options);
    } catch (error) {
      return denoListenError(error);
    }
  },
  afterIo: (task) => setImmediate(task),
  residentBytes: () => Deno.memoryUsage().rss,
  openKvEngine: openDenoKvEngine,
  onShutdownSignal(handler) {
    let called = false;
    for (const signal of ["SIGINT", "SIGTERM"] as const) {
      try {
        Deno.addSignalListener(signal, () => {
          if (called) return;
          called = true;
          handler(signal);
        });
      } catch {
        // Some hosts (Deno Deploy, Windows for SIGTERM) have no such signal; they stop us their way.
      }
    }
  },
  exit: (code) => Deno.exit(code),
};
