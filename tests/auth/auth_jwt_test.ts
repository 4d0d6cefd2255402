/** Token verification: every accepted and refused case of lib/auth/jwt.ts. */
import assert from "node:assert/strict";
import * as jose from "jose";
import {
  channelMatcher,
  createJwtVerifier,
  type JwtOptions,
  type Verified,
} from "../../lib/auth/jwt.ts";

const NOW = Date.UTC(2026, 10, 23, 12, 0, 0);
const SECRET = "a-test-secret-of-at-least-32-bytes!";
const seconds = (ms: number) => Math.floor(ms / 1000);

/** Signs `claims` (exp one hour after NOW unless given) with `key` and `alg`. */
async function sign(
  claims: jose.JWTPayload,
  key: jose.CryptoKey | Uint8Array,
  alg: string,
  header: Partial<jose.JWTHeaderParameters> = {},
): Promise<string> {
  return await new jose.SignJWT({ exp: seconds(NOW) + 3600, ...claims })
    .setProtectedHeader({ alg, ...header })
    .sign(key);
}

const secretKey = new TextEncoder().encode(SECRET);
const options = (source: JwtOptions["source"], extra: Partial<JwtOptions> = {}): JwtOptions => ({
  source,
  clockSkewSeconds: 30,
  ...extra,
});

function assertRefused(result: Verified, code: "unauthorized" | "token_expired", pattern?: RegExp) {
  assert.equal(result.ok, false, "refused");
  if (result.ok) return;
  assert.equal(result.code, code);
  if (pattern) assert.match(result.message, pattern);
}

Deno.test("jwt: HS256/384/512 tokens signed with the secret are accepted", async () => {
  const verifier = createJwtVerifier(options({ kind: "secret", secret: SECRET }));
  for (const alg of ["HS256", "HS384", "HS512"]) {
    const result = await verifier.verify(await sign({ name: "alice" }, secretKey, alg), NOW);
    assert.deepEqual(result, {
      ok: true,
      identity: { name: "alice", expiresAt: (seconds(NOW) + 3600) * 1000, channels: null },
    }, alg);
  }
});

Deno.test("jwt: public keys verify their own algorithms (RS, PS, ES, EdDSA)", async (t) => {
  for (const alg of ["RS256", "PS256", "ES256", "ES384", "EdDSA"]) {
    await t.step(alg, async () => {
      const { publicKey, privateKey } = await jose.generateKeyPair(alg, { extractable: true });
      const verifier = createJwtVerifier(
        options({ kind: "publicKey", pem: await jose.exportSPKI(publicKey) }),
      );
      const result = await verifier.verify(await sign({ sub: "bob" }, privateKey, alg), NOW);
      assert.ok(result.ok && result.identity.name === "bob", JSON.stringify(result));
    });
  }
});

Deno.test("jwt: a local JWKS server's keys verify tokens; unknown kids and a dead server refuse", async () => {
  const { publicKey, privateKey } = await jose.generateKeyPair("ES256", { extractable: true });
  const jwk = { ...(await jose.exportJWK(publicKey)), kid: "k1", alg: "ES256", use: "sig" };
  let fetched = 0;
  const abort = new AbortController();
  const server = Deno.serve(
    { port: 0, hostname: "127.0.0.1", signal: abort.signal, onListen() {} },
    () => {
      fetched++;
      return Response.json({ keys: [jwk] });
    },
  );
  try {
    const verifier = createJwtVerifier(
      options({ kind: "jwks", url: `http://127.0.0.1:${server.addr.port}/.well-known/jwks.json` }),
    );
    const good = await verifier.verify(
      await sign({ name: "carol" }, privateKey, "ES256", { kid: "k1" }),
      NOW,
    );
    assert.ok(good.ok && good.identity.name === "carol");
    const again = await verifier.verify(
      await sign({ name: "dave" }, privateKey, "ES256", { kid: "k1" }),
      NOW,
    );
    assert.ok(again.ok);
    assert.equal(fetched, 1, "the key set is cached");
    const other = await jose.generateKeyPair("ES256");
    assertRefused(
      await verifier.verify(
        await sign({ name: "eve" }, other.privateKey, "ES256", { kid: "k1" }),
        NOW,
      ),
      "unauthorized",
      /bad signature/,
    );
  } finally {
    abort.abort();
    await server.finished;
  }
  const dead = createJwtVerifier(
    options({ kind: "jwks", url: `http://127.0.0.1:${server.addr.port}/jwks` }),
  );
  assertRefused(
    await dead.verify(await sign({ name: "x" }, privateKey, "ES256", { kid: "k1" }), NOW),
    "unauthorized",
    /key set unavailable/,
  );
});

