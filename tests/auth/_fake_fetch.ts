/**
 * A fake `fetch` for the authorizer client (lib/auth/webhook.ts): each call
 * waits until the test releases it, so tests see exactly which calls are out
 * and in what order, as events rather than timing.
 *
 * @module
 */
import { withTimeout } from "../_helpers.ts";

/** One call the fake fetch received, answered when the test releases it. */
export interface FakeCall {
  url: string;
  init: RequestInit;
  /** The request body, parsed as JSON. */
  body: unknown;
  /** Answers the call with `status` (no effect once answered or aborted). */
  release(status: number): void;
}

/** The fake: its `fetch`, the calls it received, and ways to wait for them. */
export interface FakeFetch {
  fetch: typeof globalThis.fetch;
  /** Every call, in the order it went out. */
  calls: FakeCall[];
  /** Calls not answered yet, and the most there ever were at once. */
  counts: { inFlight: number; peak: number };
  /** The bodies sent so far, in the order the calls went out. */
  served(): unknown[];
  /** Resolves once `count` calls have been made. */
  called(count: number): Promise<void>;
}

/** A `fetch` whose calls hang until released (or aborted); counts calls as events. */
export function fakeFetch(): FakeFetch {
  const calls: FakeCall[] = [];
  const waiters: { count: number; resolve: () => void }[] = [];
  const counts = { inFlight: 0, peak: 0 };
  const fetch = ((input: string | URL | Request, init: RequestInit = {}) => {
    const { promise, resolve, reject } = Promise.withResolvers<Response>();
    counts.peak = Math.max(counts.peak, ++counts.inFlight);
    let settled = false;
    const settle = (answer: () => void) => {
      if (settled) return;
      settled = true;
      counts.inFlight--;
      answer();
    };
    init.signal?.addEventListener("abort", () => settle(() => reject(init.signal!.reason)), {
      once: true,
    });
    calls.push({
      url: String(input),
      init,
      body: JSON.parse(String(init.body)),
      release: (status) => settle(() => resolve(new Response(null, { status }))),
    });
    for (const waiter of waiters.filter((w) => calls.length >= w.count)) {
      waiters.splice(waiters.indexOf(waiter), 1);
      waiter.resolve();
    }
    return promise;
  }) as typeof globalThis.fetch;
  return {
    fetch,
    calls,
    counts,
    served: () => calls.map((call) => call.body),
    called(count) {
      if (calls.length >= count) return Promise.resolve();
      const { promise, resolve } = Promise.withResolvers<void>();
      waiters.push({ count, resolve });
      return withTimeout(promise, `${count} fetch calls`);
    },
  };
}
