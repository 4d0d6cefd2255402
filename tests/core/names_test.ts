/**
 * Name rules (PRECIS UsernameCaseMapped, RFC 8265) and look-alike collisions
 * (UTS #39 skeletons): invisible, control and direction characters are
 * refused, look-alikes collide, ordinary names of every script still work.
 */
import assert from "node:assert/strict";
import * as jose from "jose";
import { CONFUSABLES_VERSION } from "../../lib/core/_confusables.ts";
import { createMemoryCluster } from "../../lib/cluster/engine.ts";
import { checkName, foldName, nameKey, namesCollide, skeleton } from "../../lib/core/names.ts";
import { startServer } from "../_helpers.ts";

const hex = (text: string) =>
  [...text].map((c) => `U+${c.codePointAt(0)!.toString(16).toUpperCase()}`).join(" ");

Deno.test("names: invisible, control and direction characters are refused", async (t) => {
  const refused: [string, string][] = [
    ["alice + COMBINING GRAPHEME JOINER", "alice\u034F"],
    ["alice + VARIATION SELECTOR-16", "alice\uFE0F"],
    ["alice + KHMER VOWEL INHERENT AQ", "alice\u17B4"],
    ["alice + ZERO WIDTH JOINER inside", "al\u200Dice"],
    ["alice + ZERO WIDTH NON-JOINER", "alice\u200C"],
    ["alice + SOFT HYPHEN", "ali\u00ADce"],
    ["alice + MONGOLIAN VOWEL SEPARATOR", "alice\u180E"],
    ["alice + a tag character", "alice\u{E0041}"],
    ["HANGUL FILLER alone", "\u3164"],
    ["HANGUL FILLERs only", "\u3164\u3164\u3164"],
    ["HANGUL CHOSEONG FILLER", "\u115F"],
    ["HANGUL JUNGSEONG FILLER", "\u1160"],
    ["HALFWIDTH HANGUL FILLER", "\uFFA0"],
    ["Hangul fillers mixed", "\u115F\u1160\u3164\uFFA0"],
    ["a name + HANGUL FILLER", "alice\u3164"],
    ["RIGHT-TO-LEFT OVERRIDE", "ecila\u202E"],
    ["RIGHT-TO-LEFT MARK", "alice\u200F"],
    ["LEFT-TO-RIGHT ISOLATE", "\u2066alice"],
    ["NUL", "alice\u0000"],
    ["DEL", "alice\u007F"],
    ["a C1 control", "alice\u0085"],
    ["a lone surrogate", "alice\uD800"],
    ["a private-use character", "alice\uE000"],
  ];
  for (const [what, name] of refused) {
    await t.step(what, () => {
      const checked = checkName(name);
      assert.equal(checked.ok, false, `${hex(name)} was accepted`);
    });
  }
});

Deno.test("names: what PRECIS IdentifierClass disallows is refused", async (t) => {
  const refused: [string, string][] = [
    ["ARABIC TATWEEL", "\u0628\u0640\u0628"],
    ["NKO LAJANYALAN", "\u07CA\u07FA"],
    ["an enclosing mark", "a\u20DD"],
    ["a letter-like number with no compatibility mapping", "\u16EE"],
    ["another number (Tibetan half digit)", "\u0F2A"],
    ["an old Hangul jamo", "\u1100"],
    ["VERTICAL KANA REPEAT MARK", "\u30A2\u3031"],
    ["Arabic-Indic and extended Arabic-Indic digits mixed", "\u0628\u0661\u06F2"],
    ["a space", "a b"],
    ["HTML", "<b>x</b>"],
    ["a leading combining mark", "\u0301a"],
    ["33 letters", "a".repeat(33)],
    ["empty", ""],
  ];
  for (const [what, name] of refused) {
    await t.step(what, () => assert.equal(checkName(name).ok, false, `${hex(name)} was accepted`));
  }
});

Deno.test("names: a right-to-left name follows the Bidi Rule (RFC 5893)", () => {
  assert.ok(checkName("\u0645\u062D\u0645\u062F").ok, "محمد");
  assert.ok(checkName("\u0645\u062D\u0645\u062F12").ok, "ends with a digit");
  assert.ok(checkName("\u05E9\u05DC\u05D5\u05DD.\u05D3\u05DF").ok, "a dot inside");
  assert.equal(checkName("\u0645\u062D\u0645\u062F_").ok, false, "ends with _");
  assert.equal(checkName("_\u0645\u062D\u0645\u062F").ok, false, "starts with _");
  assert.equal(checkName("abc\u0645\u062D\u0645\u062F").ok, false, "mixes in Latin letters");
  assert.equal(checkName("1\u05E9\u05DC\u05D5\u05DD").ok, false, "starts with a digit");
  assert.ok(checkName("_bob").ok, "names without right-to-left characters need not follow it");
  assert.ok(checkName("1alice").ok);
});

