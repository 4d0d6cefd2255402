/**
 * The layout's rules, read from the import statements of every file in
 * `lib/`: imports point one way, runtime → app → (http, dialects, delivery,
 * cluster, store, auth) → core, and nothing in `lib/` imports itself in a circle.
 * docs/architecture.md draws the same picture.
 */
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, normalize } from "node:path";

const ROOT = new URL("../", import.meta.url).pathname;

/** The layers below the composition: each may import only the core and the layers listed. */
const LAYERS = ["core", "delivery", "cluster", "store", "auth", "dialects", "http"] as const;

/** Files of the composition that no layer may import (the layers are what they compose). */
const COMPOSITION = ["lib/app.ts", "lib/config.ts", "lib/startup.ts", "main.ts"];
const COMPOSITION_DIRS = ["lib/app/", "lib/runtime/"];

/** Shared leaves at the top of `lib/` that layers may record into: they import only the core. */
const LEAVES = ["lib/log.ts", "lib/metrics.ts"];

/** Every `.ts` file under `dir`, as a path from the repository root. */
function tsFiles(dir: string): string[] {
  return readdirSync(join(ROOT, dir)).flatMap((name) => {
    const path = `${dir}/${name}`;
    if (statSync(join(ROOT, path)).isDirectory()) return tsFiles(path);
    return path.endsWith(".ts") ? [path] : [];
  });
}

/**
 * The module specifiers a file imports: static `import … from`, `export … from`,
 * side-effect `import "…"` and `import("…")`. Statements are matched at the start of a
 * line, so an `import` in a JSDoc example (`* import …`) is not one.
 */
export function importSpecifiers(source: string): string[] {
  const patterns = [
    /^\s*import\s+(?:type\s+)?[^;"'`]*?\bfrom\s*["']([^"']+)["']/gm,
    /^\s*export\s+(?:type\s+)?(?:\*|\{[^}]*\})\s*from\s*["']([^"']+)["']/gm,
    /^\s*import\s*["']([^"']+)["']/gm,
    /^[^*\n]*?\bimport\(\s*["']([^"']+)["']\s*\)/gm,
  ];
  return patterns.flatMap((pattern) => [...source.matchAll(pattern)].map((match) => match[1]));
}

/** Each lib file → the repository paths of the files it imports (packages left out). */
function importGraph(): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  for (const file of tsFiles("lib")) {
    const targets = importSpecifiers(readFileSync(join(ROOT, file), "utf8"))
      .filter((specifier) => specifier.startsWith("."))
      .map((specifier) => normalize(join(dirname(file), specifier)));
    graph.set(file, targets);
  }
  return graph;
}

/** The layer a file belongs to: its folder under `lib/`, or null for the top of `lib/`. */
function layerOf(file: string): string | null {
  const match = /^lib\/([^/]+)\//.exec(file);
  return match === null ? null : match[1];
}

/** Every cycle's path (one per strongly connected set found), as "a → b → a". */
function cycles(graph: Map<string, string[]>): string[] {
  const found: string[] = [];
  const state = new Map<string, "open" | "done">();
  const stack: string[] = [];
  const visit = (node: string) => {
    state.set(node, "open");
    stack.push(node);
    for (const next of graph.get(node) ?? []) {
      if (!graph.has(next)) continue;
      if (state.get(next) === "open") {
        found.push([...stack.slice(stack.indexOf(next)), next].join(" → "));
      } else if (state.get(next) === undefined) visit(next);
    }
    stack.pop();
    state.set(node, "done");
  };
  for (const node of [...graph.keys()].sort()) if (!state.has(node)) visit(node);
  return found;
}

Deno.test("architecture: the import reader finds statements and skips examples in comments", () => {
  const source = [
    "/**",
    " * @example",
    ' * import { x } from "./example.ts";',
    " */",
    'import { a } from "./a.ts";',
    "import type {",
    "  B,",
    '} from "../b.ts";',
    'export { c } from "./c.ts";',
    'export type * from "./d.ts";',
    'import "./e.ts";',
    'import f from "./f.html" with { type: "text" };',
    'const g = await import("./g.ts");',
    'import { z } from "zod";',
  ].join("\n");
  assert.deepEqual(importSpecifiers(source).sort(), [
    "../b.ts",
    "./a.ts",
    "./c.ts",
    "./d.ts",
    "./e.ts",
    "./f.html",
    "./g.ts",
    "zod",
  ]);
});

Deno.test("architecture: every import in lib/ names a file that exists", () => {
  const graph = importGraph();
  const missing = [...graph].flatMap(([file, targets]) =>
    targets.filter((target) => !existsSync(join(ROOT, target))).map((t) => `${file} → ${t}`)
  );
  assert.deepEqual(missing, []);
  // The reader sees the composition's imports: a reader that finds nothing passes nothing.
  assert.ok(graph.get("lib/app.ts")!.some((target) => target.startsWith("lib/core/")));
});

Deno.test("architecture: no import cycle in lib/", () => {
  assert.deepEqual(cycles(importGraph()), []);
});

Deno.test("architecture: no cycle between the folders of lib/", () => {
  const folders = new Map<string, string[]>();
  for (const [file, targets] of importGraph()) {
    const from = layerOf(file);
    if (from === null) continue;
    const to = targets.map(layerOf).filter((layer): layer is string =>
      layer !== null && layer !== from
    );
    folders.set(from, [...new Set([...(folders.get(from) ?? []), ...to])]);
  }
  assert.deepEqual(cycles(folders), []);
});

Deno.test("architecture: the core imports only the core and packages", () => {
  const outside = [...importGraph()]
    .filter(([file]) => layerOf(file) === "core")
    .flatMap(([file, targets]) =>
      targets.filter((target) => layerOf(target) !== "core").map((t) => `${file} → ${t}`)
    );
  assert.deepEqual(outside, []);
});

Deno.test("architecture: the shared leaves (log, metrics) import only the core", () => {
  const graph = importGraph();
  const outside = LEAVES.flatMap((file) =>
    graph.get(file)!.filter((target) => layerOf(target) !== "core").map((t) => `${file} → ${t}`)
  );
  assert.deepEqual(outside, []);
});

Deno.test("architecture: no layer imports the composition or a runtime", () => {
  const upward = [...importGraph()]
    .filter(([file]) => (LAYERS as readonly string[]).includes(layerOf(file) ?? ""))
    .flatMap(([file, targets]) =>
      targets
        .filter((target) =>
          COMPOSITION.includes(target) || COMPOSITION_DIRS.some((dir) => target.startsWith(dir)) ||
          (layerOf(target) === null && !LEAVES.includes(target) && target.startsWith("lib/"))
        )
        .map((target) => `${file} → ${target}`)
    );
  assert.deepEqual(upward, []);
});

Deno.test("architecture: the store imports only the core, itself and packages", () => {
  const graph = importGraph();
  const files = [...graph.keys()].filter((file) => layerOf(file) === "store");
  const outside = files.flatMap((file) =>
    graph.get(file)!.filter((target) => !["core", "store"].includes(layerOf(target) ?? ""))
      .map((t) => `${file} → ${t}`)
  );
  assert.deepEqual(outside, []);
  // A reader that finds no store file passes nothing.
  assert.ok(files.includes("lib/store/store.ts"));
});
