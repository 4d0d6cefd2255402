/**
 * The app's HTTP face: the HTTP handler wired to admission, the authorizer,
 * the dialects' routes, the API's callbacks, the metrics text and the
 * readiness checks, remembering each upgrade it allows.
 *
 * @module
 */
import { headerLists, queryLists } from "../auth/webhook.ts";
import { listChannels, memberNames } from "../core/channels.ts";
import { nameKey } from "../core/names.ts";
import { CloseCode } from "../core/protocol.ts";
import { ownerOf } from "../core/registry.ts";
import { messageFrame } from "../core/router.ts";
import { createApi } from "../http/api.ts";
import { ASSETS } from "../http/assets.ts";
import { createHttpHandler, type HttpHandler } from "../http/http.ts";
import { bump, renderMetrics } from "../metrics.ts";
import { type AppContext, NATIVE } from "./context.ts";
import { end, run } from "./effects.ts";

/** One check of `GET /readyz`: the server should get no traffic while it fails. */
export interface ReadinessCheck {
  /** Named in the 503 body, e.g. "store". */
  readonly name: string;
  ready(): boolean;
}

/** What the HTTP face needs besides the shared state (the part of `AppDeps` it reads). */
export interface HttpFaceDeps {
  /** The server version, for `hubbub_build_info`. */
  version: string;
  /** The runtime's name ("deno" or "bun"), for `hubbub_build_info`. */
  runtime?: string;
  /** The process's resident memory, for /metrics, when the runtime can tell. */
  residentBytes?(): number;
  /** Readiness checks besides shutdown and cluster, e.g. whether the store can be written. */
  readiness?: readonly ReadinessCheck[];
}

/** The app's `fetch`: answers a request, or allows an upgrade and remembers it until it opens. */
export function createHttpFace(ctx: AppContext, deps: HttpFaceDeps): HttpHandler {
  const { config, clock, metrics, core, admission, authorizer, cluster, log } = ctx;
  const readinessChecks: ReadinessCheck[] = [
    { name: "shutdown", ready: () => !ctx.shuttingDown },
    // Down, or back but not every node's names are in the store again: logins are refused.
    { name: "cluster", ready: () => cluster === null || cluster.admitting },
    ...deps.readiness ?? [],
  ];
  const build = {
    version: deps.version,
    runtime: deps.runtime ?? "unknown",
    // The web-standard start of this process (not of the app), as Prometheus expects.
    startTimeSeconds: Math.round(performance.timeOrigin) / 1000,
  };
  const handleHttp = createHttpHandler({
    config,
    log,
    assets: ASSETS,
    admit(ip) {
      const refusal = admission.admit(ip, clock.now());
      if (refusal) bump(metrics.refused, refusal.reason);
      return refusal;
    },
    release: (ip) => admission.closed(ip),
    authorizeUpgrade: authorizer === null ? undefined : (request, ip, dialect, path) => {
      const url = new URL(request.url);
      return authorizer.decide({
        command: "connect",
        args: { headers: headerLists(request.headers), query: queryLists(url), path },
        // Which protocol: each has its own rules (a wsify client is nameless, for one).
        dialect: dialect ?? NATIVE,
      }, ip);
    },
    dialects: ctx.dialects,
    async dialectHttp(name, request, path) {
      const dialect = ctx.dialects.get(name);
      if (dialect?.http === undefined) return null;
      const answer = await dialect.http(
        ctx.dialectContext,
        request,
        path,
        (effects) => run(ctx, effects, 0),
      );
      // A dialect's keyed endpoints (wsify's POST /broadcast?key=) answer a wrong key this way.
      if (answer?.status === 401 || answer?.status === 403) {
        log.limited("warn", `dialect-http:${name}`, "request refused: wrong or missing key", {
          dialect: name,
          status: answer.status,
          path: path.slice(0, 200),
        });
      }
      return answer;
    },
    api: createApi({
      apiKey: config.apiKey,
      maxBodyBytes: config.maxMessageBytes,
      maxTextLength: config.maxTextLength,
      broadcast(channel, from, text, key) {
        metrics.messagesIn++;
        const frame = messageFrame(core, channel, from, text);
        return new Promise((done) => {
          ctx.history.submit(channel, frame, { key, done });
          ctx.history.flush();
        });
      },
      kick(name) {
        const id = ownerOf(core.registry, name);
        if (id !== undefined) {
          end(ctx, id, CloseCode.Kicked, "Removed by an operator");
          return true;
        }
        // Held on another node, maybe: that node removes it. The answer counts this node only.
        cluster?.kick(nameKey(name));
        return false;
      },
      channels: () => listChannels(core.channels),
      members: (channel) =>
        core.channels.members.has(channel) ? memberNames(core.channels, channel) : null,
      shuttingDown: () => ctx.shuttingDown,
    }),
    notReady: () => readinessChecks.filter((check) => !check.ready()).map((check) => check.name),
    metricsText: () =>
      renderMetrics(metrics, {
        connections: ctx.sessions.size,
        slots: admission.total,
        users: core.registry.owners.size,
        channels: core.channels.members.size,
        residentBytes: deps.residentBytes?.(),
        clusterUp: cluster === null ? undefined : cluster.up ? 1 : 0,
        clusterNodes: cluster?.nodes,
        clusterRemoteSessions: cluster?.remoteSessions,
      }, build),
  });

  /** Remembers each upgrade it allows, so one whose socket never opens cannot keep its slot. */
  return async (request, info) => {
    const answer = await handleHttp(request, info);
    if (!(answer instanceof Response)) ctx.upgrading.set(answer, clock.now());
    return answer;
  };
}