const ORDINARY = ["alice", "\u00DCnal", "\u5F20\u4F1F", "\u0645\u062D\u0645\u062F", "jos\u00E9"];

Deno.test("names: ordinary names of any script are accepted as typed and are distinct", () => {
  for (const name of ORDINARY) {
    const checked = checkName(name);
    assert.ok(checked.ok, `${name} refused: ${!checked.ok && checked.reason}`);
    assert.equal(checked.name, name, "shown as typed");
  }
  for (const a of ORDINARY) {
    for (const b of ORDINARY) if (a !== b) assert.equal(namesCollide(a, b), false, `${a} ~ ${b}`);
  }
  for (
    const [a, b] of [["josé", "jose"], ["Ünal", "Unal"], ["张伟", "張偉"], ["Eli", "Ell"]]
  ) assert.equal(namesCollide(a, b), false, `${a} and ${b} are different names`);
});

Deno.test("names: case and width variants still collide and are shown normalized", () => {
  for (const variant of ["Alice", "ALICE", "\uFF21\uFF4C\uFF49\uFF43\uFF45", "aLiCe"]) {
    assert.ok(namesCollide("alice", variant), variant);
    assert.equal(nameKey(variant), nameKey("alice"));
  }
  const fullwidth = checkName("\uFF21\uFF4C\uFF49\uFF43\uFF45");
  assert.deepEqual(fullwidth, { ok: true, name: "Alice" });
  assert.ok(namesCollide("jose\u0301", "jos\u00E9"), "decomposed and composed é");
  assert.ok(namesCollide("\u00DCNAL", "\u00FCnal"));
  assert.ok(namesCollide("\u039F\u0394\u03A5\u03A3", "\u03BF\u03B4\u03C5\u03C3"), "final sigma");
  assert.equal(foldName("ΟΔΥΣ"), foldName("οδυσ"));
});

Deno.test("names: look-alikes collide by their UTS #39 skeleton", () => {
  const pairs: [string, string, string][] = [
    ["alice", "\u0430lice", "Cyrillic а"],
    ["alice", "\u0410lice", "Cyrillic А"],
    ["alice", "alic\u0435", "Cyrillic е"],
    ["paypal", "\u0440\u0430y\u0440\u0430l", "Cyrillic р and а"],
    ["scope", "\u0455\u0441\u043E\u0440\u0435", "all Cyrillic"],
    ["alice", "\u03B1lice", "Greek α"],
    ["bob", "b\u03BFb", "Greek ο"],
    ["victor", "\u03BDictor", "Greek ν"],
    ["alice", "a1ice", "digit one"],
    ["alice", "aIice", "capital I"],
    ["mary", "rnary", "rn"],
    ["Tom", "\u0422om", "Cyrillic Т, alike as a capital only"],
    ["Hans", "\u041D\u0410NS", "Cyrillic НА in capitals"],
    ["Kate", "\u039A\u0391\u03A4\u0395", "all Greek capitals"],
    ["Nick", "\u039Dick", "Greek Ν"],
  ];
  for (const [a, b, why] of pairs) {
    assert.ok(checkName(b).ok, `${why}: the look-alike is a valid name on its own`);
    assert.ok(namesCollide(a, b), `${a} and ${b} (${why}) collide`);
    assert.ok(namesCollide(b, a), "both ways");
  }
});

Deno.test("names: the skeleton is UTS #39 §4 (NFD, prototypes, NFD) over the 13.0 data", () => {
  assert.equal(CONFUSABLES_VERSION, "13.0.0");
  // Cyrillic and Greek letters that look Latin map to the Latin prototype.
  const prototypes: [string, string][] = [
    ["\u0430", "a"],
    ["\u0435", "e"],
    ["\u043E", "o"],
    ["\u0440", "p"],
    ["\u0441", "c"],
    ["\u0445", "x"],
    ["\u0443", "y"],
    ["\u0456", "i"],
    ["\u0458", "j"],
    ["\u0455", "s"],
    ["\u0501", "d"],
    ["\u04BB", "h"],
    ["\u0410", "A"],
    ["\u0412", "B"],
    ["\u041C", "M"],
    ["\u0422", "T"],
    ["\u03B1", "a"],
    ["\u03BF", "o"],
    ["\u03B9", "i"],
    ["\u03C1", "p"],
    ["\u03BD", "v"],
    ["\u0391", "A"],
    ["\u0392", "B"],
    ["\u0395", "E"],
    ["\u039A", "K"],
    ["\u039D", "N"],
    ["\u039F", "O"],
    ["\u03A1", "P"],
    ["\u03A4", "T"],
    ["1", "l"],
    ["I", "l"],
    ["0", "O"],
    ["m", "rn"],
  ];
  for (const [source, prototype] of prototypes) {
    assert.equal(skeleton(source), prototype, `${hex(source)} → ${prototype}`);
  }
  // NFD first: a precomposed letter maps through its base letter and mark.
  assert.equal(skeleton("\u04D1"), skeleton("\u0430\u0306"), "Cyrillic ӑ = а + breve");
  assert.equal(skeleton("\u04D1"), "a\u0306");
  // NFD again at the end: η's prototype is n + U+0329 (class 220), which the following U+0334
  // (class 1) must come before.
  assert.equal(skeleton("\u03B7\u0334"), "n\u0334\u0329");
  // Default-ignorable code points are dropped.
  assert.equal(skeleton("al\u00ADice"), "alice");
  // Prototypes are fixed points, so skeletons are stable.
  for (const text of ["alice", "\u0430lice", "Tom", "\u03BDictor", "mary", "\u5F20\u4F1F"]) {
    assert.equal(skeleton(skeleton(text)), skeleton(text), text);
  }
});

