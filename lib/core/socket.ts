/**
 * The one thing the core knows of a connection: a place to send text and a
 * way to close it. Runtime adapters implement it over real sockets; tests
 * implement it over arrays.
 *
 * @module
 */

/** A connection as the core sees it. */
export interface Socket {
  /** Sends one text frame; must not throw once the socket is closing. */
  send(text: string): void;
  /** Closes with a code and a reason of at most 123 bytes. */
  close(code: number, reason: string): void;
  /**
   * Bytes queued for sending but not yet written to the network. It grows only by what `send`
   * queues (the hub counts on it to skip most of these reads).
   */
  readonly bufferedAmount: number;
}

/** What an adapter hands the core for each inbound WebSocket frame. */
export type InboundFrame = string | { binary: true; bytes: Uint8Array };

/** A socket of a runtime with native publish/subscribe (Bun's uWebSockets topics). */
export interface TopicSocket extends Socket {
  subscribe(topic: string): void;
  unsubscribe(topic: string): void;
  /** Sends to every subscriber of `topic` but this socket. */
  publish(topic: string, text: string): void;
}
