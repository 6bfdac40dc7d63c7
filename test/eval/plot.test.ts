/**
 * src/eval/plot: the SVG is well-formed XML (checked by a small independent tag/attribute parser), every
 * bar stands on the axis baseline with a height that is value / axis maximum of the plot height (the
 * axis maximum read back from the top tick label), missing values draw nothing, text is escaped; the
 * Markdown table has one line per row and escapes pipes; line-chart markers sit where a linear map of the
 * axis range (read back from the tick labels) puts them, and the polylines join them in order.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { barChartSvg, lineChartSvg, markdownTable, niceCeil, niceRange } from "../../src/eval/plot.js";

interface Element {
  name: string;
  attrs: Record<string, string>;
  text: string;
  children: Element[];
}

/** A strict parser for the XML subset an SVG writer emits: elements, quoted attributes, text, entities. */
function parseXml(src: string): Element {
  let i = 0;
  const fail = (why: string): never => {
    throw new Error(`${why} at offset ${i}: ${JSON.stringify(src.slice(i, i + 40))}`);
  };
  const entity = (s: string) => {
    const bad = /&(?!(amp|lt|gt|quot|apos);)/.exec(s);
    if (bad) fail(`a bare & in ${JSON.stringify(s)}`);
    return s.replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&quot;/g, '"').replace(/&apos;/g, "'").replace(/&amp;/g, "&");
  };
  const skipSpace = () => {
    while (/\s/.test(src[i] ?? "")) i++;
  };
  const element = (): Element => {
    if (src[i] !== "<") fail("expected <");
    i++;
    const name = /^[A-Za-z][\w:.-]*/.exec(src.slice(i))?.[0] ?? fail("expected a tag name");
    i += name.length;
    const attrs: Record<string, string> = {};
    for (;;) {
      skipSpace();
      if (src.startsWith("/>", i)) {
        i += 2;
        return { name, attrs, text: "", children: [] };
      }
      if (src[i] === ">") {
        i++;
        break;
      }
      const m = /^([A-Za-z][\w:.-]*)="([^"<]*)"/.exec(src.slice(i)) ?? fail("expected name=\"value\"");
      if (m[1]! in attrs) fail(`attribute ${m[1]} twice`);
      attrs[m[1]!] = entity(m[2]!);
      i += m[0].length;
    }
    const children: Element[] = [];
    let text = "";
    for (;;) {
      if (src.startsWith("</", i)) {
        i += 2;
        if (!src.startsWith(`${name}>`, i)) fail(`expected </${name}>`);
        i += name.length + 1;
        return { name, attrs, text, children };
      }
      if (src[i] === "<") children.push(element());
      else if (i >= src.length) fail(`unclosed <${name}>`);
      else {
        const end = src.indexOf("<", i);
        if (end < 0) fail(`unclosed <${name}>`);
        text += entity(src.slice(i, end));
        i = end;
      }
    }
  };
  skipSpace();
  const root = element();
  skipSpace();
  if (i !== src.length) fail("content after the root element");
  return root;
}

const all = (e: Element): Element[] => [e, ...e.children.flatMap(all)];

const CHART = {
  title: 'Decode <tokens/s> & "friends"',
  subtitle: "device A & B",
  yLabel: "tokens/s",
  groups: ["1B f16", "1B q4_0", "8B f16"],
  series: [
    { name: "Frugal", values: [212.5, 401, 33.25] },
    { name: "llama.cpp", values: [250, undefined, 41] },
    { name: "roofline", values: [1337.75, 2980, 187] },
  ],
};

test("the SVG is well-formed and its text is escaped", () => {
  const svg = barChartSvg(CHART);
  const root = parseXml(svg);
  assert.equal(root.name, "svg");
  assert.equal(root.attrs.xmlns, "http://www.w3.org/2000/svg");
  const texts = all(root).filter((e) => e.name === "text").map((e) => e.text);
  assert.ok(texts.includes(CHART.title));
  assert.ok(texts.includes(CHART.subtitle));
  for (const g of CHART.groups) assert.ok(texts.includes(g), g);
  for (const s of CHART.series) assert.ok(texts.includes(s.name), s.name);
});

test("bar heights are value / axis maximum of the plot height, on the baseline", () => {
  const root = parseXml(barChartSvg(CHART));
  const els = all(root);
  const axis = els.find((e) => e.name === "line" && e.attrs.class === "y-axis")!;
  const baseline = els.find((e) => e.name === "line" && e.attrs.class === "baseline")!;
  const baseY = Number(baseline.attrs.y1);
  assert.equal(Number(axis.attrs.y2), baseY);
  const plotH = baseY - Number(axis.attrs.y1);
  // the axis runs from 0 to its largest tick label: 2980 rounds up to 5000
  const yMax = Math.max(...els.filter((e) => e.attrs.class === "tick").map((e) => Number(e.text)));
  assert.equal(yMax, 5000);
  const bars = els.filter((e) => e.name === "rect" && e.attrs.class === "bar");
  const expected = CHART.series.flatMap((s) => s.values.filter((v) => v !== undefined));
  assert.equal(bars.length, expected.length, "one bar per defined value, none for the missing one");
  for (const b of bars) {
    const v = Number(b.attrs["data-value"]);
    const s = CHART.series.find((x) => x.name === b.attrs["data-series"])!;
    assert.equal(s.values[CHART.groups.indexOf(b.attrs["data-group"]!)], v);
    const h = Number(b.attrs.height);
    assert.ok(Math.abs(h - (v / yMax) * plotH) <= 5e-4, `${b.attrs["data-series"]} ${b.attrs["data-group"]}: height ${h} for ${v}`);
    assert.ok(Math.abs(Number(b.attrs.y) + h - baseY) <= 1e-3, "stands on the baseline");
  }
  // heights are proportional to each other as the values are
  const [a, b] = [bars[0]!, bars[bars.length - 1]!];
  const ratio = Number(a.attrs.height) / Number(b.attrs.height) / (Number(a.attrs["data-value"]) / Number(b.attrs["data-value"]));
  assert.ok(Math.abs(ratio - 1) < 1e-4);
});

