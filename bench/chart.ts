/**
 * The SVG chart of the knees in the one-room scenarios (bench/results.svg).
 *
 * @module
 */
import { figures, kneeText, type Results } from "./figures.ts";
import { KEPT_UP, MAX_P99_MS } from "./options.ts";
import { SCENARIOS } from "./scenarios.ts";
import type { Target } from "./servers.ts";

/** The knees in the one-room scenarios as an SVG bar chart. */
export function chart(targets: Target[], results: Results): string {
  const scenarios = SCENARIOS.filter((s) => s.roomSize === s.clients);
  const colors: Record<string, string> = {
    "hubbub-deno": "#2f6fdf",
    "hubbub-bun": "#f29d38",
    "ref-bun": "#c9a07a",
    "ref-node": "#7fb77e",
    "ref-deno": "#9aa9c2",
  };
  const W = 760, H = 380, left = 70, right = 20, top = 50, bottom = 90;
  const values = scenarios.flatMap((sc) =>
    targets.map((t) => figures(results.get(sc.id)?.get(t.id))?.knee ?? 0)
  );
  const max = Math.max(1, ...values);
  const step = niceStep(max / 5);
  const yMax = Math.ceil(max / step) * step;
  const plotH = H - top - bottom, plotW = W - left - right;
  const groupW = plotW / scenarios.length;
  const barW = Math.min(48, (groupW - 40) / Math.max(1, targets.length));
  const y = (v: number) => top + plotH - (v / yMax) * plotH;
  const esc = (s: string) => s.replaceAll("&", "&amp;").replaceAll("<", "&lt;");
  const parts: string[] = [];
  parts.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
  );
  parts.push(`<rect width="${W}" height="${H}" fill="#fff"/>`);
  parts.push(
    `<text x="${
      W / 2
    }" y="22" text-anchor="middle" font-size="15" font-weight="bold">Delivered messages per second at the knee, one room</text>`,
  );
  parts.push(
    `<text x="${W / 2}" y="38" text-anchor="middle" fill="#555">knee: highest rate with ≥${
      KEPT_UP * 100
    }% delivered within the step and p99 ≤ ${MAX_P99_MS} ms; ≥: the load generator, not the server, stopped it</text>`,
  );
  for (let v = 0; v <= yMax + 1e-9; v += step) {
    parts.push(
      `<line x1="${left}" x2="${W - right}" y1="${y(v)}" y2="${y(v)}" stroke="#e5e5e5"/>`,
      `<text x="${left - 6}" y="${y(v) + 4}" text-anchor="end" fill="#555">${
        v >= 1e6 ? `${+(v / 1e6).toFixed(2)}M` : v >= 1e3 ? `${+(v / 1e3).toFixed(1)}k` : v
      }</text>`,
    );
  }
  scenarios.forEach((sc, g) => {
    const x0 = left + g * groupW + (groupW - barW * targets.length) / 2;
    targets.forEach((t, i) => {
      const f = figures(results.get(sc.id)?.get(t.id));
      const v = f?.knee ?? 0;
      const x = x0 + i * barW;
      parts.push(
        `<rect x="${x + 3}" y="${y(v)}" width="${barW - 6}" height="${y(0) - y(v)}" fill="${
          colors[t.id]
        }"><title>${esc(t.label)}: ${esc(kneeText(f))}</title></rect>`,
        `<text x="${x + barW / 2}" y="${y(v) - 5}" text-anchor="middle" font-size="11">${
          esc(kneeText(f))
        }</text>`,
      );
    });
    parts.push(
      `<text x="${left + g * groupW + groupW / 2}" y="${
        top + plotH + 20
      }" text-anchor="middle" font-weight="bold">${esc(sc.title)}</text>`,
    );
  });
  // Legend.
  targets.forEach((t, i) => {
    const x = left + (i % 3) * 220, yy = H - 42 + Math.floor(i / 3) * 18;
    parts.push(
      `<rect x="${x}" y="${yy - 10}" width="12" height="12" fill="${colors[t.id]}"/>`,
      `<text x="${x + 18}" y="${yy}">${esc(t.label)}</text>`,
    );
  });
  parts.push("</svg>");
  return parts.join("\n") + "\n";
}

function niceStep(raw: number): number {
  const p = 10 ** Math.floor(Math.log10(raw));
  for (const m of [1, 2, 2.5, 5, 10]) if (raw <= m * p) return m * p;
  return 10 * p;
}
