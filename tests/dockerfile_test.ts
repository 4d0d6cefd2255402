/**
 * The Dockerfile, checked without Docker: its build stage's first COPY set
 * and `deno install` step are replayed in a temporary directory (so the
 * image cannot drift from the lockfile again), its later COPYs must hold
 * everything `main.ts` imports, and the runtime stage must health-check
 * with the binary itself.
 */
import assert from "node:assert/strict";

const ROOT = new URL("../", import.meta.url);

/** One Dockerfile instruction: its keyword (upper case) and the rest of its line. */
interface Instruction {
  keyword: string;
  args: string;
}

/** One stage: its `FROM` arguments and the instructions that follow. */
interface Stage {
  from: string;
  instructions: Instruction[];
}

/** Parses a Dockerfile into stages, joining `\` continuations and dropping comments. */
function parseDockerfile(text: string): Stage[] {
  const stages: Stage[] = [];
  let logical = "";
  const lines = text.split("\n");
  for (const [i, raw] of lines.entries()) {
    const line = raw.trim();
    if (line.startsWith("#") && logical === "") continue;
    if (line.startsWith("#")) continue; // comments inside a continued instruction
    if (line.endsWith("\\")) {
      logical += line.slice(0, -1) + " ";
      if (i < lines.length - 1) continue;
    } else logical += line;
    const statement = logical.trim();
    logical = "";
    if (statement === "") continue;
    const [keyword, ...rest] = statement.split(/\s+/);
    const instruction = { keyword: keyword.toUpperCase(), args: rest.join(" ") };
    if (instruction.keyword === "FROM") stages.push({ from: instruction.args, instructions: [] });
    else {
      assert.ok(stages.length > 0, `${keyword} before any FROM`);
      stages.at(-1)!.instructions.push(instruction);
    }
  }
  return stages;
}

/** A COPY's sources and destination, its --flags set apart. */
function copyArgs(args: string): { flags: string[]; sources: string[]; dest: string } {
  const words = args.trim().startsWith("[")
    ? JSON.parse(args) as string[]
    : args.split(/\s+/).filter(Boolean);
  const flags = words.filter((word) => word.startsWith("--"));
  const paths = words.filter((word) => !word.startsWith("--"));
  return { flags, sources: paths.slice(0, -1), dest: paths.at(-1)! };
}

/** The stage named `build`, or the first one. */
function buildStage(stages: Stage[]): Stage {
  return stages.find((stage) => /\bAS\s+build$/i.test(stage.from)) ?? stages[0];
}

/** Copies `source` (a file or a directory, relative to the repository) to `dest`. */
async function copyPath(source: string, dest: string): Promise<void> {
  const from = new URL(source, ROOT).pathname;
  const info = await Deno.stat(from);
  if (info.isFile) {
    await Deno.mkdir(dest.slice(0, dest.lastIndexOf("/")), { recursive: true });
    await Deno.copyFile(from, dest);
    return;
  }
  await Deno.mkdir(dest, { recursive: true });
  for await (const entry of Deno.readDir(from)) {
    await copyPath(`${source.replace(/\/$/, "")}/${entry.name}`, `${dest}/${entry.name}`);
  }
}

/** Replays one COPY from the build context into `dir`, the stage's WORKDIR. */
async function replayCopy(args: string, dir: string): Promise<string[]> {
  const { flags, sources, dest } = copyArgs(args);
  assert.ok(!flags.some((flag) => flag.startsWith("--from")), `COPY ${args} is from another stage`);
  const target = dest.startsWith("/") ? dest : `${dir}/${dest}`;
  for (const source of sources) {
    const into = dest.endsWith("/") || sources.length > 1
      ? `${target.replace(/\/$/, "")}/${source.split("/").at(-1)}`
      : target;
    await copyPath(source, into);
  }
  return sources;
}

