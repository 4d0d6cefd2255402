/**
 * A WebSocket client for dialect tests: no hello expected, no splitting on
 * newlines (dialect clients get one message per frame), every frame kept
 * as text and as parsed JSON.
 *
 * @module
 */
import { withTimeout } from "../_helpers.ts";

/** A client of a seed server's protocol. */
export interface DialectClient {
  readonly socket: WebSocket;
  /** Sends a JSON value, or a string / bytes as they are. */
  send(frame: unknown): void;
  /** The next frame's text. */
  nextText(): Promise<string>;
  /** The next frame, parsed as JSON. */
  // deno-lint-ignore no-explicit-any
  next(): Promise<any>;
  /** Frames received and not read yet. */
  readonly buffered: string[];
  /** Resolves with the close code and reason. */
  readonly closed: Promise<{ code: number; reason: string }>;
  /** Closes (if open) and waits for the close to finish. */
  close(): Promise<void>;
}

/** Opens a dialect client at `url`, with an `Origin` header when given. */
export async function openDialectClient(
  url: string,
  options: { origin?: string } = {},
): Promise<DialectClient> {
  const socket = options.origin === undefined
    ? new WebSocket(url)
    : new WebSocket(url, { headers: { origin: options.origin } } as unknown as string[]);
  const buffered: string[] = [];
  const waiters: ((text: string | null) => void)[] = [];
  let isClosed = false;
  const closed = new Promise<{ code: number; reason: string }>((resolve) => {
    socket.onclose = (event) => {
      isClosed = true;
      for (const waiter of waiters.splice(0)) waiter(null);
      resolve({ code: event.code, reason: event.reason });
    };
  });
  socket.onmessage = (event) => {
    const text = typeof event.data === "string" ? event.data : "<binary>";
    const waiter = waiters.shift();
    if (waiter) waiter(text);
    else buffered.push(text);
  };
  await withTimeout(
    new Promise<void>((resolve, reject) => {
      socket.onopen = () => resolve();
      socket.onerror = () => reject(new Error(`WebSocket to ${url} failed`));
    }),
    "the socket to open",
  );
  const nextText = async () => {
    if (buffered.length > 0) return buffered.shift()!;
    if (isClosed) throw new Error("Socket closed while waiting for a frame");
    const { promise, resolve } = Promise.withResolvers<string | null>();
    waiters.push(resolve);
    const text = await withTimeout(promise, "a frame");
    if (text === null) throw new Error("Socket closed while waiting for a frame");
    return text;
  };
  return {
    socket,
    send(frame) {
      socket.send(
        typeof frame === "string" || frame instanceof Uint8Array ? frame : JSON.stringify(frame),
      );
    },
    nextText,
    next: async () => JSON.parse(await nextText()),
    buffered,
    closed,
    async close() {
      if (socket.readyState === WebSocket.OPEN) socket.close(1000);
      await closed;
    },
  };
}
