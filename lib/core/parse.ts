/**
 * Turns one inbound text frame into a validated command, or into the error
 * the client should get. Never throws on any input.
 *
 * @module
 */
import type { z } from "zod";
import type { ClientCommand, ClientCommandSchemas, ErrorCode, Ref } from "./protocol.ts";
import { Ref as RefSchema } from "./protocol.ts";

/** The outcome of parsing one frame: a command, or an error for the sender. */
export type Parsed =
  | { ok: true; command: ClientCommand }
  | { ok: false; code: ErrorCode; message: string; ref?: Ref };

/** Parses and validates one text frame against the command schemas. */
export function parseClientFrame(text: string, schemas: ClientCommandSchemas): Parsed {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return { ok: false, code: "bad_json", message: "Frame is not valid JSON" };
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    return { ok: false, code: "bad_request", message: "Frame must be a JSON object" };
  }
  const frame = value as Record<string, unknown>;
  const ref = refOf(frame);
  const type = Object.hasOwn(frame, "type") ? frame.type : undefined;
  if (typeof type !== "string") {
    return { ok: false, code: "bad_request", message: 'Field "type" must be a string', ref };
  }
  if (!Object.hasOwn(schemas, type)) {
    return {
      ok: false,
      code: "unknown_type",
      message: `Unknown type "${clip(type)}"`,
      ref,
    };
  }
  const schema = schemas[type as keyof ClientCommandSchemas];
  const result = schema.safeParse(frame);
  if (result.success) return { ok: true, command: result.data as ClientCommand };
  return { ok: false, ...describeIssue(result.error.issues[0], frame), ref };
}

/** Picks the error code a client can act on for the first schema issue. */
function describeIssue(
  issue: z.core.$ZodIssue,
  frame: Record<string, unknown>,
): { code: ErrorCode; message: string } {
  const field = String(issue.path[0] ?? "");
  const value = frame[field];
  if (issue.code === "unrecognized_keys") {
    const keys = issue.keys.map((key) => `"${clip(key)}"`).join(", ");
    return { code: "bad_request", message: `Unknown field ${keys}` };
  }
  if (typeof value === "string") {
    if (field === "name") {
      return { code: "invalid_name", message: `Invalid name "${clip(value)}"` };
    }
    if (field === "channel") {
      return { code: "invalid_channel", message: `Invalid channel "${clip(value)}"` };
    }
    if (issue.code === "too_big") {
      return {
        code: "too_large",
        message: `Field "${field}" is longer than ${issue.maximum} characters`,
      };
    }
  }
  if (value === undefined) {
    return { code: "bad_request", message: `Missing field "${field}"` };
  }
  return { code: "bad_request", message: `Field "${field}": ${issue.message}` };
}

/** The frame's `ref`, when it is one a reply can carry. */
function refOf(frame: Record<string, unknown>): Ref | undefined {
  if (!Object.hasOwn(frame, "ref")) return undefined;
  const parsed = RefSchema.safeParse(frame.ref);
  return parsed.success ? parsed.data : undefined;
}

/** Shortens client text quoted in an error message. */
function clip(text: string): string {
  return text.length > 40 ? `${text.slice(0, 40)}…` : text;
}
