/**
 * Plain HTTP: the embedded client, the health check, metrics, the API
 * (lib/http/api.ts) and the checks an upgrade request must pass. Request in, Response (or "go
 * ahead and upgrade") out; runtime adapters do the upgrade itself.
 *
 * @module
 */
import type { Refusal } from "./admission.ts";
import type { ApiHandler } from "./api.ts";
import type { Asset } from "./assets.ts";
import type { Decision } from "../auth/webhook.ts";
import { json, jsonError } from "./http_util.ts";
import type { Logger } from "../log.ts";

/** Returned instead of a Response when the request may become a WebSocket. */
export interface Upgrade {
  readonly upgrade: true;
  /** The client address the connection is accounted to. */
  readonly ip: string;
  /** The dialect the socket speaks; undefined: the native protocol. */
  readonly dialect?: string;
  /** The request path as the dialect sees it (without a `/compat/NAME` prefix). */
  readonly path: string;
  /** The query string with its `?`, or "". */
  readonly search: string;
  /** The subprotocol to answer the handshake with; undefined: hubbub chooses none. */
  readonly protocol?: string;
}

/** What the adapter knows of the connection a request came on. */
export interface RequestInfo {
  /** The peer address of the TCP connection. */
  ip: string;
  /** The dialect whose own listener (`--dialect NAME=PORT`) took the request; undefined: the main one. */
  listener?: string;
}

/** The settings the HTTP layer reads: a slice of the server's configuration. */
export interface HttpConfig {
  /** Origins allowed to open a WebSocket; `["*"]` allows any; null only the server's own. */
  readonly allowedOrigins: string[] | null;
  /** Take the client address from the last X-Forwarded-For entry. */
  readonly trustProxy: boolean;
}

/** What the HTTP layer knows of a dialect: where its sockets connect and how they shake hands. */
export interface HttpDialect {
  /** Which paths of its own listener are WebSocket endpoints; null: any path. */
  readonly path: string | null;
  /** Whether the handshake answers with the first subprotocol the client offers. */
  readonly echoesSubprotocol?: boolean;
}

/** What the HTTP layer needs from the rest of the server. */
export interface HttpDeps {
  config: HttpConfig;
  assets: ReadonlyMap<string, Asset>;
  /** Whether `ip` may open another WebSocket now; reserves the connection when it may. */
  admit(ip: string): Refusal | null;
  /** Gives back a connection `admit` reserved for an upgrade that will not happen. */
  release(ip: string): void;
  /**
   * Asks the authorizer webhook about an upgrade from `ip` to `dialect` (undefined: the native
   * protocol) at `path` (after any `/compat/NAME` prefix); absent when there is none.
   */
  authorizeUpgrade?(
    request: Request,
    ip: string,
    dialect: string | undefined,
    path: string,
  ): Promise<Decision>;
  /** Answers `/api/…`. */
  api: ApiHandler;
  /** The dialects sockets may speak, by name. */
  dialects: ReadonlyMap<string, HttpDialect>;
  /** A dialect's plain HTTP routes; null: not one of them. */
  dialectHttp(name: string, request: Request, path: string): Promise<Response | null>;
  /** The Prometheus text for /metrics. */
  metricsText(): string;
  /** The names of the readiness checks failing now (e.g. "shutdown", "cluster"); empty: ready. */
  notReady(): string[];
  /** Where refused upgrades and wrong API keys are logged (rate-limited). */
  log: Logger;
}

/** Answers one HTTP request, or says it may be upgraded. */
export type HttpHandler = (request: Request, info: RequestInfo) => Promise<Response | Upgrade>;

const SECURITY_HEADERS = {
  "content-security-policy":
    "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; frame-ancestors 'none'",
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
};

