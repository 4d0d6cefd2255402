/**
 * A WebSocket client over a raw TCP connection, for the faults a browser
 * cannot produce: invalid UTF-8, fragments, a peer that never reads or
 * never answers pings.
 *
 * @module
 */

/** WebSocket opcodes (RFC 6455 §5.2). */
export const Opcode = { Continuation: 0, Text: 1, Binary: 2, Close: 8, Ping: 9, Pong: 10 } as const;

/** One frame as read off the wire. */
export interface RawFrame {
  fin: boolean;
  opcode: number;
  payload: Uint8Array;
}

/** A client speaking WebSocket frames by hand. */
export interface RawSocket extends AsyncDisposable {
  readonly conn: Deno.TcpConn;
  /** Sends one frame, masked as a client must. */
  send(opcode: number, payload: Uint8Array | string, options?: { fin?: boolean }): Promise<void>;
  /** Reads the next frame; null at end of stream. */
  read(): Promise<RawFrame | null>;
  /** Reads until a close frame and returns its code; null if the stream ends first. */
  readClose(): Promise<number | null>;
  /** Closes the TCP connection (no close handshake). */
  close(): void;
}

const encoder = new TextEncoder();

/** Opens a raw WebSocket to `127.0.0.1:port` at `path`. */
export async function rawConnect(port: number, path = "/ws"): Promise<RawSocket> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const key = btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(16))));
  await writeAll(
    conn,
    encoder.encode(
      `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
        `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
    ),
  );
  let buffer = new Uint8Array(0);
  let closed = false;
  const fill = async (needed: number): Promise<boolean> => {
    while (buffer.length < needed) {
      const chunk = new Uint8Array(64 * 1024);
      const n = await conn.read(chunk);
      if (n === null) return false;
      const merged = new Uint8Array(buffer.length + n);
      merged.set(buffer);
      merged.set(chunk.subarray(0, n), buffer.length);
      buffer = merged;
    }
    return true;
  };
  const take = (n: number) => {
    const out = buffer.slice(0, n);
    buffer = buffer.slice(n);
    return out;
  };
  // The handshake response ends at the first blank line.
  for (;;) {
    const end = new TextDecoder().decode(buffer).indexOf("\r\n\r\n");
    if (end >= 0) {
      const head = new TextDecoder().decode(take(end + 4));
      if (!head.startsWith("HTTP/1.1 101")) {
        conn.close();
        throw new Error(`Upgrade refused: ${head.split("\r\n")[0]}`);
      }
      break;
    }
    if (!(await fill(buffer.length + 1))) throw new Error("Connection closed during the handshake");
  }

  const socket: RawSocket = {
    conn,
    async send(opcode, payload, { fin = true } = {}) {
      const data = typeof payload === "string" ? encoder.encode(payload) : payload;
      await writeAll(conn, encodeFrame(opcode, data, fin));
    },
    async read() {
      if (!(await fill(2))) return null;
      const fin = (buffer[0] & 0x80) !== 0;
      const opcode = buffer[0] & 0x0f;
      let length = buffer[1] & 0x7f;
      let header = 2;
      if (length === 126) {
        if (!(await fill(4))) return null;
        length = (buffer[2] << 8) | buffer[3];
        header = 4;
      } else if (length === 127) {
        if (!(await fill(10))) return null;
        length = Number(new DataView(buffer.buffer, buffer.byteOffset + 2, 8).getBigUint64(0));
        header = 10;
      }
      if (!(await fill(header + length))) return null;
      take(header);
      return { fin, opcode, payload: take(length) };
    },
    async readClose() {
      for (;;) {
        const frame = await socket.read().catch(() => null);
        if (frame === null) return null;
        if (frame.opcode === Opcode.Close) {
          return frame.payload.length >= 2 ? (frame.payload[0] << 8) | frame.payload[1] : 1005;
        }
      }
    },
    close() {
      if (closed) return;
      closed = true;
      conn.close();
    },
    [Symbol.asyncDispose]() {
      socket.close();
      return Promise.resolve();
    },
  };
  return socket;
}

/** Masked text frames carrying `texts`, back to back in one buffer (for one TCP write). */
export function textFrames(texts: readonly string[]): Uint8Array {
  const frames = texts.map((text) => encodeFrame(Opcode.Text, encoder.encode(text)));
  const bytes = new Uint8Array(frames.reduce((total, frame) => total + frame.length, 0));
  let offset = 0;
  for (const frame of frames) {
    bytes.set(frame, offset);
    offset += frame.length;
  }
  return bytes;
}

/** Encodes one masked client frame. */
export function encodeFrame(opcode: number, payload: Uint8Array, fin = true): Uint8Array {
  const length = payload.length;
  const extended = length < 126 ? 0 : length < 65536 ? 2 : 8;
  const frame = new Uint8Array(2 + extended + 4 + length);
  frame[0] = (fin ? 0x80 : 0) | opcode;
  frame[1] = 0x80 | (length < 126 ? length : length < 65536 ? 126 : 127);
  const view = new DataView(frame.buffer);
  if (extended === 2) view.setUint16(2, length);
  if (extended === 8) view.setBigUint64(2, BigInt(length));
  const mask = crypto.getRandomValues(new Uint8Array(4));
  frame.set(mask, 2 + extended);
  const offset = 2 + extended + 4;
  for (let i = 0; i < length; i++) frame[offset + i] = payload[i] ^ mask[i & 3];
  return frame;
}

/** Writes all of `data`, in as many write calls as the kernel needs. */
export async function writeAll(conn: Deno.Conn, data: Uint8Array): Promise<void> {
  let written = 0;
  while (written < data.length) written += await conn.write(data.subarray(written));
}
