// feature.html?sae=<key>&f=<id>: one feature's dashboard, laid out like SAEDashboard: what it is
// (explanations, categories, steering unit, histograms, logit effects, neighbours, matches at other
// hooks) on the left, the windows it fires on (top activations, quantile groups) on the right.
"use strict";

(function () {
  const el = Saelab.el;
  const card = Saelab.section;

  function lowerBound(sorted, value) {
    let lo = 0, hi = sorted.length;
    while (lo < hi) { const mid = (lo + hi) >> 1; if (sorted[mid] < value) lo = mid + 1; else hi = mid; }
    return lo;
  }

  const table = (head, rows) => el("table", { class: "mini" },
    el("thead", {}, el("tr", {}, head.map((h) => el("th", {}, h)))),
    el("tbody", {}, rows.map((cells) => el("tr", {}, cells.map((c) => el("td", {}, c))))));

  function explanations(rec) {
    if (!rec.explanations.length) return card("Explanations", Saelab.empty("no explanations"));
    return card("Explanations", rec.explanations.map(([explainer, text, scores, shuffled]) =>
      el("div", { class: "explanation" },
        el("blockquote", {}, text),
        el("div", { class: "muted small" }, `explainer: ${explainer}`),
        Object.keys(scores).length
          ? table(["metric", "score", "shuffled control"], Object.keys(scores).map((m) =>
            [m, el("b", {}, Saelab.num(scores[m])), Saelab.num(shuffled[m])]))
          : Saelab.empty("not scored"))));
  }

  function specialists(rec) {
    if (!rec.specialist.length) return card("Specialist categories", Saelab.empty("no specialist categories"));
    return card("Specialist categories", table(["category", "AUROC", "q", "specialist"],
      rec.specialist.map(([category, auroc, q, is]) => [el("span", { class: "tag" }, category), Saelab.num(auroc),
        Saelab.num(q), is ? "yes" : el("span", { class: "muted" }, "no")])));
  }

  function steering(rec, index) {
    if (rec.n_fired === 0) return card("Steering", Saelab.empty("no steering unit: the feature never fired"));
    const top = index.config && index.config.steering_top;
    return card("Steering",
      el("p", {}, "Strength 1.0 adds ", el("b", { class: "unit" }, Saelab.num(rec.unit)),
        " × the decoder direction", top ? `: the mean peak of its ${top} strongest windows.` : "."));
  }

  // Rows are [token id, effect] or [token id, effect, string] where the string differs from the vocabulary's.
  function logits(rec, names) {
    const list = (items, cls) => items.length
      ? table(["token", "effect"], items.map(([id, value, given]) => [
        Saelab.chip(given ?? names.get(id), `id ${id}`), el("span", { class: cls }, Saelab.num(value))]))
      : Saelab.empty("none");
    return card("Direct logit effect",
      el("div", { class: "two" }, el("div", {}, el("h3", {}, "promoted"), list(rec.promoted, "pos")),
        el("div", {}, el("h3", {}, "suppressed"), list(rec.suppressed, "neg"))),
      Saelab.histogram(rec.logit_hist, { xlabel: "logit effect over the vocabulary", colors: ["#dc2626", "#2563eb"],
        label: "tokens" }));
  }

  function neighbours(rec, index, rows) {
    const link = (f) => el("a", { href: Saelab.featureUrl(index.key, f), class: "feature-link" }, `#${f}`);
    const tokens = (f) => {
      const row = rows.get(f);
      return row ? el("span", { class: "chips" }, row.tokens.slice(0, 3).map((t) => Saelab.chip(t))) : "";
    };
    const decoder = rec.decoder.length
      ? table(["feature", "cosine", "top tokens"], rec.decoder.map(([f, v]) => [link(f), Saelab.num(v), tokens(f)]))
      : Saelab.empty("none");
    const coact = rec.coact.length
      ? table(["feature", "Jaccard", "share", "top tokens"], rec.coact.map(([f, v, share]) =>
        [link(f), Saelab.num(v), Saelab.pct(share), tokens(f)]))
      : Saelab.empty("none");
    return card("Neighbours", el("h3", {}, "by decoder cosine"), decoder, el("h3", {}, "by co-activation"),
      el("p", { class: "muted small" }, "Jaccard index of the tokens where both fire; share of this feature's tokens where the other fires too."),
      coact);
  }

  function matches(rec, site, sae) {
    if (!rec.matches.length) return card("At other hooks", Saelab.empty("no matches at other hooks"));
    const keyOf = new Map(site.saes.filter((s) => s.info.model === sae.info.model).map((s) => [s.info.hook, s.key]));
    return card("At other hooks", table(["hook", "feature", "similarity", "vs null"],
      rec.matches.map(([hook, f, sim, good]) => [
        hook,
        keyOf.has(hook) ? el("a", { href: Saelab.featureUrl(keyOf.get(hook), f), class: "match-link", "data-hook": hook },
          `#${f}`) : el("span", { title: "this site does not hold that SAE" }, `#${f}`),
        Saelab.num(sim),
        good ? el("span", { class: "good" }, "above") : el("span", { class: "muted" }, "below")])));
  }

  function header(rec, index, pos) {
    const ids = index.ids;
    const nav = el("nav", { class: "feature-nav" },
      pos > 0 ? el("a", { class: "button", href: Saelab.featureUrl(index.key, ids[pos - 1]), id: "prev" }, `‹ #${ids[pos - 1]}`) : null,
      el("a", { class: "button", href: Saelab.saeUrl(index.key), id: "back" }, "All features"),
      pos < ids.length - 1 ? el("a", { class: "button", href: Saelab.featureUrl(index.key, ids[pos + 1]), id: "next" }, `#${ids[pos + 1]} ›`) : null);
    const first = rec.explanations[0];
    const stat = (label, value) => el("div", { class: "stat" }, el("span", {}, label), el("b", {}, value));
    return [
      el("div", { class: "page-head feature-head" },
        el("div", {}, el("h1", {}, `Feature ${rec.f}`),
          el("p", { class: "sub" }, first ? first[1] : el("span", { class: "muted" }, "no explanation"))), nav),
      el("div", { class: "stats" },
        stat("density", Saelab.pct(rec.density)), stat("fired on", `${Saelab.int(rec.n_fired)} tokens`),
        stat("max activation", Saelab.num(rec.max)), stat("mean when firing", Saelab.num(rec.mean)),
        stat("steering unit", Saelab.num(rec.unit)))];
  }

  // The right column: top windows, then the quantile groups (strongest first); their tokens load after.
  function activations(rec, index, store) {
    if (rec.n_fired === 0) {
      return [el("div", { class: "card never", id: "never" },
        el("h2", {}, `Never fired on ${Saelab.int(index.info.n_tokens)} tokens`),
        el("p", {}, `Feature ${rec.f} was not active on any token this dashboard read (${index.info.source}).`))];
    }
    const vmax = rec.max > 0 ? rec.max : 1;
    const label = `feature ${rec.f}:`;
    const top = el("div", { class: "windows", id: "top" }, el("p", { class: "loading" }, "Loading windows…"));
    const groups = rec.quantiles.slice().sort((x, y) => y[1] - x[1]).map(([low, high, share, refs]) => ({ low, high, share, refs,
      box: el("div", { class: "windows" }, el("p", { class: "loading" }, "Loading windows…")) }));
    const all = [...rec.top, ...groups.flatMap((g) => g.refs)].map((r) => r[0]);
    store.windows(all).then((wins) => {
      const rowsOf = (refs) => refs.map((r) => Saelab.windowRow(wins.get(r[0]), Saelab.windowActs(r, rec.exponent), vmax, label));
      top.replaceChildren(...(rec.top.length ? rowsOf(rec.top) : [Saelab.empty("no windows")]));
      // A group whose every window is already among the top activations shows none twice.
      const already = Saelab.empty("its windows are all among the top activations above");
      for (const g of groups) g.box.replaceChildren(...(g.refs.length ? rowsOf(g.refs) : [already.cloneNode(true)]));
    }).catch(Saelab.fail);
    // One read-out for every window, kept in view while scrolling: what the hovered token is.
    const readout = el("span", { class: "readout", id: "readout" }, "hover a token for its activation");
    const legend = el("div", { class: "legend sticky" }, "activation 0", el("span", { class: "scale" }), Saelab.num(vmax),
      el("span", { class: "muted key" }, "↵ = line break, · = space"), readout);
    return [
      legend,
      card(`Top activations`, top),
      groups.length ? card("Quantile groups", el("p", { class: "muted small" },
        "Activating windows grouped by their peak; each group holds an equal share of them."),
        groups.map((g) => el("div", { class: "group" },
          el("h3", {}, `${Saelab.num(g.low)} to ${Saelab.num(g.high)}`,
            el("span", { class: "muted" }, ` · ${Saelab.pct(g.share, 2)} of activating windows`)), g.box)))
        : card("Quantile groups", Saelab.empty("every activating window this dashboard saw is among the top activations above"))];
  }

  Saelab.run(async () => {
    const key = Saelab.param("sae");
    const f = Number(Saelab.param("f"));
    const site = await Saelab.loadJson("site");
    const sae = site.saes.find((s) => s.key === key);
    if (!sae) {
      Saelab.frame(site, [["not found", null]]);
      return Saelab.notFound(`This site holds no SAE named "${key}".`, "index.html", "See the SAEs it holds");
    }
    const index = await Saelab.loadJson(`${key}/index`);
    const pos = lowerBound(index.ids, f);
    Saelab.frame(site, [[index.info.hook, Saelab.saeUrl(key)], [`#${Saelab.param("f")}`, null]]);
    if (!Number.isInteger(f) || index.ids[pos] !== f) {
      return Saelab.notFound(`Feature ${Saelab.param("f")} is not in this dashboard: it holds ${Saelab.int(index.ids.length)} ` +
        `features of ${Saelab.int(index.info.d_sae)}.`, Saelab.saeUrl(key), "Back to the feature index");
    }
    const store = new Saelab.WindowStore(index.model_key, index.shard);
    const [batch, names] = await Promise.all([Saelab.loadJson(`${key}/f${Math.floor(pos / index.batch)}`), store.names()]);
    const rec = batch.features.find((r) => r.f === f);
    const rows = new Map(index.ids.map((id, i) => [id, { tokens: index.tokens[i] }]));
    Saelab.main().replaceChildren(...header(rec, index, pos),
      el("div", { class: "feature-grid" },
        el("div", { class: "col-side" }, explanations(rec), specialists(rec), steering(rec, index),
          card("Activation histogram", Saelab.histogram(rec.hist, { xlabel: "activation where it fires", label: "tokens" })),
          logits(rec, names), neighbours(rec, index, rows), matches(rec, site, sae)),
        el("div", { class: "col-main" }, activations(rec, index, store))));
    Saelab.main().addEventListener("mouseover", (e) => {
      const tok = e.target.closest && e.target.closest(".win .tok");
      const readout = document.getElementById("readout");
      if (tok && readout) readout.textContent = tok.title;
    });
    document.addEventListener("keydown", (e) => {
      if (e.target.closest("input, select, textarea") || e.altKey || e.ctrlKey || e.metaKey) return;
      const go = e.key === "ArrowLeft" ? "prev" : e.key === "ArrowRight" ? "next" : null;
      if (go && document.getElementById(go)) location.href = document.getElementById(go).href;
    });
  });
})();
