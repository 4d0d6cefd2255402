/**
 * Headless Chromium driven over the Chrome DevTools Protocol, on Deno's
 * built-in WebSocket. (playwright-core was tried first: it needs --allow-sys
 * as soon as it is imported, which `deno task test` does not grant.)
 *
 * Needs Chromium at /usr/bin/chromium (Debian: `apt-get install -y chromium`),
 * or wherever CHROMIUM_PATH points. Without it the tests fail on purpose:
 * CI installs it, so a missing browser is a broken setup, not a reason to skip.
 *
 * @module
 */
import assert from "node:assert/strict";
import { withTimeout } from "../_helpers.ts";
import { readUntil, terminate } from "./_process.ts";

const CHROMIUM = Deno.env.get("CHROMIUM_PATH") ?? "/usr/bin/chromium";
const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

/** Bound for every wait on a page and for each DevTools command. */
export const TIMEOUT_MS = 10_000;

/** Polls `probe` until its result deep-equals `expected`; the failure says what it last saw. */
export async function eventually<T>(
  who: string,
  what: string,
  probe: () => Promise<T>,
  expected: T,
  timeoutMs = TIMEOUT_MS,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (true) {
    try {
      last = await probe();
      assert.deepEqual(last, expected);
      return;
    } catch (err) {
      if (!(err instanceof assert.AssertionError)) last = err;
    }
    if (Date.now() > deadline) {
      const seen = last instanceof Error ? `error: ${last.message}` : JSON.stringify(last);
      throw new assert.AssertionError({
        message: `${who}: timed out after ${timeoutMs} ms waiting for ${what}; ` +
          `expected ${JSON.stringify(expected)}, last saw ${seen}`,
      });
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

// deno-lint-ignore no-explicit-any
type Params = Record<string, any>;
interface CdpEvent {
  method: string;
  params: Params;
  sessionId?: string;
}

/** A minimal CDP client: commands with replies, and events to listeners. */
class Cdp {
  #ws: WebSocket;
  #nextId = 1;
  #pending = new Map<number, { resolve(v: Params): void; reject(e: Error): void }>();
  #listeners = new Set<(event: CdpEvent) => void>();
  readonly closed: Promise<void>;

  private constructor(ws: WebSocket) {
    this.#ws = ws;
    ws.addEventListener("message", (event) => {
      const msg = JSON.parse(event.data);
      if (typeof msg.id === "number") {
        const pending = this.#pending.get(msg.id);
        this.#pending.delete(msg.id);
        if (msg.error) pending?.reject(new Error(`CDP: ${msg.error.message}`));
        else pending?.resolve(msg.result ?? {});
      } else if (msg.method) {
        for (const listener of this.#listeners) listener(msg);
      }
    });
    this.closed = new Promise((resolve) => {
      ws.addEventListener("close", () => {
        for (const pending of this.#pending.values()) {
          pending.reject(new Error("CDP: connection closed"));
        }
        this.#pending.clear();
        resolve();
      });
    });
  }

  static async connect(url: string): Promise<Cdp> {
    const ws = new WebSocket(url);
    const cdp = new Cdp(ws);
    await withTimeout(
      new Promise<void>((resolve, reject) => {
        ws.addEventListener("open", () => resolve());
        ws.addEventListener("error", () => reject(new Error(`cannot connect to ${url}`)));
      }),
      `a DevTools connection to ${url}`,
      TIMEOUT_MS,
    );
    return cdp;
  }

  send(method: string, params: Params = {}, sessionId?: string): Promise<Params> {
    const id = this.#nextId++;
    const reply = new Promise<Params>((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
    });
    this.#ws.send(JSON.stringify({ id, method, params, sessionId }));
    return withTimeout(reply, `the CDP reply to ${method}`, TIMEOUT_MS)
      .finally(() => this.#pending.delete(id));
  }

  on(listener: (event: CdpEvent) => void) {
    this.#listeners.add(listener);
  }

  async close() {
    if (this.#ws.readyState !== WebSocket.CLOSED) this.#ws.close();
    await this.closed;
  }
}

/** A headless Chromium with a throwaway profile; `close()` removes both. */
export class Browser {
  private constructor(
    private child: Deno.ChildProcess,
    private cdp: Cdp,
    private userDataDir: string,
    private drained: Promise<string>,
  ) {}

  static async launch(): Promise<Browser> {
    try {
      await Deno.stat(CHROMIUM);
    } catch {
      throw new Error(
        `Chromium not found at ${CHROMIUM}: install it (Debian: apt-get install -y chromium) ` +
          `or point CHROMIUM_PATH at a Chromium binary`,
      );
    }
    // A fresh profile for every run, so that no state leaks between runs.
    const userDataDir = await Deno.makeTempDir({ prefix: "hubbub-e2e-chromium-" });
    let child: Deno.ChildProcess | undefined;
    try {
      child = new Deno.Command(CHROMIUM, {
        args: [
          ...CHROMIUM_ARGS,
          `--user-data-dir=${userDataDir}`,
          "--remote-debugging-port=0",
          "about:blank",
        ],
        stdin: "null",
        stdout: "null",
        stderr: "piped",
      }).spawn();
      const { match, output } = await readUntil(
        child.stderr,
        /DevTools listening on (ws:\/\/\S+)/,
        "Chromium",
      );
      const cdp = await Cdp.connect(match).catch(async (err) => {
        await terminate(child!, "Chromium");
        await output;
        throw err;
      });
      return new Browser(child, cdp, userDataDir, output);
    } catch (err) {
      if (child) await terminate(child, "Chromium", "SIGKILL").catch(() => {});
      await Deno.remove(userDataDir, { recursive: true });
      throw err;
    }
  }

  /**
   * Opens a tab in a browser context of its own (like a separate browser
   * profile: no shared storage, and its own window, so it is never a hidden
   * background tab with throttled timers).
   */
  async newPage(name: string): Promise<Page> {
    const { browserContextId } = await this.cdp.send("Target.createBrowserContext");
    const { targetId } = await this.cdp.send("Target.createTarget", {
      url: "about:blank",
      browserContextId,
    });
    const { sessionId } = await this.cdp.send("Target.attachToTarget", { targetId, flatten: true });
    const page = new Page(this.cdp, sessionId, name);
    await page.init();
    return page;
  }

  #closing: Promise<void> | undefined;
  close(): Promise<void> {
    return this.#closing ??= (async () => {
      try {
        await this.cdp.send("Browser.close").catch(() => {}); // the socket may close first
        await this.cdp.close();
        await terminate(this.child, "Chromium");
        await this.drained;
      } finally {
        await Deno.remove(this.userDataDir, { recursive: true });
      }
    })();
  }
}

/** One user: a tab running the chat client, plus whatever went wrong in it. */
export class Page {
  /** Uncaught exceptions in the page. */
  readonly pageErrors: string[] = [];
  /** console.error output and browser errors such as CSP violations ("Refused to …"). */
  readonly consoleErrors: string[] = [];

  constructor(private cdp: Cdp, private sessionId: string, readonly name: string) {
    cdp.on((event) => {
      if (event.sessionId !== sessionId) return;
      const p = event.params;
      if (event.method === "Runtime.exceptionThrown") {
        this.pageErrors.push(p.exceptionDetails.exception?.description ?? p.exceptionDetails.text);
      } else if (event.method === "Runtime.consoleAPICalled" && p.type === "error") {
        this.consoleErrors.push(
          p.args.map((a: Params) => a.value ?? a.description ?? "").join(" "),
        );
      } else if (
        // Network failures (e.g. a missing favicon) are not the client's doing.
        event.method === "Log.entryAdded" && p.entry.level === "error" &&
        p.entry.source !== "network"
      ) {
        this.consoleErrors.push(p.entry.text);
      }
    });
  }

  send(method: string, params: Params = {}) {
    return this.cdp.send(method, params, this.sessionId);
  }

  async init() {
    await this.send("Runtime.enable");
    await this.send("Log.enable");
    await this.send("Page.enable");
    // Let every tab behave as the focused one.
    await this.send("Emulation.setFocusEmulationEnabled", { enabled: true });
  }

  /**
   * Calls `fn` (JavaScript source of a function) in the page with JSON
   * arguments and returns its JSON result.
   */
  // deno-lint-ignore no-explicit-any
  async call<T = any>(fn: string, ...args: unknown[]): Promise<T> {
    const expression = `(${fn})(${args.map((a) => JSON.stringify(a)).join(", ")})`;
    const { result, exceptionDetails } = await this.send("Runtime.evaluate", {
      expression,
      returnByValue: true,
      awaitPromise: true,
    });
    if (exceptionDetails) {
      throw new Error(
        `in page: ${exceptionDetails.exception?.description ?? exceptionDetails.text}`,
      );
    }
    return result.value as T;
  }

  async goto(url: string) {
    const { errorText } = await this.send("Page.navigate", { url });
    if (errorText) throw new Error(`${this.name}: cannot load ${url}: ${errorText}`);
    await eventually(
      this.name,
      `${url} to load`,
      () => this.call(`() => document.readyState === "complete" && location.href`),
      url,
    );
  }

  /** Waits until `selector` is visible, enabled and not covered; returns its centre. */
  async #target(selector: string): Promise<{ x: number; y: number }> {
    let point: { x: number; y: number } | undefined;
    await eventually(this.name, `${selector} to be usable`, async () => {
      const found = await this.call(
        `(selector) => {
          const el = document.querySelector(selector);
          if (!el) return "missing";
          if (el.disabled) return "disabled";
          el.scrollIntoView({ block: "center" });
          const r = el.getBoundingClientRect();
          if (r.width === 0 || r.height === 0) return "hidden";
          const x = r.left + r.width / 2, y = r.top + r.height / 2;
          if (!el.contains(document.elementFromPoint(x, y))) return "covered";
          return { x, y };
        }`,
        selector,
      );
      if (typeof found === "object") point = found;
      return typeof found === "object" ? "usable" : found;
    }, "usable");
    return point!;
  }

  /** A real mouse click in the middle of the element. */
  async click(selector: string) {
    const { x, y } = await this.#target(selector);
    for (const type of ["mousePressed", "mouseReleased"]) {
      await this.send("Input.dispatchMouseEvent", { type, x, y, button: "left", clickCount: 1 });
    }
  }

  /** Replaces an input's value by typing `text` into it. */
  async fill(selector: string, text: string) {
    await this.click(selector);
    await this.call(`(s) => document.querySelector(s).select()`, selector);
    await this.send("Input.insertText", { text });
    assert.equal(
      await this.call(`(s) => document.querySelector(s).value`, selector),
      text,
      `${this.name}: typing into ${selector} did not set its value`,
    );
  }

  /** Presses Enter in the (focused) element. */
  async pressEnter(selector: string) {
    await this.click(selector);
    const key = { key: "Enter", code: "Enter", windowsVirtualKeyCode: 13 };
    await this.send("Input.dispatchKeyEvent", { type: "keyDown", text: "\r", ...key });
    await this.send("Input.dispatchKeyEvent", { type: "keyUp", ...key });
  }

  text(selector: string): Promise<string | null> {
    return this.call(`(s) => document.querySelector(s)?.textContent ?? null`, selector);
  }

  attr(selector: string, name: string): Promise<string | null> {
    return this.call(
      `(s, n) => document.querySelector(s)?.getAttribute(n) ?? null`,
      selector,
      name,
    );
  }
}
