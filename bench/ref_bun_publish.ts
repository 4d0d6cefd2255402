/**
 * Reference server for the benchmark: the least a Bun chat room can be.
 * `ws://HOST:PORT/?room=R` joins room R; every text frame a client sends goes
 * to every member of R, the sender included, through Bun's native topics
 * (`server.publish`, fanned out and corked per socket in uWebSockets). This is
 * the ceiling hubbub-on-Bun is measured against.
 *
 * Usage: bun bench/ref_bun_publish.ts [--port 0] [--hostname 127.0.0.1]
 *
 * @module
 */

// Bun's types are not in Deno's checker (`deno task check` covers bench/):
// describe the little we use, as lib/runtime/bun.ts does.
interface RefSocket {
  data: { room: string };
  subscribe(topic: string): void;
}
interface RefServer {
  readonly port: number;
  readonly hostname: string;
  upgrade(request: Request, options: { data: { room: string } }): boolean;
  publish(topic: string, data: string | Uint8Array): number;
}
const Bun = (globalThis as unknown as { Bun: { serve(options: unknown): RefServer } })
  .Bun;
const argv = (globalThis as unknown as { process: { argv: string[] } }).process
  .argv.slice(2);

function flag(name: string, fallback: string): string {
  const at = argv.indexOf(name);
  return at >= 0 && at + 1 < argv.length ? argv[at + 1] : fallback;
}

const server: RefServer = Bun.serve({
  port: Number(flag("--port", "0")),
  hostname: flag("--hostname", "127.0.0.1"),
  fetch(request: Request, server: RefServer) {
    const room = new URL(request.url).searchParams.get("room") ?? "";
    if (server.upgrade(request, { data: { room } })) return undefined;
    return new Response("WebSocket only", { status: 400 });
  },
  websocket: {
    // As hubbub-on-Bun runs: no compression, so both pay the same per byte.
    perMessageDeflate: false,
    open(ws: RefSocket) {
      ws.subscribe(ws.data.room);
    },
    message(ws: RefSocket, message: string | Uint8Array) {
      // server.publish, not ws.publish: the latter skips the sender.
      server.publish(ws.data.room, message);
    },
  },
});
console.log(
  `ref-bun-publish listening on http://${server.hostname}:${server.port}/`,
);
