/**
 * Renders the client-command and error-code tables of `PROTOCOL.md` from
 * the zod schemas, so the document cannot drift from the code.
 *
 * @example
 * ```sh
 * deno task protocol   # rewrites the generated part of PROTOCOL.md (tools/protocol.ts)
 * ```
 *
 * @module
 */
import { z } from "zod";
import { clientCommandSchemas, CLOSE_CODE_MEANINGS, CloseCode, ERROR_CODES } from "./protocol.ts";

/** Marks where the generated part of PROTOCOL.md starts and ends. */
export const BEGIN = "<!-- BEGIN GENERATED FROM lib/protocol.ts: deno task protocol -->";
export const END = "<!-- END GENERATED -->";

interface FieldSchema {
  type?: string;
  const?: unknown;
  description?: string;
  anyOf?: FieldSchema[];
}

/** The generated Markdown, markers included. */
export function renderProtocolTables(maxTextLength: number): string {
  const commands = Object.values(clientCommandSchemas(maxTextLength)).map((schema) => {
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
export function updateProtocolDocument(document: string, maxTextLength: number): string {
  const start = document.indexOf(BEGIN);
  const end = document.indexOf(END);
  if (start < 0 || end < start) throw new Error("PROTOCOL.md has no generated section markers");
  return document.slice(0, start) + renderProtocolTables(maxTextLength) +
    document.slice(end + END.length);
}
