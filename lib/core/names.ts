/**
 * User names: the rules a name must meet, the form others see, and the
 * keys two names collide on. Every protocol (native logins, token names,
 * the dialects) checks names here, so one name means one user everywhere.
 *
 * The rules follow the PRECIS UsernameCaseMapped profile (RFC 8265) on top
 * of hubbub's own, narrower, character set:
 *
 * - The name is normalized with NFKC (which does PRECIS's width mapping:
 *   `Ａｌｉｃｅ` is `Alice`); that form is the one everyone sees.
 * - 1–32 letters (any script), combining marks, digits, `_`, `.`, `-`, not
 *   starting with a mark.
 * - Lowercased, the name must be valid in the PRECIS IdentifierClass
 *   (RFC 8264): no default-ignorable code point (invisible marks such as
 *   U+034F, variation selectors, the Hangul fillers), no control or
 *   format character (bidi controls, zero-width joiners), no old Hangul
 *   jamo, none of the code points RFC 8264 disallows by exception (U+0640
 *   ARABIC TATWEEL, …), letters and digits only of the categories
 *   Ll/Lu/Lo/Lm/Mn/Mc/Nd (so no enclosing marks or letter-like numbers
 *   beyond U+3007), and Arabic-Indic digits of one kind only.
 * - A name holding right-to-left characters follows the Bidi Rule
 *   (RFC 5893): it starts with a right-to-left letter, holds no
 *   left-to-right letters, and ends with a letter or digit.
 *
 * Two names collide when they are the same name compared
 * case-insensitively, or when they look alike by their UTS #39 confusable
 * skeletons: `аlice` (Cyrillic а) collides with `alice`, `Тom` (Cyrillic
 * Т) with `Tom`.
 *
 * Runtime-free: plain string functions and a generated data module.
 *
 * @module
 */
import { CONFUSABLES } from "./_confusables.ts";

/** The longest name, in code points after normalization. */
export const MAX_NAME_LENGTH = 32;

/** A name that passed the rules, in the form others see, or why it did not. */
export type NameCheck =
  | { ok: true; name: string }
  | { ok: false; reason: string };

/** Letters, marks, digits and `_ . -`, not starting with a mark: hubbub's own character set. */
const SHAPE = /^[\p{L}\p{N}_.-][\p{L}\p{M}\p{N}_.-]*$/u;

/** Invisible, control and format code points, noncharacters and surrogates: never in a name. */
const HIDDEN =
  /[\p{Default_Ignorable_Code_Point}\p{Cc}\p{Cf}\p{Cs}\p{Co}\p{Noncharacter_Code_Point}]/u;

/**
 * What PRECIS's IdentifierClass refuses among letters, marks and digits:
 * letters and numbers outside Ll/Lu/Lo/Lm/Mn/Mc/Nd (titlecase, enclosing
 * marks, letter-like and other numbers; U+3007 is allowed by exception),
 * old Hangul jamo, and the code points RFC 8264 disallows by exception.
 */
const NOT_IDENTIFIER =
  /[\p{Lt}\p{Me}\p{No}\u{1100}-\u{11FF}\u{A960}-\u{A97F}\u{D7B0}-\u{D7FF}\u0640\u07FA\u302E\u302F\u3031-\u3035\u303B]|(?!\u3007)\p{Nl}/u;

/** Right-to-left letters and digits (Bidi_Class R or AL), by script. */
const RTL = new RegExp(
  `[${
    [
      "Hebrew",
      "Arabic",
      "Syriac",
      "Thaana",
      "Nko",
      "Samaritan",
      "Mandaic",
      "Adlam",
      "Hanifi_Rohingya",
      "Mende_Kikakui",
      "Imperial_Aramaic",
      "Phoenician",
      "Kharoshthi",
      "Old_South_Arabian",
      "Old_North_Arabian",
      "Avestan",
      "Inscriptional_Parthian",
      "Inscriptional_Pahlavi",
      "Psalter_Pahlavi",
      "Old_Turkic",
      "Old_Hungarian",
      "Nabataean",
      "Palmyrene",
      "Hatran",
      "Manichaean",
      "Lydian",
      "Cypriot",
      "Meroitic_Cursive",
      "Meroitic_Hieroglyphs",
      "Sogdian",
      "Old_Sogdian",
      "Elymaic",
      "Chorasmian",
      "Yezidi",
    ].map((script) => `\\p{Script=${script}}`).join("")
  }]`,
  "u",
);

