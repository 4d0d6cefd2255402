// End-to-end test: the real server (main.ts) in a subprocess, the real browser
// client (static/) in headless Chromium (see _browser.ts for what that needs).

import assert from "node:assert/strict";
import { Browser, eventually, type Page } from "./_browser.ts";
import { type SpawnedServer, spawnServer } from "./_server.ts";

/** The reconnect back-off may be a few seconds deep when the server comes back. */
const RECONNECT_TIMEOUT_MS = 20_000;

const XSS = `<img src=x onerror="window.__xss=1">hi`;

// ------------------------------------------------------- chat client helpers

/** Loads the client, logs in and waits for the server's welcome. */
async function openUser(browser: Browser, server: SpawnedServer, name: string): Promise<Page> {
  const page = await browser.newPage(name);
  await page.goto(`${server.url}/`);
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
async function withSetup(body: (server: SpawnedServer, browser: Browser) => Promise<void>) {
  const browser = await Browser.launch(); // first: fail fast without Chromium
  let server: SpawnedServer | undefined;
  try {
    server = await spawnServer();
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
    await first.stop();
    for (const page of [alice, bob]) {
      await eventually(page.name, "the status to leave online", async () => {
        return (await statusOf(page)) !== "online";
      }, true);
    }

    const second = await spawnServer({ port: first.port });
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
