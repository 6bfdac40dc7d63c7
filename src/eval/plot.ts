/**
 * Reports without dependencies (benchmarks, evaluation matrices): a grouped bar chart and an x/y line chart
 * as standalone SVG, and a Markdown table. Bar heights are exactly proportional to the values (a linear
 * axis from 0); missing values draw no bar. Line charts map both coordinates linearly onto round ranges.
 */

/** One series of a bar chart: a value per group (undefined or NaN when there is none). */
export interface BarSeries {
  readonly name: string;
  readonly values: readonly (number | undefined)[];
}

export interface BarChart {
  readonly title: string;
  /** A smaller second line under the title (the device, the settings). */
  readonly subtitle?: string;
  readonly yLabel: string;
  /** Labels along the x axis; each group holds one bar per series. */
  readonly groups: readonly string[];
  readonly series: readonly BarSeries[];
  readonly width?: number;
  readonly height?: number;
}

/** Fill colours of the series, in order (colour-blind-safe Okabe-Ito), repeating past eight. */
const PALETTE = ["#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00", "#f0e442", "#000000"];

/** Text safe inside SVG/XML content and attribute values. */
export function escapeXml(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}

/** A round axis maximum >= max: 1, 2, 2.5 or 5 times a power of ten. */
export function niceCeil(max: number): number {
  if (!(max > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(max));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= max) return m * p;
  return 10 * p;
}

/** Numbers as short labels: 1234 -> "1234", 0.5 -> "0.5", 12.345 -> "12.3". */
function label(v: number): string {
  return Number.isInteger(v) ? String(v) : v >= 100 ? v.toFixed(0) : String(Number(v.toPrecision(3)));
}

/** Coordinates to 3 decimals: exact enough for any screen, short enough to read. */
const n = (v: number) => String(Math.round(v * 1000) / 1000);

/**
 * A grouped bar chart (groups along x, one bar per series in each) as an SVG document: title, y axis
 * with ticks and label, group labels, a legend, and each bar's value above it and in its tooltip. Bars
 * carry data-group, data-series and data-value attributes for tools that read the chart back.
 */
