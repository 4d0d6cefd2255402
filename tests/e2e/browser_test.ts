// End-to-end test: the real server (main.ts) in a subprocess, the real browser
// client (static/) in headless Chromium.
//
// Chromium is driven over the Chrome DevTools Protocol by the small client
// below, on Deno's built-in WebSocket. (playwright-core was tried first: it
// needs --allow-sys as soon as it is imported, which `deno task test` does not
// grant.)
//
// Needs Chromium at /usr/bin/chromium (Debian: `apt-get install -y chromium`),
// or wherever CHROMIUM_PATH points. Without it the tests fail on purpose:
// CI installs it, so a missing browser is a broken setup, not a reason to skip.

import assert from "node:assert/strict";

const ROOT = new URL("../../", import.meta.url);
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
const TIMEOUT_MS = 10_000;
/** Bound for the server or the browser to start (a first run may fill caches). */
const STARTUP_TIMEOUT_MS = 30_000;
/** The reconnect back-off may be a few seconds deep when the server comes back. */
const RECONNECT_TIMEOUT_MS = 20_000;

const XSS = `<img src=x onerror="window.__xss=1">hi`;

// ---------------------------------------------------------------- utilities

/**
 * Polls `probe` until its result deep-equals `expected`, or fails after
 * `timeoutMs`, saying what was awaited and what was last seen.
 */
async function eventually<T>(
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
    await delay(50);
  }
}

function delay(ms: number) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Resolves to `promise`'s value, or rejects with `message` after `ms`. */
async function withTimeout<T>(promise: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => timer = setTimeout(() => reject(new Error(message)), ms)),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Reads a child's output until a line matches `pattern`; then keeps draining
 * it in the background (so the pipe never fills up and its resource closes).
 * Resolves to the first capture group and a promise for the end of the drain.
 */
async function awaitLine(
  stream: ReadableStream<Uint8Array>,
  pattern: RegExp,
  timeoutMs: number,
  what: string,
): Promise<{ match: string; drained: Promise<void>; output: string }> {
  const reader = stream.pipeThrough(new TextDecoderStream()).getReader();
  let output = "";
  try {
    const match = await withTimeout(
      (async () => {
        while (true) {
          const { value, done } = await reader.read();
          if (done) throw new Error(`${what} ended its output without printing ${pattern}`);
          output += value;
          // Only complete lines, so that a URL split across chunks is not cut short.
          const complete = output.slice(0, output.lastIndexOf("\n") + 1);
          const found = complete.match(pattern);
          if (found) return found[1];
        }
      })(),
      timeoutMs,
      `${what} did not print ${pattern} within ${timeoutMs} ms`,
    );
    const drained = (async () => {
      while (!(await reader.read()).done) { /* discard */ }
    })();
    return { match, drained, output };
  } catch (err) {
    await reader.cancel().catch(() => {});
    throw new Error(`${(err as Error).message}; output so far:\n${output}`);
  }
}

/** Sends SIGTERM (or another signal), waits for exit; SIGKILL after the bound. */
async function terminate(child: Deno.ChildProcess, what: string, signal: Deno.Signal = "SIGTERM") {
  try {
    child.kill(signal);
  } catch { /* already exited */ }
  const exited = await withTimeout(child.status.then(() => true), TIMEOUT_MS, "")
    .catch(() => false);
  if (!exited) {
    try {
      child.kill("SIGKILL");
    } catch { /* exited just now */ }
  }
  await child.status;
  assert.ok(exited, `${what} did not exit within ${TIMEOUT_MS} ms of ${signal}`);
}

// ------------------------------------------------------------------- server

interface Server {
  url: URL;
  stop(): Promise<void>;
}

