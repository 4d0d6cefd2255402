/**
 * Renders the client-command and error-code tables of `PROTOCOL.md` from
 * the zod schemas, so the document cannot drift from the code.
 *
 * @example
 * ```sh
 * deno task docs   # rewrites the generated part of PROTOCOL.md (tools/protocol.ts)
 * ```
 *
 * @module
 */
import { z } from "zod";
import {
  clientCommandSchemas,
  CLOSE_CODE_MEANINGS,
  CloseCode,
  DEFAULT_HISTORY_LIMIT,
  ERROR_CODES,
} from "../lib/core/protocol.ts";

/** Marks where the generated part of PROTOCOL.md starts and ends. */
export const BEGIN = "<!-- BEGIN GENERATED FROM lib/core/protocol.ts: deno task docs -->";
export const END = "<!-- END GENERATED -->";

/** Marks the README's generated configuration table. */
export const CONFIG_BEGIN = "<!-- BEGIN GENERATED FROM lib/config.ts: deno task docs -->";
export const CONFIG_END = "<!-- END GENERATED CONFIG -->";

interface FieldSchema {
  type?: string;
  const?: unknown;
  description?: string;
  anyOf?: FieldSchema[];
}

/** The generated Markdown, markers included, for the given limits (the defaults: `deno task docs`). */
export function renderProtocolTables(
  maxTextLength: number,
  historyLimit: number = DEFAULT_HISTORY_LIMIT,
): string {
  const schemas = clientCommandSchemas(maxTextLength, historyLimit);
  const commands = Object.values(schemas).map((schema) => {
    const json = z.toJSONSchema(schema, { io: "input" }) as {
      description?: string;
      properties: Record<string, FieldSchema>;
      required?: string[];
    };
    const type = String(json.properties.type.const);
    const fields = Object.entries(json.properties)
      .filter(([name]) => name !== "type" && name !== "ref")
      .map(([name, field]) => {
        const optional = json.required?.includes(name) ? "" : "optional ";
        return `\`${name}\`: ${optional}${field.description ?? field.type ?? "value"}`;
      });
    return `| \`${type}\` | ${fields.join("<br>") || "—"} | ${json.description ?? ""} |`;
  });
  const errors = Object.entries(ERROR_CODES).map(([code, meaning]) =>
    `| \`${code}\` | ${meaning} |`
  );
  const closes = Object.entries(CloseCode).map(([name, code]) =>
    `| ${code} | \`${name}\` | ${CLOSE_CODE_MEANINGS[code]} |`
  );
  return [
    BEGIN,
    "",
    "### Client commands",
    "",
    "Every command may also carry `ref` (a string of at most 128 characters, or a number),",
    "echoed on the direct reply. Unknown fields are refused (`bad_request`), so a typo never",
    "passes silently.",
    "",
    "| `type` | fields | meaning |",
    "|---|---|---|",
    ...commands,
    "",
    "### Error codes",
    "",
    "| code | meaning |",
    "|---|---|",
    ...errors,
    "",
    "### Close codes (`CloseCode`)",
    "",
    "| code | name | meaning |",
    "|---|---|---|",
    ...closes,
    "",
    END,
  ].join("\n");
}

/** Replaces the generated part of `document` with a fresh rendering. */
export function updateProtocolDocument(
  document: string,
  maxTextLength: number,
  historyLimit: number = DEFAULT_HISTORY_LIMIT,
): string {
  return replaceBetween(
    document,
    BEGIN,
    END,
    renderProtocolTables(maxTextLength, historyLimit).slice(BEGIN.length, -END.length),
  );
}

/** Replaces what stands between the markers `begin` and `end` in `document`. */
export function replaceBetween(
  document: string,
  begin: string,
  end: string,
  content: string,
): string {
  const start = document.indexOf(begin);
  const stop = document.indexOf(end);
  if (start < 0 || stop < start) {
    throw new Error(`The document has no "${begin}" … "${end}" markers`);
  }
  return document.slice(0, start + begin.length) + content + document.slice(stop);
}
