/**
 * JWT login with `jose`: a shared secret (HS*), a public key (RS*, PS*,
 * ES*, EdDSA) or a remote key set (JWKS). Every verification passes an
 * explicit algorithm allow-list derived from the configured key, so `none`
 * and HS/RS confusion cannot pass.
 *
 * @module
 */
import { createPublicKey } from "node:crypto";
import * as jose from "jose";

/** Where the verification keys come from. */
export type JwtKeySource =
  | { kind: "secret"; secret: string }
  | { kind: "publicKey"; pem: string }
  | { kind: "jwks"; url: string };

/** How tokens are checked. */
export interface JwtOptions {
  source: JwtKeySource;
  issuer?: string;
  audience?: string;
  /** Seconds of clock difference tolerated for `exp` and `nbf`. */
  clockSkewSeconds: number;
}

/** What a valid token says about its bearer. */
export interface Identity {
  /** From the `name` claim, else `sub`. */
  name: string;
  /** When the token expires, in milliseconds since the epoch. */
  expiresAt: number;
  /** Channel patterns from the `channels` claim; null when the claim is absent. */
  channels: string[] | null;
}

/** The outcome of checking a token: an identity, or why not. */
export type Verified =
  | { ok: true; identity: Identity }
  | { ok: false; code: "unauthorized" | "token_expired"; message: string };

/** Checks tokens; `now` is the injected clock. */
export interface JwtVerifier {
  verify(token: string, now: number): Promise<Verified>;
  /** The algorithms tokens may be signed with. */
  readonly algorithms: readonly string[];
}

const HMAC = ["HS256", "HS384", "HS512"];
const RSA = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"];
const CURVES: Record<string, string> = {
  "prime256v1": "ES256",
  "secp384r1": "ES384",
  "secp521r1": "ES512",
};

/** The algorithms a PEM public key can verify; throws with a readable message on a bad key. */
export function algorithmsForPublicKey(pem: string): string[] {
  let key;
  try {
    key = createPublicKey(pem);
  } catch {
    throw new Error("expected a PEM public key (-----BEGIN PUBLIC KEY-----)");
  }
  switch (key.asymmetricKeyType) {
    case "rsa":
      return RSA;
    case "rsa-pss":
      return RSA.filter((alg) => alg.startsWith("PS"));
    case "ec": {
      const alg = CURVES[key.asymmetricKeyDetails?.namedCurve ?? ""];
      if (alg) return [alg];
      break;
    }
    case "ed25519":
      return ["EdDSA"];
  }
  throw new Error(`unsupported key type "${key.asymmetricKeyType}"`);
}

/** Creates a verifier for `options`. */
export function createJwtVerifier(options: JwtOptions): JwtVerifier {
  const { source } = options;
  let algorithms: string[];
  let getKey: jose.JWTVerifyGetKey | Uint8Array;
  if (source.kind === "secret") {
    algorithms = HMAC;
    getKey = new TextEncoder().encode(source.secret);
  } else if (source.kind === "publicKey") {
    algorithms = algorithmsForPublicKey(source.pem);
    // One imported key per algorithm, on first use: WebCrypto keys are bound to one algorithm.
    const keys = new Map<string, Promise<jose.CryptoKey>>();
    getKey = (header) => {
      const alg = header.alg;
      let key = keys.get(alg);
      if (key === undefined) {
        key = jose.importSPKI(source.pem, alg);
        keys.set(alg, key);
      }
      return key;
    };
  } else {
    algorithms = [...RSA, "ES256", "ES384", "ES512", "EdDSA"];
    getKey = jose.createRemoteJWKSet(new URL(source.url), {
      timeoutDuration: 5000,
      cooldownDuration: 30_000,
    });
  }

  return {
    algorithms,
    async verify(token, now) {
      try {
        const { payload } = await jose.jwtVerify(token, getKey as jose.JWTVerifyGetKey, {
          algorithms,
          issuer: options.issuer,
          audience: options.audience,
          clockTolerance: options.clockSkewSeconds,
          currentDate: new Date(now),
          requiredClaims: ["exp"],
        });
        const badTime = badTimeClaim(payload);
        if (badTime !== null) return badTime;
        const name = typeof payload.name === "string" ? payload.name : payload.sub;
        if (typeof name !== "string" || name === "") {
          return { ok: false, code: "unauthorized", message: "Token has no name or sub claim" };
        }
        const channels = payload.channels;
        if (
          channels !== undefined &&
          !(Array.isArray(channels) && channels.every((c) => typeof c === "string"))
        ) {
          return {
            ok: false,
            code: "unauthorized",
            message: "Token claim channels must be a list of strings",
          };
        }
        return {
          ok: true,
          identity: { name, expiresAt: payload.exp! * 1000, channels: channels ?? null },
        };
      } catch (error) {
        if (error instanceof jose.errors.JWTExpired) {
          return badTimeClaim(error.payload) ??
            { ok: false, code: "token_expired", message: "Token has expired" };
        }
        if (error instanceof jose.errors.JOSEError) {
          return { ok: false, code: "unauthorized", message: `Token refused: ${describe(error)}` };
        }
        // fetch fails with a TypeError when the key set's host cannot be reached.
        if (source.kind === "jwks" && error instanceof TypeError) {
          return { ok: false, code: "unauthorized", message: "Token refused: key set unavailable" };
        }
        throw error;
      }
    },
  };
}

/** The claims that hold a time, in seconds since the epoch. */
const TIME_CLAIMS = ["exp", "nbf", "iat"] as const;

/** The furthest a JavaScript `Date` reaches either side of the epoch, in milliseconds. */
const MAX_DATE_MS = 8.64e15;

/**
 * Refuses a token whose `exp`, `nbf` or `iat` is not a time a `Date` can
 * hold (`1e300`, a huge negative): jose compares them as numbers and lets
 * them pass, and turning one into a date later would throw.
 */
function badTimeClaim(payload: jose.JWTPayload): Verified | null {
  for (const claim of TIME_CLAIMS) {
    const value = payload[claim];
    if (value === undefined) continue;
    if (typeof value !== "number" || !(Math.abs(value * 1000) <= MAX_DATE_MS)) {
      return {
        ok: false,
        code: "unauthorized",
        message: `Token claim "${claim}" is not a valid time`,
      };
    }
  }
  return null;
}

/** A short reason for a refused token, without echoing the token. */
function describe(error: jose.errors.JOSEError): string {
  if (error instanceof jose.errors.JWTClaimValidationFailed) {
    return `claim "${error.claim}" ${error.reason}`;
  }
  if (error instanceof jose.errors.JOSEAlgNotAllowed) return "algorithm not allowed";
  if (error instanceof jose.errors.JWSSignatureVerificationFailed) return "bad signature";
  if (error instanceof jose.errors.JWKSNoMatchingKey) return "no matching key";
  if (error instanceof jose.errors.JWKSTimeout || error.code === "ERR_JWKS_INVALID") {
    return "key set unavailable";
  }
  return "malformed token";
}

/**
 * Turns `channels` claim patterns into a test: `*` matches any run of
 * characters, everything else matches itself.
 */
export function channelMatcher(patterns: string[]): (channel: string) => boolean {
  const regexes = patterns.map((pattern) =>
    new RegExp(
      `^${
        pattern.split("*").map((part) => part.replace(/[.+?^${}()|[\]\\]/g, "\\$&")).join(".*")
      }$`,
    )
  );
  return (channel) => regexes.some((regex) => regex.test(channel));
}