test("the axis maximum is the next 1, 2, 2.5 or 5 times a power of ten", () => {
  assert.deepEqual([0.7, 1, 1.2, 2.2, 3, 2980, 5001, 99].map(niceCeil), [1, 1, 2, 2.5, 5, 5000, 10000, 100]);
});

test("bad series are refused", () => {
  assert.throws(() => barChartSvg({ ...CHART, series: [{ name: "x", values: [1] }] }), /1 values for 3 groups/);
  assert.throws(() => barChartSvg({ ...CHART, series: [{ name: "x", values: [1, -2, 3] }] }), /negative/);
});

test("markdown table: header, alignment row, one line per row, pipes escaped", () => {
  const md = markdownTable(["model", "t/s"], [["a|b", 12.5], ["c", 3]], [false, true]);
  assert.equal(md, "| model | t/s |\n| --- | ---: |\n| a\\|b | 12.5 |\n| c | 3 |\n");
  assert.throws(() => markdownTable(["a", "b"], [["only one"]]), /1 cells for 2 columns/);
});

const LINES = {
  title: "perplexity vs <compression> & rank",
  xLabel: "bits per weight",
  yLabel: "perplexity",
  series: [
    { name: "RaZeR", points: [{ x: 16, y: 17.4 }, { x: 8, y: 17.41 }, { x: 4.5, y: 18.2 }, { x: 4.25, y: 18.9 }] },
    { name: "q4_0", points: [{ x: 4.5, y: 19.75 }] },
    { name: "empty", points: [] },
  ],
};

test("line chart: well-formed, markers at the linear map of the tick range, lines join them in order", () => {
  const root = parseXml(lineChartSvg(LINES));
  assert.equal(root.name, "svg");
  const els = all(root);
  assert.ok(els.some((e) => e.name === "text" && e.text === LINES.title));
  const yAxis = els.find((e) => e.attrs.class === "y-axis")!;
  const xAxis = els.find((e) => e.attrs.class === "x-axis")!;
  const [x0, x1] = [Number(xAxis.attrs.x1), Number(xAxis.attrs.x2)];
  const [yTop, yBottom] = [Number(yAxis.attrs.y1), Number(yAxis.attrs.y2)];
  const range = (cls: string) => {
    const v = els.filter((e) => e.attrs.class === cls).map((e) => Number(e.text));
    return [Math.min(...v), Math.max(...v)] as const;
  };
  const [xlo, xhi] = range("x-tick");
  const [ylo, yhi] = range("tick");
  const data = LINES.series.flatMap((s) => s.points);
  assert.ok(xlo <= Math.min(...data.map((p) => p.x)) && xhi >= 16, `x ticks ${xlo}..${xhi}`);
  assert.ok(ylo <= 17.4 && yhi >= 19.75, `y ticks ${ylo}..${yhi}`);
  const markers = els.filter((e) => e.name === "circle" && e.attrs.class === "point");
  assert.equal(markers.length, data.length);
  for (const m of markers) {
    const [x, y] = [Number(m.attrs["data-x"]), Number(m.attrs["data-y"])];
    assert.ok(data.some((p) => p.x === x && p.y === y));
    assert.ok(Math.abs(Number(m.attrs.cx) - (x0 + ((x - xlo) / (xhi - xlo)) * (x1 - x0))) <= 1e-3);
    assert.ok(Math.abs(Number(m.attrs.cy) - (yBottom - ((y - ylo) / (yhi - ylo)) * (yBottom - yTop))) <= 1e-3);
  }
  const lines = els.filter((e) => e.name === "polyline");
  assert.deepEqual(lines.map((l) => l.attrs["data-series"]), ["RaZeR"], "single points and empty series draw no line");
  const ownMarkers = markers.filter((m) => m.attrs["data-series"] === "RaZeR").map((m) => `${m.attrs.cx},${m.attrs.cy}`);
  assert.equal(lines[0]!.attrs.points, ownMarkers.join(" "));
});

test("line chart: yFromZero starts the axis at 0; non-finite points are refused", () => {
  const els = all(parseXml(lineChartSvg({ ...LINES, yFromZero: true })));
  assert.equal(Math.min(...els.filter((e) => e.attrs.class === "tick").map((e) => Number(e.text))), 0);
  assert.throws(() => lineChartSvg({ ...LINES, series: [{ name: "bad", points: [{ x: 1, y: NaN }] }] }), /series bad: point 0/);
});

test("niceRange: round steps, a range that covers the data by less than one step each side", () => {
  for (const [min, max] of [[4.25, 16], [17.4, 19.75], [-3, 7], [0.001, 0.0042], [5, 5], [0, 0]] as const) {
    const { lo, hi, step } = niceRange(min, max);
    assert.ok(lo <= min && hi >= max && hi > lo, `${min}..${max} -> ${lo}..${hi}`);
    if (max > min) assert.ok(min - lo < step + 1e-12 && hi - max < step + 1e-12);
    assert.equal(niceCeil(step), step, `step ${step} is round`);
    assert.ok(Math.abs(lo / step - Math.round(lo / step)) < 1e-9);
  }
});
