/**
 * WebSocket subprotocols: wsify and channel-path answer with the first one a
 * client offers, as their originals did (a client that offers one fails the
 * handshake without an answer); the native protocol and the other dialects
 * choose none. On each dialect's own listener and under `/compat/NAME/`.
 */
import assert from "node:assert/strict";
import { DIALECTS } from "../../lib/dialects/index.ts";
import { serveDeno } from "../../lib/runtime/deno.ts";
import { startServer, type TestServer } from "../_helpers.ts";
import { handshake, openOffering } from "./_handshake.ts";

/** The server with every dialect, plus own listeners for wsify and channel-path. */
async function withListeners(
  body: (server: TestServer, own: Record<string, number>) => Promise<void>,
): Promise<void> {
  await using server = startServer({}, { dialects: DIALECTS });
  const abort = new AbortController();
  const listeners = ["wsify", "channel-path"].map((name) =>
    [
      name,
      serveDeno(server.app, {
        port: 0,
        hostname: "127.0.0.1",
        pingTimeout: 30,
        listener: name,
        signal: abort.signal,
      }),
    ] as const
  );
  try {
    await body(server, Object.fromEntries(listeners.map(([name, own]) => [name, own.port])));
  } finally {
    abort.abort();
    await Promise.all(listeners.map(([, own]) => own.finished));
  }
}

Deno.test("subprotocol: wsify and channel-path echo the first subprotocol offered, on both endpoints", async (t) => {
  await withListeners(async (server, own) => {
    const main = Number(new URL(server.url).port);
    const endpoints: [name: string, port: number, path: string, sendsOnOpen: boolean][] = [
      ["wsify, own listener", own.wsify, "/ws", false],
      ["wsify, /compat", main, "/compat/wsify/ws", false],
      ["channel-path, own listener", own["channel-path"], "/api/chat/room1", true],
      ["channel-path, /compat", main, "/compat/channel-path/api/chat/room1", true],
    ];
    for (const [name, port, path, sendsOnOpen] of endpoints) {
      await t.step(`${name}: a WebSocket client offering two gets the first`, async () => {
        const opened = await openOffering(
          `ws://127.0.0.1:${port}${path}`,
          ["chat", "json"],
          sendsOnOpen,
        );
        assert.equal(opened.protocol, "chat");
        if (sendsOnOpen) assert.deepEqual(JSON.parse(opened.frame!).type, "connection");
      });
      await t.step(`${name}: offers without spaces ("a,b", as Node's ws sends them)`, async () => {
        const { status, headers } = await handshake(port, path, "a,b");
        assert.match(status, /^HTTP\/1\.1 101/);
        assert.equal(headers.get("sec-websocket-protocol"), "a");
      });
      await t.step(`${name}: no offer, no answer`, async () => {
        const { status, headers } = await handshake(port, path);
        assert.match(status, /^HTTP\/1\.1 101/);
        assert.equal(headers.has("sec-websocket-protocol"), false);
      });
    }
  });
});

Deno.test("subprotocol: the native protocol and the other dialects choose none (as before)", async (t) => {
  await withListeners(async (server) => {
    const port = Number(new URL(server.url).port);
    for (const path of ["/ws", "/compat/wschat/", "/compat/garinchat/", "/compat/login-chat/"]) {
      await t.step(path, async () => {
        const { status, headers } = await handshake(port, path, "chat");
        assert.match(status, /^HTTP\/1\.1 101/);
        assert.equal(headers.has("sec-websocket-protocol"), false);
      });
    }
  });
});
