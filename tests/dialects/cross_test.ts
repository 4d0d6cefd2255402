/** One world: clients of different protocols in one channel see each other, each in its own format. */
import { loginChat } from "../../lib/dialects/login_chat.ts";
import { wschat } from "../../lib/dialects/wschat.ts";
import { wsify } from "../../lib/dialects/wsify.ts";
import { startServer } from "../_helpers.ts";
import { oneWorld } from "./_one_world.ts";

Deno.test("dialects: one message seen by native, wschat, wsify and login-chat clients, each in its own format", async () => {
  await using server = startServer({}, { dialects: [wschat, wsify, loginChat] });
  await oneWorld(server.url.replace("http", "ws"), await server.user("nat", "lobby"));
});