/** Arabic-Indic digits (Bidi_Class AN); the extended ones (U+06F0–U+06F9) are EN. */
const ARABIC_INDIC = /[\u0660-\u0669\u{10D30}-\u{10D39}]/u;
const EXTENDED_ARABIC_INDIC = /[\u06F0-\u06F9]/u;

/**
 * Checks `input` against the name rules; on success, the name in the form
 * others see (NFKC, case kept).
 *
 * @example
 * ```ts
 * checkName("Ａｌｉｃｅ"); // { ok: true, name: "Alice" }
 * checkName("alice\u034F"); // { ok: false, reason: "…invisible…" }
 * ```
 */
export function checkName(input: string): NameCheck {
  const name = input.normalize("NFKC");
  const length = codePoints(name);
  if (length === 0) return { ok: false, reason: "A name cannot be empty" };
  if (length > MAX_NAME_LENGTH) {
    return { ok: false, reason: `A name has at most ${MAX_NAME_LENGTH} characters` };
  }
  // PRECIS checks the case-mapped form; the hidden ones are refused in either form.
  const mapped = name.toLowerCase().normalize("NFKC");
  const hidden = HIDDEN.exec(input) ?? HIDDEN.exec(name) ?? HIDDEN.exec(mapped);
  if (hidden !== null) {
    return {
      ok: false,
      reason: `${describe(hidden[0])} is invisible or a control character, not allowed in names`,
    };
  }
  if (!SHAPE.test(name) || !SHAPE.test(mapped)) {
    return {
      ok: false,
      reason: "A name holds only letters, digits, `_`, `.` and `-`, and starts with no mark",
    };
  }
  for (const char of mapped) {
    if (NOT_IDENTIFIER.test(char) || char.normalize("NFKC") !== char) {
      return { ok: false, reason: `${describe(char)} is not allowed in names` };
    }
  }
  if (ARABIC_INDIC.test(mapped) && EXTENDED_ARABIC_INDIC.test(mapped)) {
    return { ok: false, reason: "A name mixes Arabic-Indic and extended Arabic-Indic digits" };
  }
  if (!followsBidiRule(mapped)) {
    return {
      ok: false,
      reason: "A right-to-left name starts with a right-to-left letter, ends with a letter " +
        "or digit, and holds no left-to-right letters",
    };
  }
  return { ok: true, name };
}

/**
 * What a name no token proves starts with, on a server that requires
 * tokens (`~alice`). No name passing {@linkcode checkName} holds it, nor
 * does any confusable prototype, so a marked name never equals or looks
 * like a proven one in the registry.
 */
export const UNPROVEN_MARK = "~";

/** `name` (one that passed {@linkcode checkName}) marked as proven by no token: `~alice`. */
export function unprovenName(name: string): string {
  return `${UNPROVEN_MARK}${name}`;
}

/**
 * The same user's name, whatever its case or width: NFKC, lowercased,
 * final sigma as sigma. Use it to tell whether two names are one name
 * (a token refresh for the same user); {@linkcode nameKeys} for collisions.
 */
export function foldName(name: string): string {
  return name.normalize("NFKC").toLowerCase().replaceAll("ς", "σ").normalize("NFKC");
}

