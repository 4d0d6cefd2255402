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
  await aptGet(["update", "-q"]);
  await aptGet(["install", "-y", "-q", "--no-install-recommends", ...packages]);
}

/**
 * Runs apt-get, waiting up to `LOCK_WAIT_MS` for another apt-get or dpkg to finish first. The
 * dpkg lock is waited for by apt-get itself (`DPkg::Lock::Timeout`), but apt 2.6 (Debian 12)
 * fails at once on the package lists' and the archives' locks (`apt-get update` ignores that
 * option), so a run refused a lock is tried again.
 */
async function aptGet(args: string[]): Promise<void> {
  const LOCK_WAIT_MS = 600_000;
  const RETRY_MS = 5_000;
  const deadline = Date.now() + LOCK_WAIT_MS;
  for (;;) {
    const child = new Deno.Command("apt-get", {
      args: ["-o", `DPkg::Lock::Timeout=${LOCK_WAIT_MS / 1000}`, ...args],
      env: { DEBIAN_FRONTEND: "noninteractive" },
      stdin: "null",
      stdout: "inherit",
      stderr: "piped",
    }).spawn();
    // Passed through as it comes, and kept to tell a lock refusal from any other failure.
    let stderr = "";
    const decoder = new TextDecoder();
    for await (const chunk of child.stderr) {
      for (let n = 0; n < chunk.length;) n += await Deno.stderr.write(chunk.subarray(n));
      stderr += decoder.decode(chunk, { stream: true });
    }
    const { code } = await child.status;
    if (code === 0) return;
    const locked = /Could not get lock|Unable to lock/.test(stderr);
    if (!locked || Date.now() + RETRY_MS > deadline) Deno.exit(code);
    console.error(`Another apt-get holds a lock; trying again in ${RETRY_MS / 1000} s…`);
    await new Promise((resolve) => setTimeout(resolve, RETRY_MS));
  }
}
