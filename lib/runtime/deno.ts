/**
 * The Deno adapter: `Deno.serve` and `Deno.upgradeWebSocket` bound to the
 * runtime-free app. The only file that touches Deno's sockets.
 *
 * @module
 */
import type { App, Connection } from "../app.ts";
import { UPGRADE } from "../http.ts";
import { CloseCode } from "../protocol.ts";
import type { Socket } from "../socket.ts";
import type { RunningServer, Runtime, ServeOptions } from "./types.ts";

/** Seconds without a pong before Deno drops a WebSocket (it pings at half of this). */
const IDLE_TIMEOUT_SECONDS = 30;

/** Serves `app` with `Deno.serve`. */
export function serveDeno(app: App, options: ServeOptions): RunningServer {
  const server = Deno.serve({
    port: options.port,
    hostname: options.hostname,
    signal: options.signal,
    onListen: () => {},
  }, async (request) => {
    const answer = await app.fetch(request);
    if (answer !== UPGRADE) return answer;
    const { socket, response } = Deno.upgradeWebSocket(request, {
      idleTimeout: IDLE_TIMEOUT_SECONDS,
    });
    bindSocket(app, socket);
    return response;
  });
  const addr = server.addr as Deno.NetAddr;
  return {
    hostname: addr.hostname,
    port: addr.port,
    shutdown: () => server.shutdown(),
    finished: server.finished,
  };
}

/** Wires one Deno WebSocket to a new app connection. */
function bindSocket(app: App, socket: WebSocket): void {
  socket.binaryType = "arraybuffer";
  const adapted: Socket = {
    send(text) {
      if (socket.readyState !== WebSocket.OPEN) return;
      try {
        socket.send(text);
      } catch {
        // The peer is gone; the close event follows and cleans up.
      }
    },
    close(code, reason) {
      if (socket.readyState === WebSocket.OPEN || socket.readyState === WebSocket.CONNECTING) {
        socket.close(code, reason);
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
      console.error(`hubbub: ${what} failed:`, error);
      adapted.close(CloseCode.InternalError, "Internal error");
    }
  };
  socket.onopen = guard("open", () => {
    connection = app.open(adapted);
  });
  socket.onmessage = guard("message", (event: MessageEvent) => {
    const data = event.data;
    connection?.message(
      typeof data === "string" ? data : { binary: true, byteLength: data.byteLength },
    );
  });
  socket.onclose = guard("close", () => {
    connection?.closed();
    connection = undefined;
  });
  socket.onerror = () => {
    // Always followed by a close event.
  };
}

/** The Deno runtime. */
export const denoRuntime: Runtime = {
  name: "deno",
  args: () => [...Deno.args],
  env: () => Deno.env.toObject(),
  serve: serveDeno,
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
