/**
 * The browser client, embedded at build time with text imports so the
 * server (and the compiled binary) reads no files at run time.
 *
 * @module
 */
import indexHtml from "../../static/index.html" with { type: "text" };
import appJs from "../../static/app.js" with { type: "text" };
// The client library (client/), built by `deno task client:build`; app.js may import it.
import clientJs from "../../static/client.js" with { type: "text" };
import styleCss from "../../static/style.css" with { type: "text" };

/** A static file served from memory. */
export interface Asset {
  body: string;
  contentType: string;
}

/** Request path → embedded file. */
export const ASSETS: ReadonlyMap<string, Asset> = new Map([
  ["/", { body: indexHtml, contentType: "text/html; charset=utf-8" }],
  ["/index.html", { body: indexHtml, contentType: "text/html; charset=utf-8" }],
  ["/app.js", { body: appJs, contentType: "text/javascript; charset=utf-8" }],
  ["/client.js", { body: clientJs, contentType: "text/javascript; charset=utf-8" }],
  ["/style.css", { body: styleCss, contentType: "text/css; charset=utf-8" }],
]);
