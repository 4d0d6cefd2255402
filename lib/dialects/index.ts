/**
 * Every dialect hubbub speaks besides its native protocol. Adding one means
 * adding its file here and to this list; nothing in the core changes.
 *
 * @module
 */
import type { Dialect } from "../dialect.ts";

/** The dialects, by the name used in `--dialect NAME=PORT` and `/compat/NAME/`. */
export const DIALECTS: readonly Dialect[] = [];
