/**
 * Builds the client library (`client/*.ts`) into one JavaScript module and
 * its type declarations with `deno bundle` (esbuild inside Deno; no npm
 * dependency), as the npm package `@hubbub/client` in `client/dist/`
 * (`mod.js`, `mod.d.ts`, `package.json`, `README.md`, `LICENSE`), and the same
 * module as `static/client.js`, which the server embeds and serves at
 * `/client.js` for the browser client.
 *
 * ```sh
 * deno task client:build && npm pack ./client/dist
 * ```
 *
 * The package.json is written here rather than kept in `client/`: a
 * package.json there would make Deno format and lint `client/` with its
 * defaults instead of the repository's settings.
 *
 * @module
 */
import { VERSION } from "../lib/version.ts";

const ROOT = new URL("../", import.meta.url);

/** The npm package's manifest; its version is hubbub's. */
export const PACKAGE_JSON = {
  name: "@hubbub/client",
  version: VERSION,
  description:
    "Client for hubbub chat servers (browsers, Deno, Bun, Node): history, recovery after drops, acknowledged sends",
  license: "MIT",
  type: "module",
  main: "./mod.js",
  types: "./mod.d.ts",
  exports: { ".": { types: "./mod.d.ts", default: "./mod.js" } },
  files: ["mod.js", "mod.d.ts"],
  sideEffects: false,
  keywords: ["hubbub", "chat", "websocket", "client"],
};

/** The built files' contents. */
export interface ClientBuild {
  js: string;
  dts: string;
}

/** The lines every built file starts with: generated code is neither formatted nor linted. */
export const BANNER = [
  "// deno-fmt-ignore-file",
  "// deno-lint-ignore-file",
  `// @hubbub/client ${VERSION}, built from client/*.ts by \`deno task client:build\`: edit those, not this.`,
  "",
].join("\n");

/**
 * Writes the npm package into `outDir`: the bundle of `client/mod.ts` (`mod.js`,
 * `mod.d.ts`), `package.json`, `README.md` and `LICENSE`; resolves with the bundle.
 */
export async function buildClient(outDir: string): Promise<ClientBuild> {
  const scratch = await Deno.makeTempDir({ prefix: "hubbub-client-" });
  try {
    const { code, stderr } = await new Deno.Command(Deno.execPath(), {
      args: [
        "bundle",
        "--quiet",
        "--no-config",
        "--platform=browser",
        "--format=esm",
        "--declaration",
        "--output",
        `${scratch}/mod.js`,
        new URL("client/mod.ts", ROOT).pathname,
      ],
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).output();
    if (code !== 0) {
      throw new Error(`deno bundle failed (exit ${code}): ${new TextDecoder().decode(stderr)}`);
    }
    const build = {
      js: BANNER + await Deno.readTextFile(`${scratch}/mod.js`),
      dts: BANNER + await Deno.readTextFile(`${scratch}/mod.d.ts`),
    };
    await Deno.mkdir(outDir, { recursive: true });
    await Deno.writeTextFile(`${outDir}/mod.js`, build.js);
    await Deno.writeTextFile(`${outDir}/mod.d.ts`, build.dts);
    await Deno.writeTextFile(
      `${outDir}/package.json`,
      JSON.stringify(PACKAGE_JSON, null, 2) + "\n",
    );
    await Deno.copyFile(new URL("client/README.md", ROOT), `${outDir}/README.md`);
    await Deno.copyFile(new URL("LICENSE", ROOT), `${outDir}/LICENSE`);
    return build;
  } finally {
    await Deno.remove(scratch, { recursive: true });
  }
}

if (import.meta.main) {
  const outDir = new URL("client/dist", ROOT).pathname;
  const build = await buildClient(outDir);
  const browser = new URL("static/client.js", ROOT).pathname;
  await Deno.writeTextFile(browser, build.js);
  console.log(`Built the npm package in ${outDir} (npm pack ./client/dist) and ${browser}`);
}
