// sae.html?sae=<key>: one SAE's summary, its feature map, and a searchable, sortable table of all
// its features. The table renders one page of rows at a time (4,608 features stay responsive);
// the search, sort and page live in the URL's hash, so Back returns to the same view.
"use strict";

(function () {
  const el = Saelab.el;
  const PAGE_ROWS = 50;
  // Numeric columns sort largest first on the first click (the features one looks for), ids and
  // categories in order.
  const COLUMNS = [
    { key: "id", label: "feature", first: "asc", cls: "c-id" },
    { key: "density", label: "density", first: "desc", cls: "c-num" },
    { key: "max", label: "max act.", first: "desc", cls: "c-num" },
    { key: "tokens", label: "top tokens", cls: "c-tokens" },
    { key: "explanation", label: "explanation", cls: "c-expl" },
    { key: "score", label: "score", first: "desc", cls: "c-score" },
    { key: "category", label: "category", first: "asc", cls: "c-cat" },
  ];

  function rowsOf(index) {
    return index.ids.map((id, i) => {
      const tokens = index.tokens[i];
      const visible = tokens.map((t) => t.replace(/\n/g, "↵").replace(/\t/g, "⇥"));
      return {
        id, density: index.density[i], max: index.max[i], tokens, explanation: index.explanation[i],
        score: index.score[i], shuffled: index.shuffled[i], category: index.category[i] || null,
        fires: index.n_fired[i] > 0,
        search: `#${id} ${tokens.join(" ")} ${visible.join(" ")} ${index.explanation[i]} ${index.category[i]}`.toLowerCase(),
      };
    });
  }

  function compare(key, dir) {
    const sign = dir === "asc" ? 1 : -1;
    return (a, b) => {
      const x = a[key], y = b[key];
      if (x === y) return a.id - b.id;
      if (x === null || x === undefined) return 1; // missing values last, whichever the direction
      if (y === null || y === undefined) return -1;
      return (x < y ? -1 : 1) * sign;
    };
  }

  function readState() {
    const h = new URLSearchParams(location.hash.slice(1));
    const sort = COLUMNS.find((c) => c.key === h.get("sort") && c.first) ? h.get("sort") : "id";
    const dir = h.get("dir") === "desc" ? "desc" : h.get("dir") === "asc" ? "asc" : COLUMNS.find((c) => c.key === sort).first;
    return { q: h.get("q") || "", sort, dir, page: Math.max(0, parseInt(h.get("page") || "1", 10) - 1 || 0) };
  }

  function writeState(state) {
    const h = new URLSearchParams();
    if (state.q) h.set("q", state.q);
    if (state.sort !== "id" || state.dir !== "asc") { h.set("sort", state.sort); h.set("dir", state.dir); }
    if (state.page) h.set("page", String(state.page + 1));
    history.replaceState(null, "", `${location.pathname}${location.search}${h.toString() ? "#" + h : ""}`);
  }

  function cells(row, key) {
    const tokens = row.fires ? row.tokens.map((t) => Saelab.chip(t)) : el("span", { class: "muted" }, "never fired");
    const score = row.score === null ? el("span", { class: "muted" }, "–")
      : [el("b", {}, Saelab.num(row.score)), " ", el("span", { class: "muted", title: "shuffled control" },
        `(${Saelab.num(row.shuffled)})`)];
    return [
      el("td", { class: "c-id" }, el("a", { href: Saelab.featureUrl(key, row.id) }, `#${row.id}`)),
      el("td", { class: "c-num", title: `${row.density}` }, Saelab.pct(row.density)),
      el("td", { class: "c-num" }, Saelab.num(row.max)),
      el("td", { class: "c-tokens" }, tokens),
      el("td", { class: "c-expl" }, row.explanation ? el("div", { class: "clamp", title: row.explanation }, row.explanation)
        : el("span", { class: "muted" }, "–")),
      el("td", { class: "c-score" }, score),
      el("td", { class: "c-cat" }, row.category ? el("span", { class: "tag" }, row.category) : ""),
    ];
  }

  function table(index, rows) {
    const state = readState();
    const input = el("input", { type: "search", placeholder: "Search by token, explanation or #id", value: state.q,
      "aria-label": "search features", id: "search" });
    const count = el("span", { class: "count", id: "count" });
    const head = el("tr", {});
    const body = el("tbody", {});
    const pager = el("div", { class: "pager" });
    const metric = `${index.score_metric || "explanation"} score of the first explanation (shuffled control in brackets)`;
    const columns = COLUMNS.map((c) => (c.key === "score" ? { ...c, title: metric } : c));

    function render() {
      writeState(state);
      const q = state.q.trim().toLowerCase();
      const shown = (q ? rows.filter((r) => r.search.includes(q)) : rows.slice()).sort(compare(state.sort, state.dir));
      const pages = Math.max(1, Math.ceil(shown.length / PAGE_ROWS));
      state.page = Math.min(state.page, pages - 1);
      const slice = shown.slice(state.page * PAGE_ROWS, (state.page + 1) * PAGE_ROWS);
      body.replaceChildren(...slice.map((row) => el("tr", { "data-feature": row.id, class: row.fires ? null : "dead",
        onclick: (e) => { if (!e.target.closest("a")) location.href = Saelab.featureUrl(index.key, row.id); } },
        cells(row, index.key))));
      if (!slice.length) body.append(el("tr", {}, el("td", { colspan: COLUMNS.length, class: "empty" }, "No feature matches.")));
      count.textContent = `${Saelab.int(shown.length)} of ${Saelab.int(rows.length)} features`;
      head.replaceChildren(...columns.map((c) => el("th", { class: c.cls + (c.first ? " sortable" : ""),
        "aria-sort": c.key === state.sort ? (state.dir === "asc" ? "ascending" : "descending") : null,
        "data-key": c.key, title: c.title || null, onclick: c.first ? () => sortBy(c) : null },
        c.label, c.key === state.sort ? el("span", { class: "arrow" }, state.dir === "asc" ? " ▲" : " ▼") : null)));
      pager.replaceChildren(
        el("button", { type: "button", disabled: state.page === 0, onclick: () => { state.page -= 1; render(); } }, "‹ Previous"),
        el("span", {}, `page ${state.page + 1} of ${pages}`),
        el("button", { type: "button", disabled: state.page >= pages - 1, onclick: () => { state.page += 1; render(); } }, "Next ›"));
    }

    function sortBy(column) {
      state.dir = state.sort === column.key ? (state.dir === "asc" ? "desc" : "asc") : column.first;
      state.sort = column.key;
      state.page = 0;
      render();
    }

    input.addEventListener("input", () => { state.q = input.value; state.page = 0; render(); });
    render();
    return Saelab.section("Features",
      el("div", { class: "table-tools" }, input, count),
      el("table", { class: "features" }, el("thead", {}, head), body),
      pager);
  }

  Saelab.run(async () => {
    const key = Saelab.param("sae");
    const site = await Saelab.loadJson("site");
    const sae = site.saes.find((s) => s.key === key);
    if (!sae) {
      Saelab.frame(site, [["not found", null]]);
      return Saelab.notFound(`This site holds no SAE named "${key}".`, "index.html", "See the SAEs it holds");
    }
    const index = await Saelab.loadJson(`${key}/index`);
    Saelab.frame(site, [[index.info.hook, null]]);
    const rows = rowsOf(index);
    const info = index.info;
    const mapCard = Saelab.section("Feature map", el("div", { id: "map", class: "map" }));
    Saelab.main().replaceChildren(
      el("div", { class: "page-head" },
        el("h1", {}, info.hook),
        el("p", { class: "sub" }, [info.model, info.release || "SAE from a folder", info.architecture,
          `d_in ${info.d_in}`, `d_sae ${Saelab.int(info.d_sae)}`].join(" · "))),
      el("div", { class: "card summary" }, Saelab.metricsList(index),
        el("div", { class: "scores" }, Saelab.scoreLines(index.explanation_scores))),
      mapCard,
      table(index, rows));
    Saelab.featureMap(document.getElementById("map"), index, rows);
  });
})();
