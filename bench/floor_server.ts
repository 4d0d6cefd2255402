/**
 * The floor's server (run by bench/floor.ts, pinned to core 0): accepts
 * WebSockets, then, on each command line on stdin, sends pre-serialized
 * frames to them as cheaply as Deno lets it, and answers with what it sent
 * and what that cost. Nothing is parsed, routed or encoded per frame: this is
 * the runtime's send path alone.
 *
 * A command is one JSON line, `{"run":{kind,perTurn,burst,seconds}}`:
 * - `kind`: the payload as a `string` (a text frame) or a `Uint8Array` (binary);
 * - `perTurn`: sockets sent to in one turn of the event loop, round-robin over
 *   all of them (1,000 of 1,000: one room's broadcast per turn; 10: one room of
 *   10's message per turn, as a naive server handles each inbound message);
 * - `burst`: frames sent to each of those sockets in the turn (Deno has no
 *   cork: this shows whether several sends to one socket in one turn cost
 *   less than one each);
 * - `seconds`: how long to send. Then it waits until every socket's buffer
 *   is empty and answers `{"frames","wallMs","cpuMs"}`.
 *
 * Usage: deno run --allow-net bench/floor_server.ts --payload 120
 *
 * @module
 */
import process from "node:process";

const at = Deno.args.indexOf("--payload");
const PAYLOAD = Number(at >= 0 ? Deno.args[at + 1] : "120");
/** A socket with this much unsent is not sent more until it drains: the naive loop's one guard. */
const HIGH_WATER = 256 * 1024;

const text = "x".repeat(PAYLOAD);
const bytes = new TextEncoder().encode(text);
const sockets: WebSocket[] = [];

// A macrotask without the timers' 4 ms clamp: a MessagePort message.
const channel = new MessageChannel();
let wake: (() => void) | undefined;
channel.port1.onmessage = () => wake?.();
const yieldTurn = () =>
  new Promise<void>((resolve) => {
    wake = resolve;
    channel.port2.postMessage(null);
  });
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

Deno.serve({
  port: 0,
  hostname: "127.0.0.1",
  onListen: ({ port }) => console.log(JSON.stringify({ ev: "listening", port })),
}, (request) => {
  // No pings: the receivers only count bytes and would never answer one.
  const { socket, response } = Deno.upgradeWebSocket(request, { idleTimeout: 0 });
  socket.onopen = () => sockets.push(socket);
  socket.onerror = () => {};
  return response;
});

interface RunCommand {
  kind: "string" | "bytes";
  perTurn: number;
  burst: number;
  seconds: number;
}

async function run({ kind, perTurn, burst, seconds }: RunCommand) {
  const payload = kind === "string" ? text : bytes;
  const n = sockets.length;
  // A closed socket's send is a no-op that would count as a frame sent.
  const closed = sockets.filter((s) => s.readyState !== WebSocket.OPEN).length;
  if (closed > 0) return { ev: "ran", error: `${closed} of ${n} sockets are not open` };
  let next = 0, frames = 0;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const until = t0 + seconds * 1000;
  while (performance.now() < until) {
    let last: WebSocket = sockets[0];
    for (let i = 0; i < perTurn; i++) {
      last = sockets[next];
      next = next + 1 === n ? 0 : next + 1;
      for (let b = 0; b < burst; b++) last.send(payload);
    }
    frames += perTurn * burst;
    await yieldTurn();
    while (last.bufferedAmount > HIGH_WATER) await sleep(1);
  }
  // Delivered means written: wait for every socket to have handed all of it to the kernel.
  for (;;) {
    let pending = 0;
    for (const socket of sockets) pending += socket.bufferedAmount;
    if (pending === 0) break;
    await sleep(1);
  }
  const wallMs = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  return { ev: "ran", frames, wallMs, cpuMs: (cpu.user + cpu.system) / 1000, sockets: n };
}

const decoder = new TextDecoder();
let rest = "";
for await (const chunk of Deno.stdin.readable) {
  rest += decoder.decode(chunk, { stream: true });
  let nl;
  while ((nl = rest.indexOf("\n")) >= 0) {
    const line = rest.slice(0, nl);
    rest = rest.slice(nl + 1);
    const command = JSON.parse(line);
    if (command.count) console.log(JSON.stringify({ ev: "count", sockets: sockets.length }));
    if (command.run) console.log(JSON.stringify(await run(command.run)));
  }
}
Deno.exit(0);