/** Starts main.ts without read permission and waits for its listening line. */
async function startServer(port = 0): Promise<Server> {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-net",
      "--allow-env",
      "main.ts",
      "--port",
      String(port),
      "--hostname",
      "127.0.0.1",
    ],
    cwd: ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  let line;
  try {
    line = await awaitLine(
      child.stdout,
      /listening on (http:\/\/\S+)/,
      STARTUP_TIMEOUT_MS,
      "the server",
    );
  } catch (err) {
    await terminate(child, "the server", "SIGKILL").catch(() => {});
    throw err;
  }
  const { match, drained } = line;
  let stopping: Promise<void> | undefined;
  return {
    url: new URL(match),
    // Idempotent: a test may stop the server early and the teardown again.
    stop: () =>
      stopping ??= (async () => {
        try {
          await terminate(child, "the server");
        } finally {
          await drained;
        }
      })(),
  };
}

// ------------------------------------------------- Chrome DevTools Protocol

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
      TIMEOUT_MS,
      `no DevTools connection to ${url} within ${TIMEOUT_MS} ms`,
    );
    return cdp;
  }

  send(method: string, params: Params = {}, sessionId?: string): Promise<Params> {
    const id = this.#nextId++;
    const reply = new Promise<Params>((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
    });
    this.#ws.send(JSON.stringify({ id, method, params, sessionId }));
    return withTimeout(reply, TIMEOUT_MS, `CDP: no reply to ${method} within ${TIMEOUT_MS} ms`)
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

class Browser {
  private constructor(
    private child: Deno.ChildProcess,
    private cdp: Cdp,
    private userDataDir: string,
    private drained: Promise<void>,
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
    // A fresh profile for every run, removed afterwards.
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
      const { match, drained } = await awaitLine(
        child.stderr,
        /DevTools listening on (ws:\/\/\S+)/,
        STARTUP_TIMEOUT_MS,
        "Chromium",
      );
      const cdp = await Cdp.connect(match).catch(async (err) => {
        await terminate(child!, "Chromium");
        await drained;
        throw err;
      });
      return new Browser(child, cdp, userDataDir, drained);
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
class Page {
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

// ------------------------------------------------------- chat client helpers

/** Loads the client, logs in and waits for the server's welcome. */
async function openUser(browser: Browser, server: Server, name: string): Promise<Page> {
  const page = await browser.newPage(name);
  await page.goto(server.url.href);
  await eventually(name, "the connection status to be online", () => statusOf(page), "online");
  await page.fill("#name", name);
  await page.click("#login");
  await eventually(name, `to be signed in as ${name}`, () => page.text("#me"), name);
  return page;
}

/** Joins a channel with the text box and waits until it is the active one. */
async function join(page: Page, channel: string) {
  await page.fill("#channel", channel);
  await page.click("#join");
  await eventually(
    page.name,
    `#${channel} to become the active channel`,
    () => page.attr("#active-channel", "data-channel"),
    channel,
  );
}

function statusOf(page: Page) {
  return page.attr("#status", "data-state");
}

/** Names in the members pane of the active channel, sorted. */
function members(page: Page): Promise<string[]> {
  return page.call(`() => [...document.querySelectorAll("#members li")]
    .map((li) => li.dataset.name).sort()`);
}

/** Member count shown for a channel in the channel list, or null if not listed. */
function listedCount(page: Page, channel: string): Promise<string | null> {
  return page.call(
    `(channel) => [...document.querySelectorAll("#channels li")]
      .find((li) => li.dataset.channel === channel)?.dataset.members ?? null`,
    channel,
  );
}

/** The last chat message (not a notice) shown in the active channel. */
function lastMessage(page: Page) {
  return page.call(`() => {
    const li = [...document.querySelectorAll("#messages li.message")].pop();
    return li ? {
      from: li.dataset.from,
      sender: li.querySelector(".from")?.textContent,
      text: li.querySelector(".text")?.textContent,
    } : null;
  }`);
}

/** Runs `body` with a browser and a server, and always tears both down. */
async function withSetup(body: (server: Server, browser: Browser) => Promise<void>) {
  const browser = await Browser.launch(); // first: fail fast without Chromium
  let server: Server | undefined;
  try {
    server = await startServer();
    await body(server, browser);
  } finally {
    try {
      await browser.close(); // before the server, so it has no clients left
    } finally {
      await server?.stop();
    }
  }
}

// -------------------------------------------------------------------- tests

Deno.test("browser: two users exchange a message", async () => {
  await withSetup(async (server, browser) => {
    const alice = await openUser(browser, server, "alice");
    const bob = await openUser(browser, server, "bob");

    await join(alice, "e2e");
    await join(bob, "e2e");

    await eventually("alice", "bob in the member list", () => members(alice), ["alice", "bob"]);
    await eventually("bob", "alice in the member list", () => members(bob), ["alice", "bob"]);
    await eventually("alice", "#e2e listed with 2 members", () => listedCount(alice, "e2e"), "2");

    // Bob sends markup; it must arrive as plain text, on both sides.
    await bob.fill("#text", XSS);
    await bob.pressEnter("#text");
    const expected = { from: "bob", sender: "bob", text: XSS };
    await eventually("alice", "bob's message", () => lastMessage(alice), expected);
    await eventually("bob", "his own message echoed", () => lastMessage(bob), expected);

    for (const page of [alice, bob]) {
      const shown = await page.text("#messages");
      assert.ok(shown?.includes("<img"), `${page.name}: #messages does not show "<img" as text`);
      assert.equal(
        await page.call(`() => document.querySelectorAll("#messages img").length`),
        0,
        `${page.name}: an <img> element was created inside #messages`,
      );
      assert.equal(
        await page.call(`() => typeof window.__xss`),
        "undefined",
        `${page.name}: the onerror handler ran`,
      );
    }

    // Leaving is seen by the others.
    await bob.click("#leave");
    await eventually("bob", "no active channel", () => members(bob), []);
    await eventually("alice", "bob gone from the member list", () => members(alice), ["alice"]);

    for (const page of [alice, bob]) {
      assert.deepEqual(page.pageErrors, [], `${page.name}: uncaught errors in the page`);
      assert.deepEqual(page.consoleErrors, [], `${page.name}: console errors (CSP?)`);
    }
  });
});

Deno.test("browser: client reconnects and re-joins after the server restarts", async () => {
  await withSetup(async (first, browser) => {
    const alice = await openUser(browser, first, "alice");
    const bob = await openUser(browser, first, "bob");
    await join(alice, "lobby");
    await join(alice, "e2e");
    await join(bob, "e2e");
    await eventually("alice", "bob in the member list", () => members(alice), ["alice", "bob"]);

    // Restart on the same port: the page keeps the address it was loaded from.
    const port = Number(first.url.port);
    await first.stop();
    for (const page of [alice, bob]) {
      await eventually(page.name, "the status to leave online", async () => {
        return (await statusOf(page)) !== "online";
      }, true);
    }

    const second = await startServer(port);
    try {
      for (const page of [alice, bob]) {
        await eventually(
          page.name,
          "reconnection",
          () => statusOf(page),
          "online",
          RECONNECT_TIMEOUT_MS,
        );
        await eventually(page.name, "to be signed in again", () => page.text("#me"), page.name);
      }
      // Both are back in #e2e (still alice's active channel) …
      await eventually(
        "alice",
        "bob back in the member list",
        () => members(alice),
        ["alice", "bob"],
        RECONNECT_TIMEOUT_MS,
      );
      // … and alice's other channel was re-joined too.
      await eventually(
        "alice",
        "#lobby listed with 1 member",
        () => listedCount(alice, "lobby"),
        "1",
      );

      await bob.fill("#text", "after the restart");
      await bob.click("#send");
      await eventually(
        "alice",
        "bob's message after the restart",
        () => lastMessage(alice),
        { from: "bob", sender: "bob", text: "after the restart" },
      );
      for (const page of [alice, bob]) {
        // Console errors are expected here (failed reconnection attempts); page errors are not.
        assert.deepEqual(page.pageErrors, [], `${page.name}: uncaught errors in the page`);
      }
    } finally {
      await browser.close(); // before the server, so it has no clients left
      await second.stop();
    }
  });
});
