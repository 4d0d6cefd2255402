/**
 * The floor's receivers (run by bench/floor.ts under Node, pinned to core 1):
 * opens N WebSocket connections with a bare handshake over `node:net` and
 * counts the bytes that arrive after it, nothing else, so that one core can
 * take far more frames than the server's core can send.
 *
 * stdin commands, one JSON line each: `{"open":{port,clients,sources}}` →
 * `{"ev":"open",opened}`; `{"count":true}` → `{"ev":"count",bytes}`.
 */
import net from "node:net";
import process from "node:process";
import readline from "node:readline";

let bytes = 0;
const sockets = [];
const say = (event) => process.stdout.write(JSON.stringify(event) + "\n");

function connect(port, localAddress) {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ port, host: "127.0.0.1", localAddress });
    let upgraded = false;
    socket.setNoDelay(true);
    socket.on("connect", () => {
      socket.write(
        "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
          "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
      );
    });
    socket.on("data", (chunk) => {
      if (upgraded) {
        bytes += chunk.length;
        return;
      }
      const end = chunk.indexOf("\r\n\r\n");
      if (end < 0) return; // the 101's head arrives whole in practice
      upgraded = true;
      bytes += chunk.length - end - 4;
      resolve(socket);
    });
    socket.on("error", reject);
  });
}

readline.createInterface({ input: process.stdin }).on("line", async (line) => {
  const command = JSON.parse(line);
  if (command.open) {
    const { port, clients, sources } = command.open;
    for (let i = 0; i < clients; i += 200) {
      const batch = [];
      for (let j = i; j < Math.min(clients, i + 200); j++) {
        batch.push(connect(port, sources[j % sources.length]));
      }
      sockets.push(...await Promise.all(batch));
    }
    say({ ev: "open", opened: sockets.length });
  }
  if (command.count) say({ ev: "count", bytes });
  if (command.quit) process.exit(0);
});
