/**
 * One connection's state as the core sees it: who it is logged in as,
 * which channels it is in, and what its rate limit has left.
 *
 * @module
 */
import type { SessionId } from "./registry.ts";
import type { TokenBucket } from "./token_bucket.ts";

/** One connection's chat state. */
export interface Session {
  readonly id: SessionId;
  /** The client address, for per-IP accounting. */
  readonly ip: string;
  /** The name it is logged in under, or null before login and after logout. */
  name: string | null;
  /** The channels it has joined, in join order. */
  readonly channels: Set<string>;
  /** Its command rate limit. */
  readonly bucket: TokenBucket;
  /** Commands refused in a row by the rate limit. */
  strikes: number;
}

/** Creates the state of a new, anonymous connection. */
export function createSession(id: SessionId, ip: string, bucket: TokenBucket): Session {
  return { id, ip, name: null, channels: new Set(), bucket, strikes: 0 };
}
