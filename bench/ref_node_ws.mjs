/**
 * Reference server for the benchmark: a minimal Node chat room on npm `ws`.
 * `ws://HOST:PORT/?room=R` joins room R; every text frame a client sends goes
 * to every member of R, the sender included, with one `send` per recipient
 * (ws builds a small header per send and writes it with the shared payload in
 * one writev). This is how most Node chat servers fan out.
 *
 * Usage: node bench/ref_node_ws.mjs [--port 0] [--hostname 127.0.0.1]
 */
import { createRequire } from "node:module";
import process from "node:process";

// ws lives in bench/node/node_modules (`npm ci --prefix bench/node`). Loaded with
// require so that `deno check bench/`, which also walks .mjs files, need not resolve it.
const { WebSocketServer } = createRequire(new URL("./node/", import.meta.url))("ws");

const argv = process.argv.slice(2);
const flag = (name, fallback) => {
  const at = argv.indexOf(name);
  return at >= 0 && at + 1 < argv.length ? argv[at + 1] : fallback;
};

/** Room name → its sockets. */
const rooms = new Map();

const server = new WebSocketServer({
  port: Number(flag("--port", "0")),
  host: flag("--hostname", "127.0.0.1"),
  perMessageDeflate: false,
  // The rooms are the only registry this server needs.
  clientTracking: false,
  // A connect storm is part of the benchmark: do not refuse what the kernel queued.
  backlog: 4096,
});

server.on("connection", (socket, request) => {
  const room = new URL(request.url ?? "/", "http://localhost").searchParams.get("room") ??
    "";
  let members = rooms.get(room);
  if (members === undefined) rooms.set(room, members = new Set());
  members.add(socket);
  socket.on("message", (data, isBinary) => {
    for (const member of members) member.send(data, { binary: isBinary });
  });
  socket.on("close", () => {
    members.delete(socket);
    if (members.size === 0 && rooms.get(room) === members) rooms.delete(room);
  });
  socket.on("error", () => {
    // A reset peer; the close event follows.
  });
});

server.on("listening", () => {
  const { address, port } = server.address();
  console.log(`ref-node-ws listening on http://${address}:${port}/`);
});
