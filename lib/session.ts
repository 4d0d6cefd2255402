/**
 * One connection's state as the core sees it: who it is logged in as and
 * which channels it is in.
 *
 * @module
 */
import type { SessionId } from "./registry.ts";

/** One connection's chat state. */
export interface Session {
  readonly id: SessionId;
  /** The name it is logged in under, or null before login and after logout. */
  name: string | null;
  /** The channels it has joined, in join order. */
  readonly channels: Set<string>;
}

/** Creates the state of a new, anonymous connection. */
export function createSession(id: SessionId): Session {
  return { id, name: null, channels: new Set() };
}
