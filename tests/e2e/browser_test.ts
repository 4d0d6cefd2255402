// End-to-end test: the real server (main.ts) in a subprocess, the real browser
// client (static/) in headless Chromium (see _browser.ts for what that needs).

import assert from "node:assert/strict";
import { Browser, eventually } from "./_browser.ts";
import {
  join,
  lastMessage,
  listedCount,
  members,
  openUser,
  RECONNECT_TIMEOUT_MS,
  statusOf,
} from "./_chat.ts";
import { type SpawnedServer, spawnServer } from "./_server.ts";

const XSS = `<img src=x onerror="window.__xss=1">hi`;

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
