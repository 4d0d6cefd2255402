/**
 * The server API for backends and dashboards, behind a bearer key:
 * broadcast (one message or a batch), disconnect a user, list channels and
 * their members. Every error is `{"error":{"code","message"}}`.
 *
 * @module
 */
import { z } from "zod";
import type { ChannelSummary } from "../core/channels.ts";
import { json, jsonError, readBody, SHUTDOWN_RETRY_AFTER_SECONDS } from "./http_util.ts";
import { Channel, CHANNEL_PATTERN, Name } from "../core/protocol.ts";

/** Messages one batch may carry. */
export const MAX_BATCH = 100;

/** What the API acts on. */
export interface ApiDeps {
  /** The bearer key; the API answers 404 without one. */
  apiKey: string | null;
  maxBodyBytes: number;
  maxTextLength: number;
  /**
   * Publishes a message (once per `key` from `from` in `channel`, as a
   * `broadcast` does); resolves once it is stored with how many members got
   * it, its id and seq (no seq when it could not be stored; the first's id
   * and seq for a repeated key).
   */
  broadcast(channel: string, from: string, text: string, key?: string): Promise<BroadcastOutcome>;
  /** Disconnects the user holding `name`; false when nobody does. */
  kick(name: string): boolean;
  channels(): ChannelSummary[];
  /** A channel's member names; null when it does not exist. */
  members(channel: string): string[] | null;
  /** Whether the server is shutting down: what changes something is refused with 503 then. */
  shuttingDown(): boolean;
}

/** What became of one message of `POST /api/broadcast`. */
export type BroadcastOutcome = { delivered: number; id: string; seq?: number; duplicate: boolean };

/** Answers a request under `/api/`. */
export type ApiHandler = (request: Request, pathname: string) => Promise<Response>;

/** Creates the API handler. */
export function createApi(deps: ApiDeps): ApiHandler {
  const Message = z.strictObject({
    channel: Channel,
    text: z.string().min(1).max(deps.maxTextLength),
    from: Name.optional(),
    key: z.string().min(1).max(64).optional(),
  });
  const BroadcastBody = z.union([
    Message,
    z.strictObject({ messages: z.array(Message).min(1).max(MAX_BATCH) }),
  ]);
  const DisconnectBody = z.strictObject({ name: z.string().min(1).max(256) });
  const apiKey = deps.apiKey;
  // Hashed on first use, not here: an app stopped before it was ever asked (most tests) would
  // leave the digest still running behind it.
  let keyDigest: Promise<Uint8Array> | undefined;

  /** Parses a JSON body against `schema`, or says why not. */
  const body = async <T>(request: Request, schema: z.ZodType<T>): Promise<T | Response> => {
    const text = await readBody(request, deps.maxBodyBytes);
    if (text === null) return jsonError(413, "too_large", `Body over ${deps.maxBodyBytes} bytes`);
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch {
      return jsonError(400, "bad_json", "Body is not valid JSON");
    }
    const parsed = schema.safeParse(value);
    if (parsed.success) return parsed.data;
    const issue = parsed.error.issues[0];
    return jsonError(400, "bad_request", `${issue.path.join(".") || "body"}: ${issue.message}`);
  };

  /**
   * The answer to a change asked for during shutdown: sockets are closing, so
   * a 202 would acknowledge what nobody receives. The caller retries elsewhere.
   */
  const shuttingDown = () =>
    jsonError(503, "shutting_down", "Server is restarting; retry on another node or later", {
      "retry-after": String(SHUTDOWN_RETRY_AFTER_SECONDS),
    });

  const routes: Record<
    string,
    {
      method: string;
      /** Whether the route changes something (refused during shutdown). */
      changes: boolean;
      handle(request: Request, rest: string): Promise<Response>;
    }
  > = {
    broadcast: {
      method: "POST",
      changes: true,
      async handle(request) {
        const parsed = await body(request, BroadcastBody);
        if (parsed instanceof Response) return parsed;
        // Shutdown may have begun while the body was read.
        if (deps.shuttingDown()) return shuttingDown();
        const messages = "messages" in parsed ? parsed.messages : [parsed];
        const outcomes: BroadcastOutcome[] = [];
        // One after another: a batch keeps its order in each channel.
        for (const { channel, text, from = "server", key } of messages) {
          outcomes.push(await deps.broadcast(channel, from.normalize("NFKC"), text, key));
        }
        const delivered = outcomes.reduce((sum, outcome) => sum + outcome.delivered, 0);
        const stored = outcomes.map(({ id, seq }) => seq === undefined ? { id } : { id, seq });
        if ("messages" in parsed) return json(202, { delivered, messages: stored });
        return json(202, { delivered, ...stored[0] });
      },
    },
    disconnect: {
      method: "POST",
      changes: true,
      async handle(request) {
        const parsed = await body(request, DisconnectBody);
        if (parsed instanceof Response) return parsed;
        if (deps.shuttingDown()) return shuttingDown();
        if (!deps.kick(parsed.name)) {
          return jsonError(404, "not_found", `Nobody is logged in as "${parsed.name}"`);
        }
        return json(200, { disconnected: parsed.name });
      },
    },
    channels: {
      method: "GET",
      changes: false,
      handle(_request, rest) {
        if (rest === "") return Promise.resolve(json(200, { channels: deps.channels() }));
        let name: string;
        try {
          name = decodeURIComponent(rest);
        } catch {
          return Promise.resolve(jsonError(404, "not_found", "No such channel"));
        }
        const members = CHANNEL_PATTERN.test(name) ? deps.members(name) : null;
        if (members === null) {
          return Promise.resolve(jsonError(404, "not_found", `No channel "${name}"`));
        }
        return Promise.resolve(json(200, { name, members }));
      },
    },
  };

  return async (request, pathname) => {
    if (apiKey === null) {
      return jsonError(404, "not_found", "The API is off: set HUBBUB_API_KEY or --api-key");
    }
    // /api/channels/lobby → route "channels", rest "lobby"
    const [, , section = "", ...rest] = pathname.split("/");
    const route = Object.hasOwn(routes, section) ? routes[section] : undefined;
    if (route === undefined || (rest.length > 0 && section !== "channels") || rest.length > 1) {
      return jsonError(404, "not_found", `No API route ${pathname}`);
    }
    if (!(await bearerMatches(request, await (keyDigest ??= digest(apiKey))))) {
      return jsonError(401, "unauthorized", "Missing or wrong bearer key", {
        "www-authenticate": "Bearer",
      });
    }
    if (request.method !== route.method) {
      return jsonError(405, "method_not_allowed", `Use ${route.method}`, { allow: route.method });
    }
    if (route.changes && deps.shuttingDown()) return shuttingDown();
    return await route.handle(request, rest[0] ?? "");
  };
}

async function digest(text: string): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text)));
}

/** Compares the bearer key in constant time: both sides are hashed to equal length first. */
async function bearerMatches(request: Request, expected: Uint8Array): Promise<boolean> {
  const match = /^Bearer\s+(.+)$/i.exec(request.headers.get("authorization") ?? "");
  const actual = await digest(match?.[1] ?? "");
  let difference = match === null ? 1 : 0;
  for (let i = 0; i < expected.length; i++) difference |= expected[i] ^ actual[i];
  return difference === 0;
}
