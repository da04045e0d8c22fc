// A small line chart in inline SVG, built with DOM calls (no library, no inline style).
const SVG = "http://www.w3.org/2000/svg";

function svg(tag, attributes = {}, ...children) {
  const element = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) element.setAttribute(name, String(value));
  for (const child of children) element.append(child);
  return element;
}

/**
 * series: [{name, className, values: number[]}] (all the same length, oldest first);
 * labels: the x axis' first and last labels.
 */
export function lineChart({ title, series, labels }) {
  const width = 720;
  const height = 220;
  const pad = { left: 40, right: 12, top: 12, bottom: 28 };
  const points = series[0]?.values.length ?? 0;
  const top = Math.max(1, ...series.flatMap((s) => s.values));
  const x = (i) => pad.left + (i * (width - pad.left - pad.right)) / Math.max(1, points - 1);
  const y = (v) => height - pad.bottom - (v * (height - pad.top - pad.bottom)) / top;
  const summary = series.map((s) => `${s.name}: ${s.values.reduce((a, b) => a + b, 0)}`).join(", ");
  const chart = svg(
    "svg",
    { viewBox: `0 0 ${width} ${height}`, role: "img", class: "chart", "aria-label": `${title}. ${summary}` },
    svg("title", {}, `${title}. ${summary}`),
  );
  for (const tick of [0, Math.round(top / 2), top]) {
    chart.append(
      svg("line", { x1: pad.left, x2: width - pad.right, y1: y(tick), y2: y(tick), class: "grid" }),
      svg("text", { x: pad.left - 6, y: y(tick) + 4, class: "axis", "text-anchor": "end" }, String(tick)),
    );
  }
  chart.append(
    svg("text", { x: pad.left, y: height - 8, class: "axis" }, labels[0]),
    svg("text", { x: width - pad.right, y: height - 8, class: "axis", "text-anchor": "end" }, labels[1]),
  );
  for (const each of series) {
    const path = each.values.map((v, i) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`).join(" ");
    chart.append(svg("polyline", { points: path, class: `line ${each.className}` }));
  }
  return chart;
}