/** Runs a shell-form RUN command in `dir`; its exit code and output. */
async function run(command: string, dir: string): Promise<{ code: number; output: string }> {
  const result = await new Deno.Command("sh", {
    args: ["-c", command],
    cwd: dir,
    // The image's `deno` is this one's version; the default cache serves what was fetched before.
    env: { PATH: `${Deno.execPath().replace(/\/[^/]+$/, "")}:${Deno.env.get("PATH") ?? ""}` },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
  return { code: result.code, output: decode(result.stdout) + decode(result.stderr) };
}

/**
 * Replays the build stage up to and including its `deno install` step in a
 * temporary directory: the COPYs before it, then the step itself.
 */
async function replayInstall(dockerfile: string): Promise<
  { code: number; output: string; copied: string[]; lockChanged: boolean }
> {
  const stage = buildStage(parseDockerfile(dockerfile));
  const installAt = stage.instructions.findIndex((instruction) =>
    instruction.keyword === "RUN" && /\bdeno install\b/.test(instruction.args)
  );
  assert.ok(installAt >= 0, "the build stage has no `deno install` step");
  const dir = await Deno.makeTempDir({ prefix: "hubbub-docker-" });
  try {
    const copied: string[] = [];
    for (const { keyword, args } of stage.instructions.slice(0, installAt)) {
      if (keyword === "COPY") copied.push(...await replayCopy(args, dir));
      else assert.ok(["WORKDIR", "ENV", "ARG"].includes(keyword), `${keyword} before the install`);
    }
    const { code, output } = await run(stage.instructions[installAt].args, dir);
    const lock = await Deno.readTextFile(`${dir}/deno.lock`).catch(() => "");
    const lockChanged = lock !== await Deno.readTextFile(new URL("deno.lock", ROOT));
    return { code, output, copied, lockChanged };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const dockerfile = await Deno.readTextFile(new URL("Dockerfile", ROOT));

Deno.test("dockerfile: the build stage's first COPY set installs with the lockfile as it is", async () => {
  const { code, output, copied, lockChanged } = await replayInstall(dockerfile);
  assert.equal(code, 0, output);
  assert.ok(!lockChanged, "deno install changed deno.lock");
  // Only manifests before the install, so a code change reuses the dependency layer.
  for (const source of copied) {
    assert.match(source, /^(deno\.json|deno\.lock|package\.json)$/, `${source} before the install`);
  }
});

Deno.test("dockerfile: the replay fails on a build stage that leaves out package.json", async () => {
  // The build stage as it was when `docker build` failed: the check must catch it.
  const old = [
    "FROM denoland/deno:2.9.6 AS build",
    "WORKDIR /src",
    "COPY deno.json deno.lock ./",
    "RUN deno install --frozen",
  ].join("\n");
  const { code, output } = await replayInstall(old);
  assert.notEqual(code, 0);
  assert.match(output, /lockfile is out of date/);
});

Deno.test("dockerfile: the build stage copies everything main.ts imports, and nothing ignored", async () => {
  const stage = buildStage(parseDockerfile(dockerfile));
  const ignored = (await Deno.readTextFile(new URL(".dockerignore", ROOT)))
    .split("\n").map((line) => line.trim().replace(/\/$/, "")).filter((line) =>
      line !== "" && !line.startsWith("#")
    );
  const dir = await Deno.makeTempDir({ prefix: "hubbub-docker-" });
  try {
    for (const { keyword, args } of stage.instructions) {
      if (keyword !== "COPY") continue;
      for (const source of copyArgs(args).sources) {
        assert.ok(
          !ignored.some((pattern) => source === pattern || source.startsWith(`${pattern}/`)),
          `${source} is in .dockerignore`,
        );
      }
      await replayCopy(args, dir);
    }
    // Resolves the whole module graph (offline, from the cache): a file left out fails it.
    const { code, output } = await run("deno cache --frozen main.ts", dir);
    assert.equal(code, 0, output);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("dockerfile: the image health-checks with the binary's --healthcheck and keeps /data", () => {
  const stages = parseDockerfile(dockerfile);
  const runtime = stages.at(-1)!;
  const find = (keyword: string) =>
    runtime.instructions.filter((instruction) => instruction.keyword === keyword);
  const [healthcheck] = find("HEALTHCHECK");
  assert.ok(healthcheck, "no HEALTHCHECK");
  const command = JSON.parse(healthcheck.args.slice(healthcheck.args.indexOf("CMD ") + 4));
  const [entrypoint] = find("ENTRYPOINT").map(({ args }) => JSON.parse(args) as string[]);
  assert.deepEqual(command, [entrypoint[0], "--healthcheck"]);
  assert.deepEqual(find("VOLUME").map(({ args }) => args), ["/data"]);
  assert.deepEqual(find("USER").map(({ args }) => args), ["nonroot"]);
  const data = find("COPY").map(({ args }) => copyArgs(args)).find(({ dest }) => dest === "/data");
  assert.ok(data?.flags.includes("--chown=65532:65532"), "/data is not owned by nonroot");
});
