import assert from "node:assert/strict";
import { parseClientFrame } from "../../lib/core/parse.ts";
import { clientCommandSchemas } from "../../lib/core/protocol.ts";
import { updateProtocolDocument } from "../../tools/protocol_doc.ts";

const schemas = clientCommandSchemas(100);
const codeOf = (text: string) => {
  const parsed = parseClientFrame(text, schemas);
  return parsed.ok ? "ok" : parsed.code;
};

Deno.test("parse: hostile and malformed frames become error codes", async (t) => {
  const cases: [string, string, string][] = [
    ["empty", "", "bad_json"],
    ["truncated", '{"type":"ping"', "bad_json"],
    ["null", "null", "bad_request"],
    ["number", "42", "bad_request"],
    ["string", '"ping"', "bad_request"],
    ["array", '[{"type":"ping"}]', "bad_request"],
    ["type not a string", '{"type":1}', "bad_request"],
    ["type is a prototype key", '{"type":"toString"}', "unknown_type"],
    ["type is __proto__", '{"type":"__proto__"}', "unknown_type"],
    ["__proto__ field", '{"type":"ping","__proto__":{"admin":true}}', "bad_request"],
    ["constructor field", '{"type":"ping","constructor":{}}', "bad_request"],
    ["depth bomb", `{"type":"ping","x":${"[".repeat(50000)}${"]".repeat(50000)}}`, "bad_request"],
    [
      "deep in a field",
      `{"type":"login","name":${"[".repeat(5000)}${"]".repeat(5000)}}`,
      "bad_request",
    ],
    ["huge name", JSON.stringify({ type: "login", name: "a".repeat(1_000_000) }), "invalid_name"],
    ["html name", JSON.stringify({ type: "login", name: "<b>x</b>" }), "invalid_name"],
    ["empty name", JSON.stringify({ type: "login", name: "" }), "invalid_name"],
    ["33-letter name", JSON.stringify({ type: "login", name: "a".repeat(33) }), "invalid_name"],
    ["channel with space", JSON.stringify({ type: "join", channel: "a b" }), "invalid_channel"],
    [
      "65-char channel",
      JSON.stringify({ type: "join", channel: "c".repeat(65) }),
      "invalid_channel",
    ],
    ["empty text", JSON.stringify({ type: "broadcast", channel: "c", text: "" }), "bad_request"],
    [
      "long text",
      JSON.stringify({ type: "broadcast", channel: "c", text: "t".repeat(101) }),
      "too_large",
    ],
    ["bad ref", JSON.stringify({ type: "ping", ref: { a: 1 } }), "bad_request"],
    [
      "lone surrogate text is text",
      JSON.stringify({ type: "broadcast", channel: "c", text: "\ud800" }),
      "ok",
    ],
    ["32-letter unicode name", JSON.stringify({ type: "login", name: "ä".repeat(32) }), "ok"],
  ];
  for (const [name, text, code] of cases) {
    await t.step(name, () => assert.equal(codeOf(text), code));
  }
});

Deno.test("parse: a valid ref is echoed on errors, an invalid one is not", () => {
  const withRef = parseClientFrame('{"type":"nope","ref":"r1"}', schemas);
  assert.ok(!withRef.ok && withRef.ref === "r1");
  const badRef = parseClientFrame(`{"type":"nope","ref":"${"r".repeat(200)}"}`, schemas);
  assert.ok(!badRef.ok && badRef.ref === undefined);
});

Deno.test("parse: a valid command comes back typed and without extras", () => {
  assert.deepEqual(parseClientFrame('{"type":"join","channel":"a:b","ref":2}', schemas), {
    ok: true,
    command: { type: "join", channel: "a:b", ref: 2 },
  });
});

Deno.test("protocol: PROTOCOL.md matches the schemas (run `deno task docs` when this fails)", async () => {
  const document = await Deno.readTextFile(new URL("../../PROTOCOL.md", import.meta.url));
  assert.equal(updateProtocolDocument(document, 4096), document);
});
