/**
 * Every dialect hubbub speaks besides its native protocol. Adding one means
 * adding its file here and to this list; nothing in the core changes.
 *
 * @module
 */
import type { Dialect } from "./dialect.ts";
import { channelPath } from "./channel_path.ts";
import { garinchat } from "./garinchat.ts";
import { loginChat } from "./login_chat.ts";
import { wschat } from "./wschat.ts";
import { wsify } from "./wsify.ts";

/** The dialects, by the name used in `--dialect NAME=PORT` and `/compat/NAME/`. */
export const DIALECTS: readonly Dialect[] = [
  wschat,
  channelPath,
  wsify,
  garinchat,
  loginChat,
] as Dialect[];
