/**
 * HTTP over a raw TCP connection, for requests `fetch` cannot make (HTTP/1.0
 * without `Host`) or cannot hold half-sent (a body that arrives later).
 *
 * @module
 */

/** One raw HTTP connection to `127.0.0.1`, closed by `using`. */
export interface RawHttp extends Disposable {
  /** Writes `text` as it is. */
  write(text: string): Promise<void>;
  /** Reads until the server closes the connection; the whole answer as text. */
  readAll(): Promise<string>;
  close(): void;
}

/** Opens a TCP connection to `127.0.0.1:port`. */
export async function rawHttp(port: number): Promise<RawHttp> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  let closed = false;
  const close = () => {
    if (closed) return;
    closed = true;
    conn.close();
  };
  return {
    async write(text) {
      const data = new TextEncoder().encode(text);
      let written = 0;
      while (written < data.length) written += await conn.write(data.subarray(written));
    },
    async readAll() {
      const chunks: Uint8Array[] = [];
      const buffer = new Uint8Array(64 * 1024);
      for (;;) {
        const n = await conn.read(buffer).catch(() => null);
        if (n === null) break;
        chunks.push(buffer.slice(0, n));
      }
      close();
      const bytes = new Uint8Array(chunks.reduce((sum, chunk) => sum + chunk.length, 0));
      let offset = 0;
      for (const chunk of chunks) {
        bytes.set(chunk, offset);
        offset += chunk.length;
      }
      return new TextDecoder().decode(bytes);
    },
    close,
    [Symbol.dispose]: close,
  };
}

/** The parts of a raw HTTP answer. */
export interface RawAnswer {
  status: number;
  /** Header names in lower case. */
  headers: Map<string, string>;
  body: string;
}

/** Splits a raw HTTP answer into status, headers and body. */
export function parseAnswer(text: string): RawAnswer {
  const end = text.indexOf("\r\n\r\n");
  const head = end < 0 ? text : text.slice(0, end);
  const [statusLine, ...lines] = head.split("\r\n");
  const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(statusLine)?.[1] ?? NaN);
  const headers = new Map<string, string>();
  for (const line of lines) {
    const colon = line.indexOf(":");
    if (colon > 0) {
      headers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
    }
  }
  return { status, headers, body: end < 0 ? "" : text.slice(end + 4) };
}
