/**
 * Which dialects a server speaks: every one it was built with on an open
 * server, but only those `--dialect` names on a server that controls access
 * (tokens or an authorizer), since most dialects carry no token hubbub could
 * check: a stranger must not get around the server's rules through a
 * protocol the operator never asked for.
 */
import assert from "node:assert/strict";
import type { Config } from "../../lib/config.ts";
import { loginChat } from "../../lib/dialects/login_chat.ts";
import { wsify } from "../../lib/dialects/wsify.ts";
import { startServer } from "../_helpers.ts";
import { handshake } from "./_handshake.ts";

const SECRET = "0123456789abcdef0123456789abcdef";

/** The handshake's status code for each path, on a server with `config` built with two dialects. */
async function statuses(config: Partial<Config>, paths: string[]): Promise<string[]> {
  await using server = startServer(config, { dialects: [wsify, loginChat] });
  const port = Number(new URL(server.url).port);
  const codes: string[] = [];
  for (const path of paths) codes.push((await handshake(port, path)).status.split(" ")[1]);
  return codes;
}

const PATHS = ["/compat/wsify/ws", "/compat/login-chat/", "/ws"];

Deno.test("served dialects: an open server speaks every dialect it was built with", async () => {
  assert.deepEqual(await statuses({ dialects: new Map() }, PATHS), ["101", "101", "101"]);
});

Deno.test("served dialects: a server that requires tokens speaks only those --dialect names", async () => {
  const none = { jwtSecret: SECRET, dialects: new Map() };
  assert.deepEqual(await statuses(none, PATHS), ["404", "404", "101"]);
  const one = { jwtSecret: SECRET, dialects: new Map([["wsify", 3000]]) };
  assert.deepEqual(await statuses(one, PATHS), ["101", "404", "101"]);
});

Deno.test("served dialects: so does a server with an authorizer", async () => {
  // Nothing listens there: a dialect that is not served is refused (404) before the authorizer
  // is asked; a served one's upgrade asks it, finds it down and answers 503.
  const config = {
    authorizerUrl: "http://127.0.0.1:9/",
    dialects: new Map([["login-chat", 4567]]),
  };
  assert.deepEqual(await statuses(config, PATHS.slice(0, 2)), ["404", "503"]);
});
