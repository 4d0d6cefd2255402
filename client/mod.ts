/**
 * The hubbub client library: connect to a hubbub server from a browser, Deno,
 * Bun or Node, join channels with their history, send with acknowledgements,
 * and recover after a drop with no message lost or doubled.
 *
 * @example
 * ```ts
 * import { HubbubClient } from "@hubbub/client";
 *
 * const client = new HubbubClient({ url: "ws://localhost:8000/ws", name: "alice" });
 * client.on("message", (m) => console.log(`#${m.channel} ${m.from}: ${m.text}`));
 * client.on("gap", (g) => console.log(`#${g.channel}: some messages were missed`));
 * await client.connect();
 * await client.join("lobby", { history: 50 });
 * const { id, seq } = await client.send("lobby", "Hello");
 * ```
 *
 * @module
 */
// Everything each file exports is public: the bundled declarations list it all anyway.
export * from "./client.ts";
export * from "./backoff.ts";
export * from "./protocol.ts";
