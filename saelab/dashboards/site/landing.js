// index.html: the SAEs of this site, each with its summary metrics, linking to its feature index.
"use strict";

(function () {
  const el = Saelab.el;

  function card(sae) {
    const info = sae.info;
    const specialists = sae.n_specialists
      ? `${Saelab.int(sae.n_specialists)} specialist features (${sae.specialist_categories.join(", ")})`
      : "no specialist features";
    return el("article", { class: "card sae-card", "data-sae": sae.key },
      el("h2", {}, el("a", { href: Saelab.saeUrl(sae.key) }, info.hook)),
      el("p", { class: "sub" }, [info.release || "SAE from a folder", info.sae_id !== info.hook ? info.sae_id : null,
        info.architecture, `d_in ${info.d_in}`, `d_sae ${Saelab.int(info.d_sae)}`].filter(Boolean).join(" · ")),
      Saelab.metricsList(sae),
      el("div", { class: "scores" }, Saelab.scoreLines(sae.explanation_scores)),
      el("p", { class: "muted small" }, specialists),
      el("p", { class: "muted small source", title: info.source }, `read: ${info.source}`),
      el("a", { class: "button", href: Saelab.saeUrl(sae.key) }, "Browse features →"));
  }

  Saelab.run(async () => {
    const site = await Saelab.loadJson("site");
    Saelab.frame(site, []);
    const models = [...new Set(site.saes.map((s) => s.info.model))];
    Saelab.main().replaceChildren(
      el("div", { class: "page-head" },
        el("h1", {}, site.title),
        el("p", { class: "sub" }, `${site.saes.length} SAE${site.saes.length === 1 ? "" : "s"} of ${models.join(", ")}. `,
          "Open one to search and sort its features, see the feature map, and every feature's dashboard.")),
      el("div", { class: "sae-grid" }, site.saes.map(card)));
  });
})();
