/**
 * The token verifier and the authorizer webhook the configuration asks for:
 * how `--jwt-*` and `--authorizer-*` become the services the gate and the
 * dialects use.
 *
 * @module
 */
import { createJwtVerifier, type JwtVerifier } from "../auth/jwt.ts";
import { type Authorizer, createAuthorizer } from "../auth/webhook.ts";
import type { Config } from "../config.ts";
import type { Logger } from "../log.ts";

/** The token verifier the configuration asks for, if any. */
export function jwtVerifierFor(config: Config): JwtVerifier | null {
  const options = {
    issuer: config.jwtIssuer ?? undefined,
    audience: config.jwtAudience ?? undefined,
    clockSkewSeconds: config.jwtClockSkew,
  };
  if (config.jwtSecret !== null) {
    return createJwtVerifier({ ...options, source: { kind: "secret", secret: config.jwtSecret } });
  }
  if (config.jwtPublicKey !== null) {
    return createJwtVerifier({
      ...options,
      source: { kind: "publicKey", pem: config.jwtPublicKey },
    });
  }
  if (config.jwksUrl !== null) {
    return createJwtVerifier({ ...options, source: { kind: "jwks", url: config.jwksUrl } });
  }
  return null;
}

/** The authorizer webhook the configuration asks for, if any, logging when it is down or shed. */
export function authorizerFor(config: Config, log: Logger): Authorizer | null {
  return config.authorizerUrl === null ? null : createAuthorizer({
    url: config.authorizerUrl,
    timeoutMs: config.authorizerTimeoutMs,
    maxConcurrent: config.authorizerConcurrency,
    maxQueued: config.authorizerConcurrency * 16,
    // One address never holds every slot, and a flood from it waits behind its own calls.
    maxConcurrentPerKey: Math.ceil(config.authorizerConcurrency / 2),
    maxPerKey: config.authorizerConcurrency,
    onDown: (reason) =>
      log.limited("warn", "authorizer:down", "authorizer down; refusing what needs it", { reason }),
    onShed: (ip) =>
      log.limited("warn", "authorizer:shed", "authorizer calls from one address over its share", {
        ip,
      }),
  });
}
