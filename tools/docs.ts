/**
 * Rewrites the generated parts of the docs: PROTOCOL.md's tables from
 * lib/core/protocol.ts and README.md's configuration table from lib/config.ts.
 * Run with `deno task docs`; tests fail while either is stale.
 */
import { configTable, parseConfig } from "../lib/config.ts";
import { DIALECTS } from "../lib/dialects/index.ts";
import {
  CONFIG_BEGIN,
  CONFIG_END,
  replaceBetween,
  updateProtocolDocument,
} from "./protocol_doc.ts";

const defaults = parseConfig([], {}, DIALECTS);
if (defaults.kind !== "config") throw new Error("The default configuration is invalid");

const protocol = new URL("../PROTOCOL.md", import.meta.url);
await Deno.writeTextFile(
  protocol,
  updateProtocolDocument(
    await Deno.readTextFile(protocol),
    defaults.config.maxTextLength,
    defaults.config.historyLimit,
  ),
);
const readme = new URL("../README.md", import.meta.url);
await Deno.writeTextFile(
  readme,
  replaceBetween(
    await Deno.readTextFile(readme),
    CONFIG_BEGIN,
    CONFIG_END,
    `\n${configTable(DIALECTS)}\n`,
  ),
);