export function barChartSvg(chart: BarChart): string {
  const { title, yLabel, groups, series } = chart;
  const width = chart.width ?? 720;
  const height = chart.height ?? 400;
  for (const s of series) {
    if (s.values.length !== groups.length) throw new Error(`series ${s.name}: ${s.values.length} values for ${groups.length} groups`);
    for (const v of s.values) if (v !== undefined && v < 0) throw new Error(`series ${s.name}: negative value ${v}; bars start at 0`);
  }
  const left = 72, right = 16, top = 68, bottom = 40;
  const plotW = width - left - right;
  const plotH = height - top - bottom;
  const values = series.flatMap((s) => s.values).filter((v): v is number => v !== undefined && Number.isFinite(v));
  const yMax = niceCeil(Math.max(0, ...values));
  const y = (v: number) => top + plotH - (v / yMax) * plotH;

  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`);
  out.push(`<rect x="0" y="0" width="${width}" height="${height}" fill="#ffffff"/>`);
  out.push(`<text x="${n(width / 2)}" y="20" text-anchor="middle" font-size="15" font-weight="bold">${escapeXml(title)}</text>`);
  if (chart.subtitle) out.push(`<text x="${n(width / 2)}" y="36" text-anchor="middle" font-size="11" fill="#444444">${escapeXml(chart.subtitle)}</text>`);
  // y axis: 5 ticks from 0 to yMax with grid lines
  for (let i = 0; i <= 5; i++) {
    const v = (yMax * i) / 5;
    out.push(`<line x1="${left}" y1="${n(y(v))}" x2="${left + plotW}" y2="${n(y(v))}" stroke="#dddddd"/>`);
    out.push(`<text class="tick" x="${left - 6}" y="${n(y(v) + 4)}" text-anchor="end">${label(v)}</text>`);
  }
  out.push(`<line class="y-axis" x1="${left}" y1="${top}" x2="${left}" y2="${top + plotH}" stroke="#000000"/>`);
  out.push(`<line class="baseline" x1="${left}" y1="${top + plotH}" x2="${left + plotW}" y2="${top + plotH}" stroke="#000000"/>`);
  out.push(`<text x="16" y="${n(top + plotH / 2)}" text-anchor="middle" transform="rotate(-90 16 ${n(top + plotH / 2)})">${escapeXml(yLabel)}</text>`);
  // bars: each group gets a slot, 80% of it filled by its bars side by side
  const slot = plotW / Math.max(1, groups.length);
  const barW = (slot * 0.8) / Math.max(1, series.length);
  groups.forEach((g, gi) => {
    const x0 = left + gi * slot + slot * 0.1;
    out.push(`<text x="${n(left + (gi + 0.5) * slot)}" y="${top + plotH + 18}" text-anchor="middle">${escapeXml(g)}</text>`);
    series.forEach((s, si) => {
      const v = s.values[gi];
      if (v === undefined || !Number.isFinite(v)) return;
      const x = x0 + si * barW;
      const h = (v / yMax) * plotH;
      out.push(
        `<rect class="bar" data-group="${escapeXml(g)}" data-series="${escapeXml(s.name)}" data-value="${v}" x="${n(x)}" y="${n(top + plotH - h)}" width="${n(barW * 0.92)}" height="${n(h)}" fill="${PALETTE[si % PALETTE.length]}"><title>${escapeXml(`${s.name}, ${g}: ${label(v)}`)}</title></rect>`,
      );
      out.push(`<text x="${n(x + barW * 0.46)}" y="${n(top + plotH - h - 3)}" text-anchor="middle" font-size="10">${label(v)}</text>`);
    });
  });
  // legend: one row under the title
  let lx = left;
  for (const [si, s] of series.entries()) {
    out.push(`<rect x="${n(lx)}" y="45" width="10" height="10" fill="${PALETTE[si % PALETTE.length]}"/>`);
    out.push(`<text x="${n(lx + 14)}" y="54">${escapeXml(s.name)}</text>`);
    lx += 24 + 7 * s.name.length;
  }
  out.push("</svg>");
  return out.join("\n") + "\n";
}

/** A Markdown table; cells are stringified, pipes escaped; columns right-aligned when `numeric[i]`. */
export function markdownTable(headers: readonly string[], rows: readonly (readonly (string | number)[])[], numeric: readonly boolean[] = []): string {
  const cell = (v: string | number) => String(v).replace(/\|/g, "\\|").replace(/\n/g, " ");
  for (const r of rows) if (r.length !== headers.length) throw new Error(`a table row has ${r.length} cells for ${headers.length} columns`);
  const lines = [
    `| ${headers.map(cell).join(" | ")} |`,
    `| ${headers.map((_, i) => (numeric[i] ? "---:" : "---")).join(" | ")} |`,
    ...rows.map((r) => `| ${r.map(cell).join(" | ")} |`),
  ];
  return lines.join("\n") + "\n";
}

/** One series of a line chart: points joined in the given order. */
export interface LineSeries {
  readonly name: string;
  readonly points: readonly { readonly x: number; readonly y: number }[];
}

export interface LineChart {
  readonly title: string;
  readonly subtitle?: string;
  readonly xLabel: string;
  readonly yLabel: string;
  readonly series: readonly LineSeries[];
  /** Start the y axis at 0 (else it spans the data's range, rounded outwards). */
  readonly yFromZero?: boolean;
  readonly width?: number;
  readonly height?: number;
}

/**
 * Axis range for values in [min, max]: a round step (1, 2, 2.5 or 5 times a power of ten, about `ticks`
 * of them) and the range widened outwards to multiples of it. A single value gets a range around it.
 */
export function niceRange(min: number, max: number, ticks = 5): { lo: number; hi: number; step: number } {
  if (!(max > min)) {
    const pad = Math.abs(min) > 0 ? Math.abs(min) / 10 : 1;
    [min, max] = [min - pad, max + pad];
  }
  const step = niceCeil((max - min) / ticks);
  // rounding guards keep k * step from landing a hair inside the data
  const lo = Math.floor(min / step + 1e-9) * step;
  const hi = Math.ceil(max / step - 1e-9) * step;
  return { lo, hi, step };
}

/**
 * An x/y line chart as an SVG document: title, both axes with round ticks and labels, a legend, one
 * polyline and one marker per point for each series. Markers carry data-series, data-x and data-y
 * attributes (and a tooltip) for tools that read the chart back.
 */
export function lineChartSvg(chart: LineChart): string {
  const { title, xLabel, yLabel, series } = chart;
  const width = chart.width ?? 720;
  const height = chart.height ?? 400;
  for (const s of series) {
    s.points.forEach((p, i) => {
      if (!Number.isFinite(p.x) || !Number.isFinite(p.y)) throw new Error(`series ${s.name}: point ${i} is (${p.x}, ${p.y}); both must be finite numbers`);
    });
  }
  const points = series.flatMap((s) => s.points);
  const xs = points.map((p) => p.x);
  const ys = points.map((p) => p.y);
  const xr = points.length ? niceRange(Math.min(...xs), Math.max(...xs)) : { lo: 0, hi: 1, step: 0.2 };
  const yr = points.length ? niceRange(chart.yFromZero ? Math.min(0, ...ys) : Math.min(...ys), Math.max(...ys)) : { lo: 0, hi: 1, step: 0.2 };
  const left = 72, right = 24, top = 68, bottom = 52;
  const plotW = width - left - right;
  const plotH = height - top - bottom;
  const px = (v: number) => left + ((v - xr.lo) / (xr.hi - xr.lo)) * plotW;
  const py = (v: number) => top + plotH - ((v - yr.lo) / (yr.hi - yr.lo)) * plotH;
  // round numbers, printed whole: label() would show 17.25 as 17.3
  const ticks = (r: { lo: number; hi: number; step: number }) => {
    const count = Math.round((r.hi - r.lo) / r.step);
    return Array.from({ length: count + 1 }, (_, i) => Number((r.lo + i * r.step).toPrecision(12)));
  };

  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`);
  out.push(`<rect x="0" y="0" width="${width}" height="${height}" fill="#ffffff"/>`);
  out.push(`<text x="${n(width / 2)}" y="20" text-anchor="middle" font-size="15" font-weight="bold">${escapeXml(title)}</text>`);
  if (chart.subtitle) out.push(`<text x="${n(width / 2)}" y="36" text-anchor="middle" font-size="11" fill="#444444">${escapeXml(chart.subtitle)}</text>`);
  for (const v of ticks(yr)) {
    out.push(`<line x1="${left}" y1="${n(py(v))}" x2="${left + plotW}" y2="${n(py(v))}" stroke="#dddddd"/>`);
    out.push(`<text class="tick" data-value="${v}" x="${left - 6}" y="${n(py(v) + 4)}" text-anchor="end">${v}</text>`);
  }
  for (const v of ticks(xr)) {
    out.push(`<line x1="${n(px(v))}" y1="${top}" x2="${n(px(v))}" y2="${top + plotH}" stroke="#eeeeee"/>`);
    out.push(`<text class="x-tick" data-value="${v}" x="${n(px(v))}" y="${top + plotH + 16}" text-anchor="middle">${v}</text>`);
  }
  out.push(`<line class="y-axis" x1="${left}" y1="${top}" x2="${left}" y2="${top + plotH}" stroke="#000000"/>`);
  out.push(`<line class="x-axis" x1="${left}" y1="${top + plotH}" x2="${left + plotW}" y2="${top + plotH}" stroke="#000000"/>`);
  out.push(`<text x="16" y="${n(top + plotH / 2)}" text-anchor="middle" transform="rotate(-90 16 ${n(top + plotH / 2)})">${escapeXml(yLabel)}</text>`);
  out.push(`<text x="${n(left + plotW / 2)}" y="${height - 10}" text-anchor="middle">${escapeXml(xLabel)}</text>`);
  for (const [si, s] of series.entries()) {
    const colour = PALETTE[si % PALETTE.length];
    const coords = s.points.map((p) => `${n(px(p.x))},${n(py(p.y))}`).join(" ");
    if (s.points.length > 1) out.push(`<polyline class="line" data-series="${escapeXml(s.name)}" points="${coords}" fill="none" stroke="${colour}" stroke-width="2"/>`);
    for (const p of s.points) {
      out.push(
        `<circle class="point" data-series="${escapeXml(s.name)}" data-x="${p.x}" data-y="${p.y}" cx="${n(px(p.x))}" cy="${n(py(p.y))}" r="3.5" fill="${colour}"><title>${escapeXml(`${s.name}: (${label(p.x)}, ${label(p.y)})`)}</title></circle>`,
      );
    }
  }
  let lx = left;
  for (const [si, s] of series.entries()) {
    out.push(`<rect x="${n(lx)}" y="45" width="10" height="10" fill="${PALETTE[si % PALETTE.length]}"/>`);
    out.push(`<text x="${n(lx + 14)}" y="54">${escapeXml(s.name)}</text>`);
    lx += 24 + 7 * s.name.length;
  }
  out.push("</svg>");
  return out.join("\n") + "\n";
}
