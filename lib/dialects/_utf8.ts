/**
 * Binary frames read as text, for dialects whose originals parsed a binary
 * frame's JSON like a text frame's.
 *
 * @module
 */

// Fatal: bytes that are not UTF-8 are refused, not patched with U+FFFD. A BOM is kept, so
// `JSON.parse` refuses it as the originals' parsers did.
const decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/** The text of a binary frame's bytes; null when they are not valid UTF-8. */
export function decodeUtf8(bytes: Uint8Array): string | null {
  try {
    return decoder.decode(bytes);
  } catch {
    return null;
  }
}
