/**
 * Rewrites the generated tables of PROTOCOL.md from lib/protocol.ts, with
 * the default text limit. Run with `deno task protocol`.
 */
import { parseConfig } from "../lib/config.ts";
import { updateProtocolDocument } from "../lib/protocol_doc.ts";

const defaults = parseConfig([], {});
if (defaults.kind !== "config") throw new Error("The default configuration is invalid");
const path = new URL("../PROTOCOL.md", import.meta.url);
const document = await Deno.readTextFile(path);
await Deno.writeTextFile(path, updateProtocolDocument(document, defaults.config.maxTextLength));
