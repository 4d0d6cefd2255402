/**
 * The browser chat client (static/) driven as a user would: log in, join,
 * send, and read what the page shows.
 *
 * @module
 */
import { type Browser, eventually, type Page } from "./_browser.ts";
import type { SpawnedServer } from "./_server.ts";

/** The reconnect back-off may be a few seconds deep when the server comes back. */
export const RECONNECT_TIMEOUT_MS = 20_000;

/** Loads the client, logs in and waits for the server's welcome. */
export async function openUser(
  browser: Browser,
  server: SpawnedServer,
  name: string,
): Promise<Page> {
  const page = await browser.newPage(name);
  await page.goto(`${server.url}/`);
  await page.fill("#name", name);
  await page.click("#login");
  await eventually(name, `to be signed in as ${name}`, () => page.text("#me"), name);
  await eventually(name, "the connection status to be online", () => statusOf(page), "online");
  return page;
}

/** Joins a channel with the text box and waits until it is the active one. */
export async function join(page: Page, channel: string): Promise<void> {
  await page.fill("#channel", channel);
  await page.click("#join");
  await eventually(
    page.name,
    `#${channel} to become the active channel`,
    () => page.attr("#active-channel", "data-channel"),
    channel,
  );
}

/** Types `text` into the message box and sends it with Enter. */
export async function say(page: Page, text: string): Promise<void> {
  await page.fill("#text", text);
  await page.pressEnter("#text");
}

/** The connection status: idle, connecting, online or offline. */
export function statusOf(page: Page): Promise<string | null> {
  return page.attr("#status", "data-state");
}

/** Names in the members pane of the active channel, sorted. */
export function members(page: Page): Promise<string[]> {
  return page.call(`() => [...document.querySelectorAll("#members li")]
    .map((li) => li.dataset.name).sort()`);
}

/** Member count shown for a channel in the channel list, or null if not listed. */
export function listedCount(page: Page, channel: string): Promise<string | null> {
  return page.call(
    `(channel) => [...document.querySelectorAll("#channels li")]
      .find((li) => li.dataset.channel === channel)?.dataset.members ?? null`,
    channel,
  );
}

/** A chat message as the page shows it. */
export interface Shown {
  from: string;
  sender: string;
  text: string;
}

/** The last chat message (not a notice) shown in the active channel. */
export function lastMessage(page: Page): Promise<Shown | null> {
  return page.call(`() => {
    const li = [...document.querySelectorAll("#messages li.message")].pop();
    return li ? {
      from: li.dataset.from,
      sender: li.querySelector(".from")?.textContent,
      text: li.querySelector(".text")?.textContent,
    } : null;
  }`);
}

/** Every line of the active log, top to bottom, as `seq:text`, `gap` (divider) or `notice`. */
export function lines(page: Page): Promise<string[]> {
  return page.call(`() => [...document.querySelectorAll("#messages li")].map((li) =>
    li.classList.contains("divider") ? "gap"
      : li.classList.contains("notice") ? "notice"
      : \`\${li.dataset.seq ?? "?"}:\${li.querySelector(".text").textContent}\`)`);
}

/** The seqs of the chat messages shown in the active channel, top to bottom. */
export function shownSeqs(page: Page): Promise<number[]> {
  return page.call(`() => [...document.querySelectorAll("#messages li.message")]
    .map((li) => Number(li.dataset.seq ?? NaN))`);
}

/** The ids of the chat messages shown in the active channel, top to bottom. */
export function shownIds(page: Page): Promise<string[]> {
  return page.call(`() => [...document.querySelectorAll("#messages li.message")]
    .map((li) => li.dataset.id ?? "")`);
}

/** The state of the last message with `text`: its status, its state line and whether it has a seq. */
export function sendState(
  page: Page,
  text: string,
): Promise<{ status: string; state: string; seq: boolean; dimmed: boolean } | null> {
  return page.call(
    `(text) => {
      const li = [...document.querySelectorAll("#messages li.message")]
        .filter((li) => li.querySelector(".text").textContent === text).pop();
      if (!li) return null;
      return {
        status: li.dataset.status ?? "",
        state: li.querySelector(".state")?.textContent ?? "",
        seq: li.dataset.seq !== undefined,
        dimmed: Number(getComputedStyle(li).opacity) < 1,
      };
    }`,
    text,
  );
}

/** The integers from `from` to `to`, both included. */
export function range(from: number, to: number): number[] {
  return Array.from({ length: to - from + 1 }, (_, i) => from + i);
}
