/**
 * The authorizer webhook: hubbub asks the operator's backend whether a
 * connection or a command is allowed (the wsify model). `200` allows; `5xx`,
 * a timeout or a network error means the authorizer is down; any other
 * status denies. Calls in flight are bounded so a slow backend cannot pile
 * up requests, and the slots are shared fairly between callers (client
 * addresses): a flood from a few addresses waits behind itself, not in front
 * of everyone else.
 *
 * @module
 */

/** The authorizer's answer. */
export type Decision = "allow" | "deny" | "down";

/** How the webhook is called. */
export interface AuthorizerOptions {
  url: string;
  timeoutMs: number;
  /** Calls in flight at once; more wait in line. */
  maxConcurrent: number;
  /** Calls waiting for a slot, all keys together; beyond this a call is answered "down". */
  maxQueued: number;
  /**
   * Calls one key (a client address) may have in flight at once, so that
   * it alone never holds every slot; its next calls wait their turn. All
   * of `maxConcurrent` by default.
   */
  maxConcurrentPerKey?: number;
  /**
   * Calls one key may have in flight and waiting together; beyond this
   * its calls are answered "down", for that key only. Unbounded by default.
   */
  maxPerKey?: number;
  /** `fetch`, injectable for tests. */
  fetch?: typeof fetch;
  /** Told why each call counted as down ("status 503", "timeout", …); for the log. */
  onDown?(reason: string): void;
  /** Told of a key's call answered "down" because that key was over its share; for the log. */
  onShed?(key: string): void;
}

/** Asks the authorizer. */
export interface Authorizer {
  /**
   * Asks about `body` on behalf of `key` (the client's address; calls
   * without one share the key ""). Waiting calls take turns by key: a
   * freed slot goes to the waiting key with the fewest calls in flight
   * (below `maxConcurrentPerKey`), and among those to the one that has
   * waited longest for a turn.
   */
  decide(body: unknown, key?: string): Promise<Decision>;
}

/** One key's calls: how many are in flight, and the waiting ones in arrival order. */
interface KeyCalls {
  inFlight: number;
  /** Each resolves true when its call gets a slot, false when it is dropped ("down"). */
  readonly waiting: ((start: boolean) => void)[];
}

/** Creates an authorizer client. */
export function createAuthorizer(options: AuthorizerOptions): Authorizer {
  const doFetch = options.fetch ?? fetch;
  const maxConcurrentPerKey = options.maxConcurrentPerKey ?? options.maxConcurrent;
  const maxPerKey = options.maxPerKey ?? Infinity;
  /** Keys with calls in flight or waiting. */
  const keys = new Map<string, KeyCalls>();
  /** Keys with waiting calls, in turn order: a key that gets a slot goes to the back. */
  const turns = new Map<string, KeyCalls>();
  let inFlight = 0;
  let waiting = 0;

  const call = async (body: unknown): Promise<Decision> => {
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), options.timeoutMs);
    try {
      const response = await doFetch(options.url, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(body),
        signal: abort.signal,
        // A redirect is an answer, not 200: do not re-post the body elsewhere.
        redirect: "manual",
      });
      await response.body?.cancel();
      if (response.status === 200) return "allow";
      if (response.status < 500) return "deny";
      options.onDown?.(`status ${response.status}`);
      return "down";
    } catch {
      options.onDown?.(abort.signal.aborted ? "timeout" : "unreachable");
      return "down";
    } finally {
      clearTimeout(timer);
    }
  };

  const callsOf = (key: string): KeyCalls => {
    let calls = keys.get(key);
    if (calls === undefined) keys.set(key, calls = { inFlight: 0, waiting: [] });
    return calls;
  };

  /** Forgets a key with nothing in flight or waiting (unless a newer record replaced it). */
  const forget = (key: string, calls: KeyCalls) => {
    if (keys.get(key) === calls && calls.inFlight === 0 && calls.waiting.length === 0) {
      keys.delete(key);
    }
  };

  const total = (calls: KeyCalls) => calls.inFlight + calls.waiting.length;

  /** Hands a freed slot to the next waiting call, by the turn order of `decide`. */
  const handOn = () => {
    let chosen: [string, KeyCalls] | undefined;
    for (const entry of turns) {
      if (entry[1].inFlight >= maxConcurrentPerKey) continue;
      if (chosen === undefined || entry[1].inFlight < chosen[1].inFlight) chosen = entry;
      if (chosen[1].inFlight === 0) break;
    }
    if (chosen === undefined) return;
    const [key, calls] = chosen;
    const start = calls.waiting.shift()!;
    waiting--;
    turns.delete(key);
    if (calls.waiting.length > 0) turns.set(key, calls);
    // Counted before the call resumes, so no newcomer can slip into this slot meanwhile.
    calls.inFlight++;
    inFlight++;
    start(true);
  };

  /**
   * Makes room in a full line for a call of `calls`' key by dropping the
   * newest waiting call of the key that has the most calls, when that key
   * has at least two more: a full line is shared out, not first come first
   * served.
   */
  const makeRoomFor = (calls: KeyCalls): boolean => {
    let largest: [string, KeyCalls] | undefined;
    for (const entry of turns) {
      if (largest === undefined || total(entry[1]) > total(largest[1])) largest = entry;
    }
    if (largest === undefined || total(largest[1]) <= total(calls) + 1) return false;
    const [key, victim] = largest;
    const drop = victim.waiting.pop()!;
    waiting--;
    if (victim.waiting.length === 0) turns.delete(key);
    options.onShed?.(key);
    drop(false);
    return true;
  };

  return {
    async decide(body, key = "") {
      const calls = callsOf(key);
      if (total(calls) >= maxPerKey) {
        options.onShed?.(key);
        forget(key, calls);
        return "down";
      }
      if (inFlight < options.maxConcurrent && calls.inFlight < maxConcurrentPerKey) {
        // A free slot has no waiting call that may take it: a finished call hands its slot on at
        // once, and a key below its own limit has no calls waiting.
        calls.inFlight++;
        inFlight++;
      } else {
        if (waiting >= options.maxQueued && !makeRoomFor(calls)) {
          options.onDown?.("too many calls waiting");
          forget(key, calls);
          return "down";
        }
        const started = await new Promise<boolean>((resolve) => {
          calls.waiting.push(resolve);
          waiting++;
          if (!turns.has(key)) turns.set(key, calls);
        });
        if (!started) {
          forget(key, calls);
          return "down";
        }
      }
      try {
        return await call(body);
      } finally {
        calls.inFlight--;
        inFlight--;
        handOn();
        forget(key, calls);
      }
    },
  };
}

/** Request headers as Go's `http.Header` shows them: canonical names, lists of values. */
export function headerLists(headers: Headers): Record<string, string[]> {
  const lists: Record<string, string[]> = {};
  for (const [name, value] of headers) {
    const canonical = name.replace(
      /(^|-)([a-z])/g,
      (_, dash, letter) => dash + letter.toUpperCase(),
    );
    (lists[canonical] ??= []).push(value);
  }
  return lists;
}

/** Query parameters as lists of values. */
export function queryLists(url: URL): Record<string, string[]> {
  const lists: Record<string, string[]> = {};
  for (const [name, value] of url.searchParams) (lists[name] ??= []).push(value);
  return lists;
}
