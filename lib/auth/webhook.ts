/**
 * The authorizer webhook: hubbub asks the operator's backend whether a
 * connection or a command is allowed (the wsify model). `200` allows; `5xx`,
 * a timeout or a network error means the authorizer is down; any other
 * status denies. Calls in flight are bounded so a slow backend cannot pile
 * up requests.
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
  /** Calls waiting for a slot; beyond this a call is answered "down" at once. */
  maxQueued: number;
  /** `fetch`, injectable for tests. */
  fetch?: typeof fetch;
  /** Told why each call counted as down ("status 503", "timeout", …); for the log. */
  onDown?(reason: string): void;
}

/** Asks the authorizer. */
export interface Authorizer {
  decide(body: unknown): Promise<Decision>;
}

/** Creates an authorizer client. */
export function createAuthorizer(options: AuthorizerOptions): Authorizer {
  const doFetch = options.fetch ?? fetch;
  let inFlight = 0;
  const waiting: (() => void)[] = [];

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

  return {
    async decide(body) {
      // A finished call hands its slot straight to the next in line, so no
      // newcomer can slip in between and exceed maxConcurrent.
      if (inFlight >= options.maxConcurrent || waiting.length > 0) {
        if (waiting.length >= options.maxQueued) {
          options.onDown?.("too many calls waiting");
          return "down";
        }
        await new Promise<void>((resolve) => waiting.push(resolve));
      } else {
        inFlight++;
      }
      try {
        return await call(body);
      } finally {
        const next = waiting.shift();
        if (next) next();
        else inFlight--;
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
