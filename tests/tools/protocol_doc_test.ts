/** The generated part of PROTOCOL.md (tools/protocol_doc.ts): what it renders, for which limits. */
import assert from "node:assert/strict";
import { parseConfig } from "../../lib/config.ts";
import { DIALECTS } from "../../lib/dialects/index.ts";
import { BEGIN, END, renderProtocolTables } from "../../tools/protocol_doc.ts";

/** The default configuration, as `deno task docs` renders PROTOCOL.md with it. */
function defaults() {
  const result = parseConfig([], {}, DIALECTS);
  assert.equal(result.kind, "config");
  return (result as Extract<typeof result, { kind: "config" }>).config;
}

/** The generated table row of command `type`. */
function row(tables: string, type: string): string {
  const line = tables.split("\n").find((line) => line.startsWith(`| \`${type}\` |`));
  assert.ok(line !== undefined, `no row for ${type}`);
  return line;
}

Deno.test("protocol doc: PROTOCOL.md holds the tables rendered for the default configuration", async () => {
  const { maxTextLength, historyLimit } = defaults();
  const document = await Deno.readTextFile(new URL("../../PROTOCOL.md", import.meta.url));
  const generated = document.slice(document.indexOf(BEGIN), document.indexOf(END) + END.length);
  assert.equal(generated, renderProtocolTables(maxTextLength, historyLimit));
});

Deno.test("protocol doc: the history fields and the history command are rendered, with their bounds", () => {
  const tables = renderProtocolTables(4096, 250);
  const join = row(tables, "join");
  assert.match(join, /`history`: optional 0–250: the latest messages/);
  assert.match(join, /`since`: optional `\{epoch, seq\}`/);
  assert.match(row(tables, "broadcast"), /`key`: optional 1–64 characters/);
  assert.match(row(tables, "broadcast"), /a `sent` reply/);
  const history = row(tables, "history");
  assert.match(history, /`channel`: 1–64/);
  assert.match(history, /`before`: optional a seq/);
  assert.match(history, /`limit`: optional 0–250: the most messages to return \(default 250\)/);
  assert.match(row(tables, "unavailable"), /history store/);
});
