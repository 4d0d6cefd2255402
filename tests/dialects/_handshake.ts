/**
 * WebSocket handshakes for subprotocol tests: the raw response head for an
 * offer, and a real client that offers some.
 *
 * @module
 */
import { withTimeout } from "../_helpers.ts";

/** The handshake response's status line and headers (names lower-cased) for an upgrade offering `offer`. */
export async function handshake(port: number, path: string, offer?: string): Promise<{
  status: string;
  headers: Map<string, string>;
}> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    const key = btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(16))));
    const request = `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n` +
      `Connection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n` +
      (offer === undefined ? "" : `Sec-WebSocket-Protocol: ${offer}\r\n`) + "\r\n";
    await conn.write(new TextEncoder().encode(request));
    let text = "";
    const chunk = new Uint8Array(4096);
    while (!text.includes("\r\n\r\n")) {
      const n = await withTimeout(conn.read(chunk), "the handshake response");
      if (n === null) throw new Error("Connection closed during the handshake");
      text += new TextDecoder().decode(chunk.subarray(0, n));
    }
    const [status, ...lines] = text.slice(0, text.indexOf("\r\n\r\n")).split("\r\n");
    // A header sent twice shows as "a, a", as `Headers` would combine it.
    const headers = new Map<string, string>();
    for (const line of lines) {
      const colon = line.indexOf(":");
      const name = line.slice(0, colon).trim().toLowerCase();
      const value = line.slice(colon + 1).trim();
      headers.set(name, headers.has(name) ? `${headers.get(name)}, ${value}` : value);
    }
    return { status, headers };
  } finally {
    conn.close();
  }
}

/** Opens a WebSocket offering `protocols`; resolves with the chosen one and its first frame. */
export async function openOffering(
  url: string,
  protocols: string[],
  firstFrame = false,
): Promise<{ protocol: string; frame: string | null }> {
  const socket = new WebSocket(url, protocols);
  const frame = Promise.withResolvers<string>();
  socket.onmessage = (event) => frame.resolve(String(event.data));
  const closed = new Promise<void>((resolve) => socket.onclose = () => resolve());
  try {
    await withTimeout(
      new Promise<void>((resolve, reject) => {
        socket.onopen = () => resolve();
        socket.onerror = () => reject(new Error(`WebSocket to ${url} failed`));
      }),
      "the socket to open",
    );
    return {
      protocol: socket.protocol,
      frame: firstFrame ? await withTimeout(frame.promise, "the first frame") : null,
    };
  } finally {
    if (socket.readyState !== WebSocket.CLOSED) socket.close();
    await closed;
  }
}
