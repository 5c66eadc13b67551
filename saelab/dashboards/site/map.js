// The feature map of an SAE's index page: a plotly scatter of every feature's map position, coloured
// by log density, category or explanation score; clicking a point opens that feature. plotly.js is
// the copy in assets/, loaded only once the table is on screen (it is ~5 MB of script).
"use strict";

(function () {
  const el = Saelab.el;
  const NONE = "#b8bec8";

  function loadPlotly() {
    if (window.Plotly) return Promise.resolve(window.Plotly);
    return new Promise((resolve, reject) => {
      const script = document.createElement("script");
      script.src = "assets/plotly.min.js";
      script.onload = () => resolve(window.Plotly);
      script.onerror = () => reject(new Error("could not read assets/plotly.min.js"));
      document.head.append(script);
    });
  }

  // Plotly reads a small set of HTML tags in hover text; a token such as "<b>" must stay text.
  const escape = (s) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");

  function hover(row) {
    const tokens = row.tokens.map((t) => JSON.stringify(t)).join(" ");
    const expl = row.explanation ? `<br>${escape(row.explanation.slice(0, 90))}` : "";
    return `<b>#${row.id}</b> · density ${Saelab.pct(row.density)}<br>${escape(tokens)}${expl}`;
  }

  function traces(points, colourBy) {
    const base = (pts) => ({
      type: "scatter", mode: "markers", x: pts.map((p) => p.x), y: pts.map((p) => p.y),
      customdata: pts.map((p) => p.row.id), hovertext: pts.map((p) => hover(p.row)), hoverinfo: "text",
    });
    if (colourBy === "category") {
      const names = [...new Set(points.map((p) => p.row.category || ""))].sort((a, b) => (a === "") - (b === "") || a.localeCompare(b));
      return names.map((name) => {
        const pts = points.filter((p) => (p.row.category || "") === name);
        return { ...base(pts), name: name || "no category", marker: { size: 6, color: name ? undefined : NONE, opacity: 0.85 } };
      });
    }
    const value = colourBy === "score" ? (r) => r.score : (r) => (r.density > 0 ? Math.log10(r.density) : null);
    const title = colourBy === "score" ? "score" : "log₁₀ density";
    return [{ ...base(points), showlegend: false, marker: { size: 6, opacity: 0.85, color: points.map((p) => value(p.row) ?? NaN),
      colorscale: "Viridis", colorbar: { title: { text: title, side: "right" }, thickness: 12 }, line: { width: 0 } } }];
  }

  Saelab.featureMap = function (container, index, rows) {
    const byId = new Map(rows.map((r) => [r.id, r]));
    const points = index.ids.map((id, i) => ({ x: index.x[i], y: index.y[i], row: byId.get(id) }))
      .filter((p) => p.x !== null && p.y !== null);
    if (!points.length) {
      container.replaceWith(Saelab.empty("No feature map: these dashboards were built without map positions."));
      return;
    }
    const select = el("select", { "aria-label": "colour the map by" },
      el("option", { value: "density" }, "colour: log density"),
      el("option", { value: "category" }, "colour: category"),
      el("option", { value: "score" }, "colour: explanation score"));
    const method = index.map_method ? `${index.map_method} of the decoder directions` : "map positions";
    const note = el("span", { class: "muted small" },
      `${Saelab.int(points.length)} features, ${method}; click a point to open its feature.`);
    const plot = el("div", { class: "map-plot" });
    container.replaceChildren(el("div", { class: "table-tools" }, select, note), plot);
    const axis = { showticklabels: false, zeroline: false, showgrid: false, title: { text: "" } };
    const layout = { margin: { l: 10, r: 10, t: 10, b: 10 }, height: 420, hovermode: "closest", xaxis: axis,
      yaxis: axis, legend: { orientation: "h", y: -0.02 }, paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "#fbfcfd" };
    // No "share chart" button: it would upload the chart to Plotly Cloud.
    const config = { responsive: true, displaylogo: false, showSendToCloud: false,
      modeBarButtonsToRemove: ["select2d", "lasso2d"] };
    loadPlotly().then((Plotly) => {
      const draw = () => Plotly.react(plot, traces(points, select.value), layout, config);
      draw().then(() => plot.on("plotly_click", (event) => {
        location.href = Saelab.featureUrl(index.key, event.points[0].customdata);
      }));
      select.addEventListener("change", draw);
    }).catch(Saelab.fail);
  };
})();
