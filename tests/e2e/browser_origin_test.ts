// Cross-site WebSocket hijacking, in a real browser (issue 13 item 9): a page
// from another origin cannot open a WebSocket to a server that runs with the
// defaults; it can once --allowed-origins lists the page's origin.

import assert from "node:assert/strict";
import { Browser } from "./_browser.ts";
import { spawnServer } from "./_server.ts";

/** In the page: opens a WebSocket to `url`; "hello" once the server greets, or the close code. */
const TRY_CONNECT = `(url) => new Promise((resolve) => {
  const socket = new WebSocket(url);
  socket.onmessage = (event) => {
    resolve(JSON.parse(event.data.split("\\n")[0]).type);
    socket.close();
  };
  socket.onclose = (event) => resolve(event.code);
})`;

Deno.test("browser origin: a page of another origin is refused by default and let in when listed", async () => {
  const browser = await Browser.launch(); // first: fail fast without Chromium
  try {
    // The foreign page: another port of the same host is another origin.
    await using foreign = await spawnServer();
    await using target = await spawnServer();
    await using listing = await spawnServer({ args: ["--allowed-origins", foreign.url] });
    const page = await browser.newPage("visitor");
    await page.goto(`${foreign.url}/`);
    assert.equal(await page.call(TRY_CONNECT, target.wsUrl), 1006, "refused before the upgrade");
    assert.equal(await page.call(TRY_CONNECT, listing.wsUrl), "hello");
    assert.equal(await page.call(TRY_CONNECT, foreign.wsUrl), "hello", "its own server");
    await browser.close(); // before the servers, so they have no clients left
    await target.stop();
    assert.match(await target.stderr, /upgrade refused.*forbidden_origin/, "logged");
  } finally {
    await browser.close();
  }
});
