/**
 * One connection's state as the core sees it: who it is logged in as,
 * which channels it is in, and what its rate limit has left.
 *
 * @module
 */
import type { SessionId } from "./registry.ts";
import type { InboundFrame } from "./socket.ts";
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
  /** Logins refused in a row. */
  failedLogins: number;
  /** When its login token expires (ms since the epoch); null without a token. */
  tokenExpiresAt: number | null;
  /** Which channels its token allows; null: all. */
  channelFilter: ((channel: string) => boolean) | null;
  /**
   * Inbound frames waiting while an earlier one awaits a token check or the authorizer, each
   * with when it arrived: rates and deadlines are judged by arrival, not by the wait.
   */
  readonly backlog: { frame: InboundFrame; at: number }[];
  /** Whether a frame of this session is being checked asynchronously. */
  busy: boolean;
  /** The wire protocol it speaks: "native", or a dialect's name. */
  readonly dialect: string;
}

/** Creates the state of a new, anonymous connection. */
export function createSession(
  id: SessionId,
  ip: string,
  bucket: TokenBucket,
  dialect = "native",
): Session {
  return {
    id,
    ip,
    name: null,
    channels: new Set(),
    bucket,
    strikes: 0,
    failedLogins: 0,
    tokenExpiresAt: null,
    channelFilter: null,
    backlog: [],
    busy: false,
    dialect,
  };
}
