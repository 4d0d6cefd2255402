/**
 * A WebSocket client for dialect tests: no hello expected, no splitting on
 * newlines (dialect clients get one message per frame), every frame kept
 * as text and as parsed JSON.
 *
 * @module
 */
import { openQueuedSocket } from "../_helpers.ts";

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
  // One message per frame: dialect clients never split on newlines.
  const queue = await openQueuedSocket<string>(url, (data) => [data], options);
  return { ...queue, nextText: queue.next, next: async () => JSON.parse(await queue.next()) };
}