Deno.test("jwt: every forged, stale or incomplete token is refused", async (t) => {
  const rsa = await jose.generateKeyPair("RS256", { extractable: true });
  const pem = await jose.exportSPKI(rsa.publicKey);
  const hsVerifier = createJwtVerifier(options({ kind: "secret", secret: SECRET }));
  const rsVerifier = createJwtVerifier(options({ kind: "publicKey", pem }));
  const strict = createJwtVerifier(
    options({ kind: "secret", secret: SECRET }, {
      issuer: "https://id.example",
      audience: "hubbub",
    }),
  );
  const unsigned = `${btoa(JSON.stringify({ alg: "none", typ: "JWT" }))}.${
    btoa(JSON.stringify({ name: "mallory", exp: seconds(NOW) + 60 }))
  }.`.replaceAll("=", "");
  const good = await sign({ name: "alice" }, secretKey, "HS256");
  const [header, , signature] = good.split(".");
  const tampered = `${header}.${
    btoa(JSON.stringify({ name: "admin", exp: seconds(NOW) + 3600 })).replaceAll("=", "")
  }.${signature}`;

  const cases: [string, () => Promise<Verified>, "unauthorized" | "token_expired", RegExp][] = [
    [
      "wrong secret",
      async () =>
        hsVerifier.verify(
          await sign(
            { name: "a" },
            new TextEncoder().encode("another-secret-entirely-0123456789"),
            "HS256",
          ),
          NOW,
        ),
      "unauthorized",
      /bad signature/,
    ],
    [
      "alg none",
      () => hsVerifier.verify(unsigned, NOW),
      "unauthorized",
      /algorithm not allowed|malformed/,
    ],
    [
      "RS-signed token against a secret",
      async () => hsVerifier.verify(await sign({ name: "a" }, rsa.privateKey, "RS256"), NOW),
      "unauthorized",
      /algorithm not allowed/,
    ],
    [
      "HS/RS confusion: HS256 signed with the public key",
      async () =>
        rsVerifier.verify(await sign({ name: "a" }, new TextEncoder().encode(pem), "HS256"), NOW),
      "unauthorized",
      /algorithm not allowed/,
    ],
    [
      "wrong RSA key",
      async () =>
        rsVerifier.verify(
          await sign({ name: "a" }, (await jose.generateKeyPair("RS256")).privateKey, "RS256"),
          NOW,
        ),
      "unauthorized",
      /bad signature/,
    ],
    [
      "expired beyond the skew",
      async () =>
        hsVerifier.verify(
          await sign({ name: "a", exp: seconds(NOW) - 31 }, secretKey, "HS256"),
          NOW,
        ),
      "token_expired",
      /expired/,
    ],
    [
      "not yet valid",
      async () =>
        hsVerifier.verify(
          await sign({ name: "a", nbf: seconds(NOW) + 120 }, secretKey, "HS256"),
          NOW,
        ),
      "unauthorized",
      /nbf/,
    ],
    [
      "no exp",
      async () =>
        hsVerifier.verify(
          await new jose.SignJWT({ name: "a" }).setProtectedHeader({ alg: "HS256" }).sign(
            secretKey,
          ),
          NOW,
        ),
      "unauthorized",
      /exp/,
    ],
    [
      "no name and no sub",
      async () => hsVerifier.verify(await sign({ role: "x" }, secretKey, "HS256"), NOW),
      "unauthorized",
      /name or sub/,
    ],
    [
      "channels not a list of strings",
      async () =>
        hsVerifier.verify(await sign({ name: "a", channels: "all" }, secretKey, "HS256"), NOW),
      "unauthorized",
      /channels/,
    ],
    [
      "wrong issuer",
      async () =>
        strict.verify(
          await sign({ name: "a", iss: "https://evil.example", aud: "hubbub" }, secretKey, "HS256"),
          NOW,
        ),
      "unauthorized",
      /iss/,
    ],
    [
      "wrong audience",
      async () =>
        strict.verify(
          await sign({ name: "a", iss: "https://id.example", aud: "other" }, secretKey, "HS256"),
          NOW,
        ),
      "unauthorized",
      /aud/,
    ],
    [
      "missing issuer",
      async () => strict.verify(await sign({ name: "a", aud: "hubbub" }, secretKey, "HS256"), NOW),
      "unauthorized",
      /iss/,
    ],
    ["tampered payload", () => hsVerifier.verify(tampered, NOW), "unauthorized", /bad signature/],
    ["not a JWT", () => hsVerifier.verify("hello.world", NOW), "unauthorized", /malformed/],
  ];
  for (const [name, verify, code, pattern] of cases) {
    await t.step(name, async () => assertRefused(await verify(), code, pattern));
  }
});

Deno.test("jwt: the clock skew forgives a token that expired moments ago", async () => {
  const verifier = createJwtVerifier(options({ kind: "secret", secret: SECRET }));
  const token = await sign({ name: "alice", exp: seconds(NOW) - 10 }, secretKey, "HS256");
  assert.ok((await verifier.verify(token, NOW)).ok);
  const strict = createJwtVerifier(
    options({ kind: "secret", secret: SECRET }, { clockSkewSeconds: 0 }),
  );
  assertRefused(await strict.verify(token, NOW), "token_expired");
});

Deno.test("jwt: channel patterns match whole names, * matching any run", () => {
  const allowed = channelMatcher(["team-*", "lobby", "a.b"]);
  assert.deepEqual(
    ["team-red", "team-", "lobby", "lobby2", "xteam-red", "a.b", "aXb"].map(allowed),
    [true, true, true, false, false, true, false],
  );
});
