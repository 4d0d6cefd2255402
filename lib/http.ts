/**
 * Plain HTTP: the embedded client, the health check, metrics, the API
 * (lib/api.ts) and the checks an upgrade request must pass. Request in, Response (or "go
 * ahead and upgrade") out; runtime adapters do the upgrade itself.
 *
 * @module
 */
import type { Refusal } from "./admission.ts";
import type { ApiHandler } from "./api.ts";
import type { Asset } from "./assets.ts";
import type { Config } from "./config.ts";
import type { Decision } from "./auth/webhook.ts";
import { json, jsonError } from "./http_util.ts";

/** Returned instead of a Response when the request may become a WebSocket. */
export interface Upgrade {
  readonly upgrade: true;
  /** The client address the connection is accounted to. */
  readonly ip: string;
}

/** What the adapter knows of the connection a request came on. */
export interface RequestInfo {
  /** The peer address of the TCP connection. */
  ip: string;
}

/** What the HTTP layer needs from the rest of the server. */
export interface HttpDeps {
  config: Config;
  assets: ReadonlyMap<string, Asset>;
  /** Whether `ip` may open another WebSocket now; reserves the connection when it may. */
  admit(ip: string): Refusal | null;
  /** Gives back a connection `admit` reserved for an upgrade that will not happen. */
  release(ip: string): void;
  /** Asks the authorizer webhook about an upgrade; absent when there is none. */
  authorizeUpgrade?(request: Request): Promise<Decision>;
  /** Answers `/api/…`. */
  api: ApiHandler;
  /** The Prometheus text for /metrics. */
  metricsText(): string;
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

  return async (request, info) => {
    const { pathname } = new URL(request.url);

    if (pathname === "/ws") {
      if (request.headers.get("upgrade")?.toLowerCase() !== "websocket") {
        return jsonError(426, "upgrade_required", "Connect with a WebSocket", {
          upgrade: "websocket",
        });
      }
      const origin = request.headers.get("origin");
      // Browsers always send Origin; other clients may not, and cannot be hijacked by a page.
      if (
        config.allowedOrigins !== null && origin !== null && !config.allowedOrigins.includes(origin)
      ) {
        return jsonError(403, "forbidden_origin", `Origin "${origin}" is not allowed`);
      }
      const ip = config.trustProxy ? forwardedFor(request) ?? info.ip : info.ip;
      const refusal = deps.admit(ip);
      if (refusal !== null) {
        return jsonError(refusal.status, refusal.reason, refusal.message, {
          "retry-after": String(refusal.retryAfterSeconds),
        });
      }
      const decision = await deps.authorizeUpgrade?.(request) ?? "allow";
      if (decision !== "allow") deps.release(ip);
      if (decision === "down") {
        return jsonError(503, "authorizer_down", "The authorizer is unavailable", {
          "retry-after": "5",
        });
      }
      if (decision === "deny") {
        return jsonError(403, "forbidden", "The authorizer refused this connection");
      }
      return { upgrade: true, ip };
    }

    if (pathname === "/healthz") return json(200, { status: "ok" });

    if (pathname === "/metrics") {
      return new Response(deps.metricsText(), {
        headers: { "content-type": "text/plain; version=0.0.4; charset=utf-8" },
      });
    }

    if (pathname === "/api" || pathname.startsWith("/api/")) {
      return await deps.api(request, pathname);
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

/** The last X-Forwarded-For entry: the address our own proxy saw. */
function forwardedFor(request: Request): string | null {
  const header = request.headers.get("x-forwarded-for");
  if (header === null) return null;
  const last = header.split(",").at(-1)?.trim();
  return last ? last : null;
}
