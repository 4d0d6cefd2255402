/** The Deno adapter's own duties: isolating bugs to one socket. */
import assert from "node:assert/strict";
import type { App } from "../../lib/app.ts";
import { createLogger } from "../../lib/log.ts";
import { createMetrics } from "../../lib/metrics.ts";
import { serveDeno } from "../../lib/runtime/deno.ts";
import { withTimeout } from "../_helpers.ts";

/** An app whose message handler has a bug for the frame "boom"; what it logs goes to `logged`. */
function buggyApp(logged: string[]): App {
  return {
    fetch: (_request, info) =>
      Promise.resolve({ upgrade: true, ip: info.ip, path: "/ws", search: "" }),
    open(socket) {
      return {
        message(frame) {
          if (frame === "boom") throw new Error("a bug");
          socket.send(`echo:${typeof frame === "string" ? frame : "binary"}`);
        },
        closed() {},
      };
    },
    abandon() {},
    shutdown() {},
    idle: () => Promise.resolve(),
    stop: () => Promise.resolve(),
    upgradesWait: false,
    metrics: createMetrics(),
    connections: 0,
    log: createLogger({
      format: "text",
      level: "debug",
      write: (_level, line) => logged.push(line),
    }),
  };
}

function open(url: string) {
  const socket = new WebSocket(url);
  const messages: string[] = [];
  const waiters: ((text: string) => void)[] = [];
  socket.onmessage = (event) => {
    const waiter = waiters.shift();
    if (waiter) waiter(event.data);
    else messages.push(event.data);
  };
  const closed = new Promise<number>((resolve) => socket.onclose = (event) => resolve(event.code));
  const opened = new Promise((resolve) => socket.onopen = resolve);
  const next = () =>
    messages.length > 0
      ? Promise.resolve(messages.shift()!)
      : new Promise<string>((resolve) => waiters.push(resolve));
  return { socket, opened, closed, next };
}

Deno.test("runtime/deno: a throwing handler closes that socket with 1011, others carry on", async () => {
  const abort = new AbortController();
  const logged: string[] = [];
  const server = serveDeno(buggyApp(logged), {
    port: 0,
    hostname: "127.0.0.1",
    pingTimeout: 0,
    signal: abort.signal,
  });
  const url = `ws://127.0.0.1:${server.port}/ws`;
  try {
    const victim = open(url);
    const bystander = open(url);
    await withTimeout(Promise.all([victim.opened, bystander.opened]), "both sockets to open");
    victim.socket.send("boom");
    assert.equal(await withTimeout(victim.closed, "the 1011 close"), 1011);
    bystander.socket.send("still there?");
    assert.equal(await withTimeout(bystander.next(), "the echo"), "echo:still there?");
    assert.ok(
      logged.some((line) => line.includes("message handler failed") && line.includes("a bug")),
      "the bug is logged",
    );
    bystander.socket.close();
    await bystander.closed;
  } finally {
    abort.abort();
    await server.finished;
  }
});
