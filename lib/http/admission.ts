/**
 * Who may open a new WebSocket: caps on connections in total and per IP,
 * and a per-IP rate of new connections, checked before the upgrade so a
 * refused client costs one HTTP response.
 *
 * @module
 */
import { createBucket, isFull, type Rate, take, type TokenBucket } from "../core/token_bucket.ts";

/** The limits admission enforces. */
export interface AdmissionLimits {
  maxConnections: number;
  maxConnectionsPerIp: number;
  connectRate: Rate;
}

/** Why an upgrade was refused, as the HTTP answer says it. */
export interface Refusal {
  status: 429 | 503;
  reason: "server_full" | "ip_full" | "connect_rate" | "shutting_down";
  message: string;
  retryAfterSeconds: number;
}

interface PerIp {
  connections: number;
  bucket: TokenBucket;
}

/** Connection accounting by IP. */
export interface Admission {
  /**
   * Decides on an upgrade from `ip`. When allowed, takes a token from its
   * connect rate and reserves a connection at once, so upgrades in flight
   * count against the caps; `closed` gives the reservation back.
   */
  admit(ip: string, now: number): Refusal | null;
  /** Gives back a connection: closed, or reserved but never opened. */
  closed(ip: string): void;
  /** Forgets IPs with no connection and a full bucket, so the map stays small. */
  sweep(now: number): void;
  /** Refuses every upgrade from now on. */
  drain(): void;
  readonly total: number;
}

/** Creates the admission policy for `limits`. */
export function createAdmission(limits: AdmissionLimits): Admission {
  const ips = new Map<string, PerIp>();
  let total = 0;
  let draining = false;
  const entry = (ip: string, now: number) => {
    let found = ips.get(ip);
    if (found === undefined) {
      found = { connections: 0, bucket: createBucket(limits.connectRate, now) };
      ips.set(ip, found);
    }
    return found;
  };
  return {
    admit(ip, now) {
      if (draining) {
        return {
          status: 503,
          reason: "shutting_down",
          message: "Server is restarting",
          retryAfterSeconds: 1,
        };
      }
      if (total >= limits.maxConnections) {
        return {
          status: 503,
          reason: "server_full",
          message: `Server is at its limit of ${limits.maxConnections} connections`,
          retryAfterSeconds: 5,
        };
      }
      const perIp = entry(ip, now);
      if (perIp.connections >= limits.maxConnectionsPerIp) {
        return {
          status: 429,
          reason: "ip_full",
          message: `Limit of ${limits.maxConnectionsPerIp} connections from one address reached`,
          retryAfterSeconds: 5,
        };
      }
      if (!take(perIp.bucket, limits.connectRate, now)) {
        return {
          status: 429,
          reason: "connect_rate",
          message: `Over ${limits.connectRate.perSecond} new connections a second from one address`,
          retryAfterSeconds: 1,
        };
      }
      total++;
      perIp.connections++;
      return null;
    },
    closed(ip) {
      total--;
      const perIp = ips.get(ip);
      if (perIp) perIp.connections--;
    },
    sweep(now) {
      for (const [ip, perIp] of ips) {
        if (perIp.connections <= 0 && isFull(perIp.bucket, limits.connectRate, now)) ips.delete(ip);
      }
    },
    drain() {
      draining = true;
    },
    get total() {
      return total;
    },
  };
}