/** Creates the HTTP handler. */
export function createHttpHandler(deps: HttpDeps): HttpHandler {
  const { config } = deps;

  /** The checks every upgrade passes, whatever it speaks: origin, admission, authorizer. */
  const upgrade = async (
    request: Request,
    info: RequestInfo,
    dialect: string | undefined,
    url: URL,
    path: string,
  ): Promise<Response | Upgrade> => {
    const origin = request.headers.get("origin");
    const ip = clientIp(config, request, info);
    /** Logs a refused upgrade: at most one line per reason per window, with a count of the rest. */
    const refused = (status: number, reason: string) =>
      deps.log.limited(
        reason === "shutting_down" ? "info" : "warn",
        `upgrade:${reason}`,
        "upgrade refused",
        { status, reason, ip, dialect, origin: origin?.slice(0, 200) ?? undefined },
      );
    // Browsers always send Origin; other clients may not, and cannot be hijacked by a page.
    if (origin !== null && !originAllowed(config, request, origin)) {
      refused(403, "forbidden_origin");
      return jsonError(
        403,
        "forbidden_origin",
        config.allowedOrigins === null
          ? `Origin "${origin}" is not this server's own; --allowed-origins can list it`
          : `Origin "${origin}" is not allowed`,
      );
    }
    const refusal = deps.admit(ip);
    if (refusal !== null) {
      refused(refusal.status, refusal.reason);
      return jsonError(refusal.status, refusal.reason, refusal.message, {
        "retry-after": String(refusal.retryAfterSeconds),
      });
    }
    const decision = await deps.authorizeUpgrade?.(request, ip, dialect, path) ?? "allow";
    if (decision !== "allow") deps.release(ip);
    if (decision !== "allow") refused(decision === "down" ? 503 : 403, `authorizer_${decision}`);
    if (decision === "down") {
      return jsonError(503, "authorizer_down", "The authorizer is unavailable", {
        "retry-after": "5",
      });
    }
    if (decision === "deny") {
      return jsonError(403, "forbidden", "The authorizer refused this connection");
    }
    const answer: Upgrade = { upgrade: true, ip, dialect, path, search: url.search };
    // Only dialects whose originals echoed a subprotocol choose one; the rest keep choosing none.
    const protocol = dialect !== undefined && deps.dialects.get(dialect)?.echoesSubprotocol
      ? firstSubprotocol(request)
      : undefined;
    return protocol === undefined ? answer : { ...answer, protocol };
  };

  /** A dialect's own listener: its WebSocket path (or any path), and its HTTP routes. */
  const dialectListener = async (request: Request, info: RequestInfo, name: string, url: URL) => {
    const dialect = deps.dialects.get(name)!;
    const isEndpoint = dialect.path === null || url.pathname === dialect.path;
    if (isEndpoint && isUpgrade(request)) {
      return await upgrade(request, info, name, url, url.pathname);
    }
    const answer = await deps.dialectHttp(name, request, url.pathname);
    if (answer !== null) return answer;
    if (isEndpoint) return new Response("Bad Request: connect with a WebSocket", { status: 400 });
    return new Response("Not Found", { status: 404 });
  };

  return async (request, info) => {
    const url = new URL(request.url);
    const { pathname } = url;
    if (info.listener !== undefined) {
      return await dialectListener(request, info, info.listener, url);
    }

    if (pathname === "/ws") {
      if (!isUpgrade(request)) {
        return jsonError(426, "upgrade_required", "Connect with a WebSocket", {
          upgrade: "websocket",
        });
      }
      return await upgrade(request, info, undefined, url, pathname);
    }

    // /compat/NAME/… serves a dialect on the main port, the rest of the path being its own.
    const compat = /^\/compat\/([a-z0-9-]+)(\/.*)?$/.exec(pathname);
    if (compat !== null && deps.dialects.has(compat[1])) {
      const [, name, path = "/"] = compat;
      if (isUpgrade(request)) return await upgrade(request, info, name, url, path);
      return await deps.dialectHttp(name, request, path) ??
        jsonError(426, "upgrade_required", "Connect with a WebSocket", { upgrade: "websocket" });
    }

    // Liveness: the process serves. Readiness: it should be sent traffic.
    if (pathname === "/healthz") return json(200, { status: "ok" });
    if (pathname === "/readyz") {
      const failed = deps.notReady();
      return failed.length === 0
        ? json(200, { status: "ready" })
        : json(503, { status: "not_ready", failed });
    }

    if (pathname === "/metrics") {
      return new Response(deps.metricsText(), {
        headers: { "content-type": "text/plain; version=0.0.4; charset=utf-8" },
      });
    }

    if (pathname === "/api" || pathname.startsWith("/api/")) {
      const answer = await deps.api(request, pathname);
      if (answer.status === 401) {
        deps.log.limited("warn", "api:unauthorized", "API request refused: wrong or missing key", {
          status: 401,
          ip: clientIp(config, request, info),
          path: pathname.slice(0, 200),
        });
      }
      return answer;
    }

    const asset = deps.assets.get(pathname);
    if (asset !== undefined && (request.method === "GET" || request.method === "HEAD")) {
      return new Response(request.method === "HEAD" ? null : asset.body, {
        headers: {
          "content-type": asset.contentType,
          "cache-control": "no-cache",
          ...SECURITY_HEADERS,
        },
      });
    }
    return jsonError(404, "not_found", `No route for ${request.method} ${pathname}`);
  };
}

