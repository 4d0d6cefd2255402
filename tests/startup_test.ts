/** The start-up summary's fields and the listen-failure line. */
import assert from "node:assert/strict";
import { listenFailure, startupFields, withoutCredentials } from "../lib/startup.ts";
import { TEST_CONFIG } from "./_helpers.ts";

Deno.test("startup: the summary says what is on and shows no secret", () => {
  assert.deepEqual(startupFields(TEST_CONFIG), {
    auth: "none",
    garinchat_auth: undefined,
    authorizer: "off",
    api: "off",
    origins: "same-origin",
    engine: "memory",
    redis: undefined,
    log_level: "info",
  });
  // The store is what main.ts could open, not what was asked for: it adds that field itself
  // (tests/e2e/startup_test.ts reads it in the real summary line).
  const secrets = {
    ...TEST_CONFIG,
    jwtSecret: "jwt-secret-0123456789abcdef",
    apiKey: "api-key-0123456789abcdef",
    authorizerUrl: "https://user:authpass@auth.example/check?token=t0k3n",
    redisUrl: "rediss://default:redispass@cache.example:6380/2",
    allowedOrigins: ["https://a.example", "https://b.example"],
  };
  const fields = startupFields(secrets);
  assert.deepEqual(
    [fields.auth, fields.authorizer, fields.api, fields.engine, fields.redis, fields.origins],
    [
      "jwt-secret",
      "on",
      "on",
      "redis",
      "rediss://cache.example:6380/2",
      "https://a.example,https://b.example",
    ],
  );
  const shown = JSON.stringify(fields);
  for (const secret of ["jwt-secret-0123", "api-key-0123", "authpass", "t0k3n", "redispass"]) {
    assert.ok(!shown.includes(secret), secret);
  }
  assert.equal(startupFields({ ...TEST_CONFIG, jwksUrl: "https://k.example/jwks" }).auth, "jwks");
});

Deno.test("startup: a GarinChat listener's token mode is its own secret, else hubbub's", () => {
  const garinchat = { ...TEST_CONFIG, dialects: new Map([["garinchat", 0]]) };
  assert.equal(startupFields(garinchat).garinchat_auth, "none");
  assert.equal(
    startupFields({ ...garinchat, jwksUrl: "https://k.example/jwks" }).garinchat_auth,
    "jwks",
  );
  const own = { ...garinchat, garinchatJwtSecret: "g".repeat(20) };
  assert.deepEqual([startupFields(own).auth, startupFields(own).garinchat_auth], [
    "none",
    "jwt-secret",
  ]);
});

Deno.test("startup: a Redis URL loses its user and password, and keeps host, port and database", () => {
  assert.equal(withoutCredentials("redis://:pw@cache:6379"), "redis://cache:6379");
  assert.equal(withoutCredentials("redis://u:pw@[::1]:6379/3"), "redis://[::1]:6379/3");
  assert.equal(withoutCredentials("not a url"), "(unparsable URL)");
});

Deno.test("startup: a listen failure is one line naming the option and the port", () => {
  const target = { hostname: "0.0.0.0", port: 8080, option: "--dialect wschat=8080" };
  const lines = [
    listenFailure(
      { listenError: "in_use", detail: "Address already in use (os error 98)" },
      target,
    ),
    listenFailure({ listenError: "denied", detail: "Permission denied" }, target),
    listenFailure({ listenError: "unavailable", detail: "Cannot assign" }, target),
    listenFailure({ listenError: "other", detail: "failed to lookup address" }, target),
  ];
  assert.equal(
    lines[0],
    "Port 8080 (--dialect wschat=8080) is already in use on 0.0.0.0: stop what holds it or choose another port",
  );
  for (const line of lines) {
    assert.ok(!line.includes("\n"));
    assert.match(line, /8080|--hostname/);
  }
  assert.match(lines[3], /failed to lookup address/);
});
