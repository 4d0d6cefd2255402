/**
 * Token buckets for rate limits: `rate` tokens a second, holding at most
 * `burst`. Pure functions over a small record and a time you pass in.
 *
 * @module
 */

/** A bucket's state. */
export interface TokenBucket {
  tokens: number;
  /** When `tokens` was last brought up to date, in milliseconds. */
  updatedAt: number;
}

/** A rate: tokens per second, and the most a bucket holds. */
export interface Rate {
  perSecond: number;
  burst: number;
}

/** A full bucket. */
export function createBucket(rate: Rate, now: number): TokenBucket {
  return { tokens: rate.burst, updatedAt: now };
}

/** Takes one token; false when the bucket is empty. */
export function take(bucket: TokenBucket, rate: Rate, now: number): boolean {
  refill(bucket, rate, now);
  if (bucket.tokens < 1) return false;
  bucket.tokens -= 1;
  return true;
}

/** Whether the bucket has refilled to `burst`, i.e. its owner has been quiet. */
export function isFull(bucket: TokenBucket, rate: Rate, now: number): boolean {
  refill(bucket, rate, now);
  return bucket.tokens >= rate.burst;
}

function refill(bucket: TokenBucket, rate: Rate, now: number): void {
  const elapsed = Math.max(0, now - bucket.updatedAt);
  bucket.tokens = Math.min(rate.burst, bucket.tokens + (elapsed * rate.perSecond) / 1000);
  bucket.updatedAt = now;
}