Deno.test("names: over real sockets, a look-alike of an online name is name_taken", async () => {
  await using server = startServer();
  const watcher = await server.user("watcher", "room");
  const alice = await server.user("alice", "room");
  await watcher.nextOf("presence");
  const mallory = await server.connect();
  mallory.send({ type: "login", name: "\u0430lice", ref: 1 });
  const taken = await mallory.next();
  assert.equal(taken.type, "error");
  assert.equal(taken.code, "name_taken");
  assert.equal(taken.ref, 1);
  mallory.send({ type: "login", name: "alice\u034F", ref: 2 });
  const invisible = await mallory.next();
  assert.equal(invisible.code, "invalid_name", "an invisible mark is refused, not taken");
  mallory.send({ type: "login", name: "\u3164", ref: 3 });
  assert.equal((await mallory.next()).code, "invalid_name", "a Hangul filler alone");
  mallory.send({ type: "login", name: "\u0422om", ref: 4 });
  assert.equal((await mallory.next()).type, "welcome", "no Tom online: a Cyrillic Т is a name");
  const tom = await server.connect();
  tom.send({ type: "login", name: "Tom" });
  assert.equal((await tom.next()).code, "name_taken", "and it blocks the Latin one in turn");
  // Once alice is gone (her presence leave is sent after her name is freed), the look-alike is
  // free, and shown as typed.
  await alice.close();
  assert.deepEqual(await watcher.nextOf("presence"), {
    type: "presence",
    channel: "room",
    event: "leave",
    name: "alice",
  });
  const other = await server.connect();
  other.send({ type: "login", name: "\u0430lice" });
  assert.deepEqual(await other.next(), { type: "welcome", name: "\u0430lice" });
});

Deno.test("names: a token's name claim follows the same rules", async () => {
  const secret = "names-test-secret-0123456789abcdef";
  const key = new TextEncoder().encode(secret);
  const sign = (claims: jose.JWTPayload) =>
    new jose.SignJWT({ exp: Math.floor(Date.now() / 1000) + 600, ...claims })
      .setProtectedHeader({ alg: "HS256" })
      .sign(key);
  await using server = startServer({ jwtSecret: secret });
  const alice = await server.connect();
  alice.send({ type: "login", token: await sign({ name: "alice" }) });
  assert.equal((await alice.next()).type, "welcome");
  const cases: [string, jose.JWTPayload, string][] = [
    ["an invisible mark in name", { name: "alice\u034F" }, "invalid_name"],
    ["a Hangul filler as sub", { sub: "\u3164" }, "invalid_name"],
    ["a bidi override", { name: "\u202Eecila" }, "invalid_name"],
    ["a look-alike of an online name", { name: "\u0430lice" }, "name_taken"],
  ];
  for (const [what, claims, code] of cases) {
    const client = await server.connect();
    client.send({ type: "login", token: await sign(claims), ref: what });
    const reply = await client.next();
    assert.equal(reply.type, "error", what);
    assert.equal(reply.code, code, what);
    assert.equal(reply.ref, what);
    await client.close();
  }
});

Deno.test("names: in a cluster, a lowercase look-alike held on another node is name_taken", async () => {
  const cluster = createMemoryCluster();
  await using a = startServer({}, { engine: cluster.engine(), nodeId: "a" });
  await using b = startServer({}, { engine: cluster.engine(), nodeId: "b" });
  await a.user("alice");
  const mallory = await b.connect();
  for (const name of ["\u0430lice", "a1ice", "ALICE"]) {
    mallory.send({ type: "login", name, ref: name });
    const reply = await mallory.next();
    assert.equal(reply.code, "name_taken", `${name}: ${JSON.stringify(reply)}`);
    assert.equal(reply.ref, name);
  }
});