function isUpgrade(request: Request): boolean {
  return request.headers.get("upgrade")?.toLowerCase() === "websocket";
}

/**
 * The first subprotocol a client offers: `Sec-WebSocket-Protocol` split on
 * commas (with or without spaces, as browsers and Node's `ws` send them).
 */
function firstSubprotocol(request: Request): string | undefined {
  const first = request.headers.get("sec-websocket-protocol")?.split(",")[0].trim();
  return first ? first : undefined;
}

/**
 * Whether a page from `origin` may open a WebSocket: one `--allowed-origins`
 * lists (any with `*`), or by default one of the server's own host and port,
 * as the request's `Host` names them (with --trust-proxy, the
 * `X-Forwarded-Host` our proxy set, when it sets one). A foreign page
 * would otherwise connect as its visitor, cookies included.
 */
function originAllowed(config: HttpConfig, request: Request, origin: string): boolean {
  const allowed = config.allowedOrigins;
  if (allowed !== null) return allowed.includes("*") || allowed.includes(origin);
  const forwarded = config.trustProxy ? lastEntry(request.headers.get("x-forwarded-host")) : null;
  const host = forwarded ?? request.headers.get("host");
  return host !== null && isOwnHost(origin, host);
}

/**
 * Whether `origin` has the host and port `host` (a `Host` header) names; a
 * port left out is the default one of the origin's scheme, on both sides.
 */
function isOwnHost(origin: string, host: string): boolean {
  const page = URL.parse(origin);
  if (page === null || (page.protocol !== "http:" && page.protocol !== "https:")) return false;
  const served = URL.parse(`${page.protocol}//${host}`);
  // A header with more than a host and port (a path, user info) is not one.
  if (served === null || `${page.protocol}//${served.host}/` !== served.href) return false;
  return served.host === page.host;
}

/** The last entry of a comma-separated header: the one our own proxy wrote. */
function lastEntry(header: string | null): string | null {
  const last = header?.split(",").at(-1)?.trim();
  return last ? last : null;
}

/** The client's address: the peer's, or with --trust-proxy the one our proxy saw. */
function clientIp(config: HttpConfig, request: Request, info: RequestInfo): string {
  return config.trustProxy ? forwardedFor(request) ?? info.ip : info.ip;
}

/** The last X-Forwarded-For entry: the address our own proxy saw. */
function forwardedFor(request: Request): string | null {
  const header = request.headers.get("x-forwarded-for");
  if (header === null) return null;
  const last = header.split(",").at(-1)?.trim();
  return last ? last : null;
}
