import assert from "node:assert/strict";
import { foldName } from "../../lib/core/names.ts";
import {
  claimName,
  createRegistry,
  holderOf,
  ownerOf,
  releaseName,
} from "../../lib/core/registry.ts";

Deno.test("registry: a released name can be claimed by someone else", () => {
  const registry = createRegistry();
  assert.ok(claimName(registry, "Alice", 1));
  assert.equal(claimName(registry, "alice", 2), false);
  releaseName(registry, 1);
  assert.ok(claimName(registry, "alice", 2));
  assert.equal(ownerOf(registry, "ALICE"), 2);
});

Deno.test("registry: names collide after NFKC and case folding", () => {
  assert.equal(foldName("Ａｌｉｃｅ"), foldName("alice"));
  assert.equal(foldName("ＢＯＢ"), "bob");
  const registry = createRegistry();
  assert.ok(claimName(registry, "ǅemal", 1));
  assert.equal(
    claimName(registry, "ǆemal", 2),
    false,
    "titlecase digraph folds like its lowercase",
  );
});

Deno.test("registry: a session holds one name at a time", () => {
  const registry = createRegistry();
  assert.ok(claimName(registry, "one", 1));
  assert.equal(claimName(registry, "two", 1), false);
  assert.equal(ownerOf(registry, "two"), undefined);
});

Deno.test("registry: releasing a session that holds nothing is harmless", () => {
  const registry = createRegistry();
  claimName(registry, "kept", 1);
  releaseName(registry, 2);
  assert.equal(ownerOf(registry, "kept"), 1);
});

Deno.test("registry: a look-alike of a held name cannot be claimed, and is free once released", () => {
  const registry = createRegistry();
  assert.ok(claimName(registry, "alice", 1));
  assert.equal(claimName(registry, "\u0430lice", 2), false, "Cyrillic а");
  assert.equal(holderOf(registry, "\u0430lice"), 1);
  assert.ok(claimName(registry, "Tom", 3));
  assert.equal(claimName(registry, "\u0422om", 4), false, "Cyrillic Т, alike only as a capital");
  releaseName(registry, 1);
  assert.equal(holderOf(registry, "alice"), undefined);
  assert.equal(registry.keys.size, registry.keysOf.get(3)!.length, "no key of alice is left");
  assert.ok(claimName(registry, "\u0430lice", 2));
});
