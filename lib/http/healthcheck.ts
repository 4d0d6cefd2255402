/**
 * `hubbub --healthcheck`: asks the server the configuration describes for
 * `GET /readyz`, so that a container health check needs no curl (the
 * distroless image has none).
 *
 * @example
 * ```ts
 * import { probeReadiness } from "./healthcheck.ts";
 * const { ok, line } = await probeReadiness({ hostname: "0.0.0.0", port: 8000 });
 * console.log(ok ? 0 : 1, line);
 * ```
 *
 * @module
 */

/** How long the probe waits for the whole answer. */
export const HEALTHCHECK_TIMEOUT_MS = 3000;

/** The outcome of one probe: whether the server is ready, and one line saying so. */
export interface ProbeResult {
  ok: boolean;
  line: string;
}

/** Where the server listens, as the configuration says. */
export interface ProbeTarget {
  hostname: string;
  port: number;
}

/** The `/readyz` URL of a server bound to `target`: loopback when it listens on every address. */
export function readyzUrl(target: ProbeTarget): string {
  const { hostname, port } = target;
  const host = hostname === "0.0.0.0"
    ? "127.0.0.1"
    : hostname === "::"
    ? "[::1]"
    : hostname.includes(":") && !hostname.startsWith("[")
    ? `[${hostname}]`
    : hostname;
  return `http://${host}:${port}/readyz`;
}

/** Asks `GET /readyz` of the server bound to `target`; ok only on a 200 within `timeoutMs`. */
export async function probeReadiness(
  target: ProbeTarget,
  timeoutMs = HEALTHCHECK_TIMEOUT_MS,
): Promise<ProbeResult> {
  if (target.port === 0) {
    return { ok: false, line: "not ready: port 0 names no server; give --port" };
  }
  const url = readyzUrl(target);
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), timeoutMs);
  try {
    const response = await fetch(url, { signal: abort.signal });
    // The body says which check failed; bounded, as it goes on one line.
    const body = (await response.text()).replaceAll(/\s+/g, " ").trim().slice(0, 200);
    if (response.status === 200) return { ok: true, line: `ready: ${url} answered 200` };
    return { ok: false, line: `not ready: ${url} answered ${response.status} ${body}`.trim() };
  } catch (error) {
    if (abort.signal.aborted) {
      return { ok: false, line: `not ready: ${url} did not answer within ${timeoutMs} ms` };
    }
    // Bun names the reason in `code` (ECONNREFUSED); Deno's message is "fetch failed", its
    // cause a long chain that ends in the reason.
    const err = error as Error & { code?: unknown };
    const detail = typeof err.code === "string"
      ? err.code
      : (err.cause instanceof Error ? err.cause.message : err.message).split(": ").at(-1);
    return { ok: false, line: `not ready: ${url} unreachable (${detail})` };
  } finally {
    clearTimeout(timer);
  }
}
