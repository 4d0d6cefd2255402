/**
 * Child processes: running a command for its output, pinning it to a core,
 * reading its output line by line.
 *
 * @module
 */
import { ROOT } from "./options.ts";

const decoder = new TextDecoder();

/** The trimmed stdout of a command, or null when it fails or cannot run. */
export async function output(
  command: string,
  args: string[],
  cwd = ROOT,
): Promise<string | null> {
  try {
    const result = await new Deno.Command(command, {
      args,
      cwd,
      stdout: "piped",
      stderr: "piped",
    })
      .output();
    return result.success ? decoder.decode(result.stdout).trim() : null;
  } catch {
    return null;
  }
}

/**
 * Runs `command` with the soft descriptor limit raised to the hard one, pinned to `core`
 * (or to a taskset core list such as "0-1").
 */
export function pinned(
  core: number | string,
  command: string[],
): { cmd: string; args: string[] } {
  return {
    cmd: "bash",
    args: [
      "-c",
      `ulimit -Sn "$(ulimit -Hn)"; exec taskset -c ${core} "$@"`,
      "bench",
      ...command,
    ],
  };
}

/** Lines of a child's output, as they come; the last ones are kept for error messages. */
export class Lines {
  readonly tail: string[] = [];
  #waiters: ((line: string | null) => void)[] = [];
  #queue: (string | null)[] = [];
  onLine?: (line: string) => boolean;

  constructor(stream: ReadableStream<Uint8Array>) {
    this.#pump(stream);
  }

  async #pump(stream: ReadableStream<Uint8Array>) {
    let rest = "";
    try {
      for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
        rest += chunk;
        let nl;
        while ((nl = rest.indexOf("\n")) >= 0) {
          this.#push(rest.slice(0, nl));
          rest = rest.slice(nl + 1);
        }
      }
    } catch {
      // The child is gone.
    }
    if (rest) this.#push(rest);
    this.#push(null);
  }

  #push(line: string | null) {
    if (line !== null) {
      this.tail.push(line);
      if (this.tail.length > 20) this.tail.shift();
      // A handler may consume a line (the generator's marks must be acted on at once).
      if (this.onLine?.(line)) return;
    }
    const waiter = this.#waiters.shift();
    if (waiter) waiter(line);
    else this.#queue.push(line);
  }

  /** The next line not consumed by `onLine`, or null at the end. */
  next(timeoutMs: number): Promise<string | null> {
    if (this.#queue.length > 0) return Promise.resolve(this.#queue.shift()!);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiters.splice(this.#waiters.indexOf(waiter), 1);
        reject(new Error(`no output for ${timeoutMs} ms`));
      }, timeoutMs);
      const waiter = (line: string | null) => {
        clearTimeout(timer);
        resolve(line);
      };
      this.#waiters.push(waiter);
    });
  }
}
