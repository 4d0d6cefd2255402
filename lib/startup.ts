/**
 * What the server says when it starts: the summary line's fields (what is
 * on, never a secret) and the one line that ends a start whose listener
 * cannot bind.
 *
 * @module
 */
import { chosenEngine, type Config, type EngineChoice } from "./config.ts";
import type { LogFields } from "./log.ts";
import type { ListenError } from "./runtime/types.ts";

/** How the configuration checks login tokens. */
export function authMode(config: Config): "none" | "jwt-secret" | "jwt-public-key" | "jwks" {
  if (config.jwtSecret !== null) return "jwt-secret";
  if (config.jwtPublicKey !== null) return "jwt-public-key";
  if (config.jwksUrl !== null) return "jwks";
  return "none";
}

/**
 * The start-up summary's fields: what is switched on, with no key, secret or
 * password; `engine` is the one `--engine` resolved to (off Deno Deploy by default).
 */
export function startupFields(
  config: Config,
  engine: Exclude<EngineChoice, "auto"> = chosenEngine(config, false),
): LogFields {
  return {
    auth: authMode(config),
    // GarinChat's own secret, only where a GarinChat listener could use it.
    garinchat_auth: config.dialects.has("garinchat")
      ? config.garinchatJwtSecret === null ? authMode(config) : "jwt-secret"
      : undefined,
    authorizer: config.authorizerUrl === null ? "off" : "on",
    api: config.apiKey === null ? "off" : "on",
    origins: config.allowedOrigins === null
      ? "same-origin"
      : config.allowedOrigins.includes("*")
      ? "any"
      : config.allowedOrigins.join(","),
    engine,
    redis: engine !== "redis" || config.redisUrl === null
      ? undefined
      : withoutCredentials(config.redisUrl),
    log_level: config.logLevel,
  };
}

/** `redis://user:password@host:6379/2` → `redis://host:6379/2`. */
export function withoutCredentials(url: string): string {
  try {
    const parsed = new URL(url);
    return `${parsed.protocol}//${parsed.host}${parsed.pathname === "/" ? "" : parsed.pathname}`;
  } catch {
    return "(unparsable URL)";
  }
}

/** Where a listener was asked to bind, and by which option. */
export interface ListenTarget {
  hostname: string;
  port: number;
  /** The option that asked for it, e.g. `--port` or `--dialect wschat=8080`. */
  option: string;
}

/** The one line that says why a listener could not start, naming the option and the port. */
export function listenFailure(error: ListenError, target: ListenTarget): string {
  const { hostname, port, option } = target;
  switch (error.listenError) {
    case "in_use":
      return `Port ${port} (${option}) is already in use on ${hostname}: stop what holds it or choose another port`;
    case "denied":
      return `Not allowed to listen on port ${port} (${option}): ports below 1024 need privileges`;
    case "unavailable":
      return `Cannot listen on ${hostname} (--hostname): no such address on this machine`;
    case "other":
      return `Cannot listen on ${hostname} port ${port} (${option}, --hostname): ${error.detail}`;
  }
}
