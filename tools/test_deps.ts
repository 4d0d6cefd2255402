/**
 * Makes sure what the test suite needs beyond Deno is on the machine:
 * Chromium for the browser test, redis-server for the cluster tests. On a Debian/Ubuntu machine where we are
 * root it installs the missing packages with apt-get; elsewhere it says
 * what to install and fails, so a missing dependency is never a skipped test.
 *
 * Run by `deno task test` before the tests.
 */

/** A system package a test needs: the file it provides and the package that provides it. */
const NEEDS = [
  {
    file: Deno.env.get("CHROMIUM_PATH") ?? "/usr/bin/chromium",
    pkg: "chromium",
    why: "the browser test",
  },
  {
    file: Deno.env.get("REDIS_SERVER_PATH") ?? "/usr/bin/redis-server",
    pkg: "redis-server",
    why: "the cluster tests",
  },
];

const exists = async (path: string) => {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
};

const missing = [];
for (const need of NEEDS) if (!(await exists(need.file))) missing.push(need);

if (missing.length > 0) {
  const packages = missing.map((need) => need.pkg);
  const canInstall = Deno.uid() === 0 && await exists("/usr/bin/apt-get");
  if (!canInstall) {
    for (const need of missing) console.error(`Missing ${need.file}, needed by ${need.why}.`);
    console.error(`Install it with: sudo apt-get install -y ${packages.join(" ")}`);
    Deno.exit(1);
  }
  console.error(`Installing ${packages.join(", ")} for the test suite (apt-get)…`);
  const run = async (args: string[]) => {
    const { code } = await new Deno.Command("apt-get", {
      args,
      env: { DEBIAN_FRONTEND: "noninteractive" },
      stdout: "inherit",
      stderr: "inherit",
    }).output();
    if (code !== 0) Deno.exit(code);
  };
  await run(["update", "-q"]);
  await run(["install", "-y", "-q", "--no-install-recommends", ...packages]);
}