/**
 * The keys a name holds in the registry; two names collide when they share
 * one. The first is the primary key (the one a cluster claims): the
 * skeleton of the case-folded name, so case variants and lowercase
 * look-alikes (`аlice`, `a1ice`) collide. The others are the skeletons of
 * the name as shown and of its uppercase, so a name that looks like
 * another only in capitals (`Тom`, `НАNS` in Cyrillic) collides too.
 */
export function nameKeys(name: string): string[] {
  const shown = name.normalize("NFKC");
  const keys = [
    skeleton(foldName(shown)),
    skeleton(shown),
    skeleton(shown.toUpperCase().normalize("NFKC")),
  ];
  return [...new Set(keys)];
}

/** The primary registry key of `name` (see {@linkcode nameKeys}). */
export function nameKey(name: string): string {
  return skeleton(foldName(name));
}

/** Whether two names collide: the same name in another case, or look-alikes. */
export function namesCollide(a: string, b: string): boolean {
  const keys = new Set(nameKeys(a));
  return nameKeys(b).some((key) => keys.has(key));
}

/**
 * The UTS #39 skeleton of `text` (§4): NFD, default-ignorable code points
 * removed, each code point replaced by its confusable prototype, NFD again.
 */
export function skeleton(text: string): string {
  const prototypes = confusables();
  let out = "";
  for (const char of text.normalize("NFD").replace(IGNORABLE, "")) {
    out += prototypes.get(char) ?? char;
  }
  return out.normalize("NFD");
}

const IGNORABLE = /\p{Default_Ignorable_Code_Point}/gu;

let prototypeMap: Map<string, string> | null = null;

/** The prototype of each confusable code point, read from the generated data on first use. */
function confusables(): Map<string, string> {
  if (prototypeMap !== null) return prototypeMap;
  const chars = (base36: string) =>
    String.fromCodePoint(...base36.split(".").map((cp) => parseInt(cp, 36)));
  prototypeMap = new Map();
  for (const entry of CONFUSABLES.split(",")) {
    if (entry === "") continue;
    const [source, prototype] = entry.split("=");
    prototypeMap.set(chars(source), chars(prototype));
  }
  return prototypeMap;
}

/**
 * The Bidi Rule of RFC 5893 for a name that holds right-to-left characters
 * (names without any need not follow it, RFC 8265 §3.3.3). Bidi classes
 * come from scripts and categories: within the characters a name may hold,
 * right-to-left scripts' letters and digits are R/AL, Arabic-Indic digits
 * AN, ASCII and extended Arabic-Indic digits EN, nonspacing marks NSM,
 * `-` ES, `.` CS, `_` ON, and everything else L.
 */
function followsBidiRule(name: string): boolean {
  const classes = [...name].map(bidiClass);
  if (!classes.some((c) => c === "R" || c === "AN")) return true;
  if (classes[0] !== "R") return false;
  if (classes.includes("L")) return false;
  if (classes.includes("EN") && classes.includes("AN")) return false;
  const last = classes.findLast((c) => c !== "NSM");
  return last === "R" || last === "EN" || last === "AN";
}

type BidiClass = "L" | "R" | "AN" | "EN" | "NSM" | "ES" | "CS" | "ON";

function bidiClass(char: string): BidiClass {
  if (ARABIC_INDIC.test(char)) return "AN";
  if (/[0-9]/.test(char) || EXTENDED_ARABIC_INDIC.test(char)) return "EN";
  if (/\p{Mn}|\p{Me}/u.test(char)) return "NSM";
  if (char === "-") return "ES";
  if (char === ".") return "CS";
  if (char === "_") return "ON";
  return RTL.test(char) ? "R" : "L";
}

/** A code point as `U+034F`: safe to show even when the character is invisible. */
function describe(char: string): string {
  const hex = char.codePointAt(0)!.toString(16).toUpperCase().padStart(4, "0");
  return `U+${hex}`;
}

function codePoints(text: string): number {
  let count = 0;
  for (const _ of text) count++;
  return count;
}
