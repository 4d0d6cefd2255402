/**
 * Plain HTTP: the embedded client, the health check, the broadcast API and
 * the checks an upgrade request must pass. Request in, Response (or "go
 * ahead and upgrade") out; runtime adapters do the upgrade itself.
 *
 * @module
 */
import { z } from "zod";
import type { Asset } from "./assets.ts";
import type { Refusal } from "./admission.ts";
import type { Config } from "./config.ts";
import { Channel, Name } from "./protocol.ts";

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
  /** Whether `ip` may open another WebSocket now. */
  admit(ip: string): Refusal | null;
  /** Publishes a message as the API's caller asked; returns how many members got it. */
  broadcast(channel: string, from: string, text: string): number;
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
  const BroadcastBody = z.strictObject({
    channel: Channel,
    text: z.string().min(1).max(config.maxTextLength),
    from: Name.optional(),
  });
  const apiKeyDigest = config.apiKey === null ? null : digest(config.apiKey);

  return async (request, info) => {
    const { pathname } = new URL(request.url);

    if (pathname === "/ws") {
      if (request.headers.get("upgrade")?.toLowerCase() !== "websocket") {
        return apiError(426, "upgrade_required", "Connect with a WebSocket", {
          upgrade: "websocket",
        });
      }
      const origin = request.headers.get("origin");
      // Browsers always send Origin; other clients may not, and cannot be hijacked by a page.
      if (
        config.allowedOrigins !== null && origin !== null && !config.allowedOrigins.includes(origin)
      ) {
        return apiError(403, "forbidden_origin", `Origin "${origin}" is not allowed`);
      }
      const ip = config.trustProxy ? forwardedFor(request) ?? info.ip : info.ip;
      const refusal = deps.admit(ip);
      if (refusal !== null) {
        return apiError(refusal.status, refusal.reason, refusal.message, {
          "retry-after": String(refusal.retryAfterSeconds),
        });
      }
      return { upgrade: true, ip };
    }

    if (pathname === "/healthz") return json(200, { status: "ok" });

    if (pathname === "/metrics") {
      return new Response(deps.metricsText(), {
        headers: { "content-type": "text/plain; version=0.0.4; charset=utf-8" },
      });
    }

    if (pathname === "/api/broadcast") {
      if (apiKeyDigest === null) return apiError(404, "not_found", "The API is off: set API_KEY");
      if (request.method !== "POST") {
        return apiError(405, "method_not_allowed", "Use POST", { allow: "POST" });
      }
      if (!(await bearerMatches(request, await apiKeyDigest))) {
        return apiError(401, "unauthorized", "Missing or wrong bearer key", {
          "www-authenticate": "Bearer",
        });
      }
      const text = await readBody(request, config.maxMessageBytes);
      if (text === null) {
        return apiError(413, "too_large", `Body over ${config.maxMessageBytes} bytes`);
      }
      let body: unknown;
      try {
        body = JSON.parse(text);
      } catch {
        return apiError(400, "bad_json", "Body is not valid JSON");
      }
      const parsed = BroadcastBody.safeParse(body);
      if (!parsed.success) {
        const issue = parsed.error.issues[0];
        return apiError(400, "bad_request", `${issue.path.join(".") || "body"}: ${issue.message}`);
      }
      const { channel, text: message, from = "server" } = parsed.data;
      return json(202, { delivered: deps.broadcast(channel, from.normalize("NFKC"), message) });
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
    return apiError(404, "not_found", `No route for ${request.method} ${pathname}`);
  };
}

/** The last X-Forwarded-For entry: the address our own proxy saw. */
function forwardedFor(request: Request): string | null {
  const header = request.headers.get("x-forwarded-for");
  if (header === null) return null;
  const last = header.split(",").at(-1)?.trim();
  return last ? last : null;
}

function json(status: number, body: unknown, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "content-type": "application/json", ...headers },
  });
}

function apiError(
  status: number,
  code: string,
  message: string,
  headers: Record<string, string> = {},
): Response {
  return json(status, { error: { code, message } }, headers);
}

async function digest(text: string): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text)));
}

/** Compares the bearer key in constant time: both sides are hashed to equal length first. */
async function bearerMatches(request: Request, expected: Uint8Array): Promise<boolean> {
  const header = request.headers.get("authorization") ?? "";
  const match = /^Bearer\s+(.+)$/i.exec(header);
  const actual = await digest(match?.[1] ?? "");
  let difference = match === null ? 1 : 0;
  for (let i = 0; i < expected.length; i++) difference |= expected[i] ^ actual[i];
  return difference === 0;
}

/** Reads a text body of at most `limit` bytes; null when it is longer. */
async function readBody(request: Request, limit: number): Promise<string | null> {
  const declared = Number(request.headers.get("content-length") ?? "0");
  if (declared > limit) return null;
  if (request.body === null) return "";
  const chunks: Uint8Array[] = [];
  let size = 0;
  const reader = request.body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > limit) {
      await reader.cancel();
      return null;
    }
    chunks.push(value);
  }
  const bytes = new Uint8Array(size);
  let offset = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return new TextDecoder().decode(bytes);
}
