/**
 * Connections that hold a descriptor without finishing anything (issue 13
 * item 3), against a spawned server: what each runtime does about them.
 * The Bun binary closes a silent connection, a slowloris, an idle keep-alive
 * connection and a WebSocket whose client never answers the close frame by
 * itself. Deno 2.9 closes none of them (Deno.serve has no header or idle
 * timeout, denoland/deno#3515, and ignores a handler's `Connection: close`,
 * denoland/deno#9411): there, plain answers carry `Connection: close` so
 * well-behaved clients hang up, and the README says to put a proxy in front.
 */
import assert from "node:assert/strict";
import { withTimeout } from "../_helpers.ts";
import { spawnServer, TARGET } from "./_server.ts";

const ON_DENO = TARGET === "deno";

/** The last-resort bound for a server to close an idle connection (Bun does at about 12 s). */
const CLOSE_BOUND_MS = 30_000;

const encoder = new TextEncoder();

/** A raw TCP connection whose incoming bytes are collected until the server closes it. */
interface RawConnection extends AsyncDisposable {
  readonly conn: Deno.TcpConn;
  /** Everything received so far. */
  text(): string;
  /** Resolves once the server has closed the connection (end of stream or reset). */
  readonly ended: Promise<void>;
  write(text: string): Promise<void>;
}

async function connect(port: number): Promise<RawConnection> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  let received = "";
  const decoder = new TextDecoder();
  const ended = (async () => {
    const buffer = new Uint8Array(16 * 1024);
    try {
      for (;;) {
        const n = await conn.read(buffer);
        if (n === null) return;
        received += decoder.decode(buffer.subarray(0, n), { stream: true });
      }
    } catch {
      // A reset ends it too; closing our side at the end of the test does as well.
    }
  })();
  let closed = false;
  return {
    conn,
    text: () => received,
    ended,
    async write(text) {
      await conn.write(encoder.encode(text));
    },
    async [Symbol.asyncDispose]() {
      if (!closed) {
        closed = true;
        try {
          conn.close();
        } catch {
          // Already closed.
        }
      }
      await ended;
    },
  };
}

/** Resolves once `connection` has received a whole response head; returns it. */
async function responseHead(connection: RawConnection): Promise<string> {
  for (let reads = 0; !connection.text().includes("\r\n\r\n"); reads++) {
    await Promise.race([connection.ended, new Promise((resolve) => setTimeout(resolve, 10))]);
    assert.ok(reads < 3000, "a response head arrived");
  }
  return connection.text().slice(0, connection.text().indexOf("\r\n\r\n")).toLowerCase();
}

Deno.test(`idle http (${TARGET}): Deno asks clients to hang up after plain answers; Bun closes idle and slow connections`, async () => {
  await using server = await spawnServer({ args: ["--login-timeout", "1"] });
  await using keepAlive = await connect(server.port);
  await keepAlive.write(`GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:${server.port}\r\n\r\n`);
  const head = await responseHead(keepAlive);
  assert.match(head, /^http\/1\.1 200/);
  if (ON_DENO) {
    // Deno itself keeps the connection open; a client that honours the header hangs up.
    assert.match(head, /\r\nconnection: close\r\n/);
    return;
  }
  await using silent = await connect(server.port);
  await using slowloris = await connect(server.port);
  // A header byte every 200 ms: never a whole request, never quiet for long.
  const header = `GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: ${"a".repeat(1000)}\r\n\r\n`;
  let sent = 0;
  const trickle = setInterval(() => {
    slowloris.write(header[sent++ % header.length]).catch(() => {});
  }, 200);
  await using unanswered = await connect(server.port);
  await unanswered.write(
    `GET /ws HTTP/1.1\r\nHost: 127.0.0.1:${server.port}\r\nUpgrade: websocket\r\n` +
      `Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n` +
      `Sec-WebSocket-Version: 13\r\n\r\n`,
  );
  try {
    // The login timeout closes the socket with 4408; its client never answers the close frame.
    await withTimeout(
      Promise.all([keepAlive.ended, silent.ended, slowloris.ended, unanswered.ended]),
      "the server to close the idle connections",
      CLOSE_BOUND_MS,
    );
  } finally {
    clearInterval(trickle);
  }
  assert.match(unanswered.text(), /^HTTP\/1\.1 101/);
});
