/**
 * Reference server for the benchmark: a naive Deno chat room, as one would
 * first write it. `ws://HOST:PORT/?room=R` joins room R; every text frame a
 * client sends is passed to `socket.send` once per member of R, the sender
 * included. Each send is its own frame and its own write, which is the cost
 * hubbub's coalescing hub exists to avoid; hubbub-on-Deno is measured
 * against it.
 *
 * Usage: deno run --allow-net bench/ref_deno_naive.ts [--port 0] [--hostname 127.0.0.1]
 *
 * @module
 */

function flag(name: string, fallback: string): string {
  const at = Deno.args.indexOf(name);
  return at >= 0 && at + 1 < Deno.args.length ? Deno.args[at + 1] : fallback;
}

/** Room name → its open sockets. */
const rooms = new Map<string, Set<WebSocket>>();

Deno.serve({
  port: Number(flag("--port", "0")),
  hostname: flag("--hostname", "127.0.0.1"),
  onListen: ({ hostname, port }) =>
    console.log(`ref-deno-naive listening on http://${hostname}:${port}/`),
}, (request) => {
  const room = new URL(request.url).searchParams.get("room") ?? "";
  const { socket, response } = Deno.upgradeWebSocket(request);
  socket.onopen = () => {
    let members = rooms.get(room);
    if (members === undefined) rooms.set(room, members = new Set());
    members.add(socket);
  };
  socket.onmessage = (event) => {
    for (const member of rooms.get(room) ?? []) member.send(event.data);
  };
  socket.onclose = () => {
    const members = rooms.get(room);
    members?.delete(socket);
    if (members?.size === 0) rooms.delete(room);
  };
  socket.onerror = () => {
    // A reset peer; the close event follows.
  };
  return response;
});
