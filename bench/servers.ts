/**
 * The servers under test, hubbub on Deno and on Bun and the reference
 * servers: which can run here, and starting, pinning and stopping them.
 *
 * @module
 */
import { progress } from "./format.ts";
import { BENCH, ONLY_TARGETS, ROOT } from "./options.ts";
import { Lines, output, pinned } from "./processes.ts";

/** Limits lifted so that hubbub measures fan-out, not its own protections. */
const HUBBUB_FLAGS = [
  ...["--connect-rate", "1000000", "--max-connections", "200000"],
  ...["--max-connections-per-ip", "200000", "--rate-limit", "1000000"],
  ...["--rate-burst", "1000000", "--max-channel-members", "200000"],
  ...["--login-timeout", "600", "--port", "0", "--hostname", "127.0.0.1"],
];

/** A server under test and how to start it. */
export interface Target {
  id: string;
  label: string;
  /**
   * `native`: hubbub's protocol; `room`: the references' `/?room=R`
   * echo-to-room; `wsify`: hubbub's wsify dialect, one frame per message.
   */
  protocol: "native" | "room" | "wsify";
  /** The scenarios it runs, when not all. */
  scenarios?: string[];
  path: string;
  command: string[];
  /** Why it cannot run here, if it cannot. */
  unavailable?: string;
}

/** A started server. */
export interface Server {
  target: Target;
  child: Deno.ChildProcess;
  /** The process doing the serving (not a wrapper). */
  pid: number;
  port: number;
  stderr: Lines;
}

/** Starts a target pinned to core 0 and waits until it says where it listens. */
export async function startServer(target: Target): Promise<Server> {
  const { cmd, args } = pinned(0, target.command);
  const child = new Deno.Command(cmd, {
    args,
    cwd: ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stdout = new Lines(child.stdout);
  const stderr = new Lines(child.stderr);
  const deadline = Date.now() + 20_000;
  for (;;) {
    let line: string | null;
    try {
      line = await stdout.next(Math.max(1, deadline - Date.now()));
    } catch {
      line = null;
    }
    if (line === null) {
      try {
        child.kill("SIGKILL");
      } catch { /* exited */ }
      await child.status;
      throw new Error(
        `${target.label} did not say it listens:\n${[...stdout.tail, ...stderr.tail].join("\n")}`,
      );
    }
    const match = /listening on http:\/\/(\S+?):(\d+)\//.exec(line);
    if (match) {
      // Keep reading stdout so that a chatty server never blocks on a full pipe.
      (async () => {
        while (await stdout.next(1e9).catch(() => null) !== null);
      })();
      return {
        target,
        child,
        pid: leafPid(child.pid),
        port: Number(match[2]),
        stderr,
      };
    }
  }
}

/** The process under wrappers such as npx: follow only children down to the last. */
function leafPid(pid: number): number {
  for (let depth = 0; depth < 5; depth++) {
    let children: string[];
    try {
      children = Deno.readTextFileSync(`/proc/${pid}/task/${pid}/children`)
        .trim().split(/\s+/)
        .filter(Boolean);
    } catch {
      return pid;
    }
    if (children.length !== 1) return pid;
    pid = Number(children[0]);
  }
  return pid;
}

/** Kills a server and waits for it to exit. */
export async function stopServer(server: Server) {
  try {
    server.child.kill("SIGKILL");
  } catch {
    // Already gone.
  }
  await server.child.status;
}

/** The targets of this run, with the reason any of them cannot run here. */
export async function prepareTargets(): Promise<Target[]> {
  const deno = Deno.execPath();
  const bun = await output("bun", ["--version"]) !== null ? "bun" : null;
  const targets: Target[] = [
    {
      id: "hubbub-deno",
      label: "hubbub on Deno",
      protocol: "native",
      path: "/ws",
      command: [
        deno,
        "run",
        "--allow-net",
        "--allow-env",
        "main.ts",
        ...HUBBUB_FLAGS,
      ],
    },
    {
      id: "hubbub-bun",
      label: "hubbub on Bun",
      protocol: "native",
      path: "/ws",
      command: ["bun", "main.ts", ...HUBBUB_FLAGS],
      unavailable: bun ? undefined : "bun is not installed (npm install -g bun@1.4.5)",
    },
    {
      id: "ref-bun",
      label: "Bun server.publish (reference)",
      protocol: "room",
      path: "/",
      command: ["bun", `${BENCH}ref_bun_publish.ts`],
      unavailable: bun ? undefined : "bun is not installed (npm install -g bun@1.4.5)",
    },
    {
      id: "ref-node",
      label: "Node ws (reference)",
      protocol: "room",
      path: "/",
      command: ["node", `${BENCH}ref_node_ws.mjs`],
    },
    {
      id: "ref-deno",
      label: "Deno naive (reference)",
      protocol: "room",
      path: "/",
      command: [deno, "run", "--allow-net", `${BENCH}ref_deno_naive.ts`],
    },
    {
      // Dialect clients get one WebSocket frame per message, as the references' clients do.
      id: "hubbub-bun-wsify",
      label: "hubbub on Bun, wsify dialect",
      protocol: "wsify",
      path: "/compat/wsify/ws",
      command: ["bun", "main.ts", ...HUBBUB_FLAGS],
      scenarios: ["one-room-1k"],
      unavailable: bun ? undefined : "bun is not installed (npm install -g bun@1.4.5)",
    },
  ];
  // The Node reference needs ws; hubbub on Bun needs the npm packages it imports.
  if (!exists(`${BENCH}node/node_modules/ws/package.json`)) {
    progress("installing ws for the Node reference (npm ci --prefix bench/node)");
    const args = ["ci", "--prefix", `${BENCH}node`, "--no-audit", "--no-fund"];
    if (await output("npm", args) === null) {
      targets[3].unavailable = "npm ci --prefix bench/node failed";
    }
  }
  if (bun && !exists(`${ROOT}node_modules/zod/package.json`)) {
    progress(
      "installing hubbub's packages for Bun (bun install --frozen-lockfile)",
    );
    await output("bun", ["install", "--frozen-lockfile"]);
  }
  // hubbub on Bun is new: run it only once it starts and says it listens.
  if (bun) {
    try {
      await stopServer(await startServer(targets[1]));
    } catch (error) {
      targets[1].unavailable = `\`bun main.ts\` does not start yet: ${
        (error as Error).message.split("\n").slice(-3).join(" ")
      }`;
    }
  }
  return targets.filter((t) => !ONLY_TARGETS || ONLY_TARGETS.includes(t.id));
}

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}
