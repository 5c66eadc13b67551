// Shared by every page: reading the data scripts, building DOM safely, formatting numbers, the top bar.
//
// Data files are scripts that call saelabPack(key, bytes) (see encode.py): Chromium refuses fetch()
// and XHR of local files from a file:// page, but runs a <script src> beside it. The script is loaded
// with charset="x-user-defined", which maps every byte to one character, so charCodeAt(i) & 0xFF gives
// the gzip bytes back; DecompressionStream('gzip') inflates them.
"use strict";

const Saelab = {};
window.Saelab = Saelab;

(function () {
  const waiting = new Map(); // key -> {resolve, reject}
  const loaded = new Map(); // key -> Promise<Uint8Array>

  window.saelabPack = function (key, packed) {
    const entry = waiting.get(key);
    if (!entry) return;
    waiting.delete(key);
    const bytes = new Uint8Array(packed.length);
    for (let i = 0; i < packed.length; i++) bytes[i] = packed.charCodeAt(i) & 0xff;
    const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
    new Response(stream).arrayBuffer().then((buffer) => entry.resolve(new Uint8Array(buffer)), entry.reject);
  };

  // The payload of data/<key>.js as bytes (each file is read once per page).
  Saelab.load = function (key) {
    if (!loaded.has(key)) {
      loaded.set(key, new Promise((resolve, reject) => {
        waiting.set(key, { resolve, reject });
        const script = document.createElement("script");
        script.setAttribute("charset", "x-user-defined");
        script.src = `data/${key}.js`;
        script.onerror = () => reject(new Error(`could not read data/${key}.js: is the site folder complete?`));
        script.onload = () => {
          script.remove();
          if (waiting.delete(key)) reject(new Error(`data/${key}.js did not hand over its data: is it damaged?`));
        };
        document.head.appendChild(script);
      }));
    }
    return loaded.get(key);
  };

  Saelab.loadJson = async function (key) {
    return JSON.parse(new TextDecoder("utf-8").decode(await Saelab.load(key)));
  };

  // Non-negative LEB128 varints (7 bits a byte, high bit set on all but the last byte of a number).
  Saelab.varints = function (bytes) {
    const out = [];
    let value = 0, shift = 0;
    for (let i = 0; i < bytes.length; i++) {
      const b = bytes[i];
      value += (b & 0x7f) * 2 ** shift;
      if (b & 0x80) { shift += 7; } else { out.push(value); value = 0; shift = 0; }
    }
    return out;
  };
})();

// -- DOM ----------------------------------------------------------------------------------------

// el("a", {href: "x", class: "y"}, "text", child, ...): strings become text nodes, never HTML.
Saelab.el = function (tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (name === "style" && typeof value === "object") Object.assign(node.style, value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
};

Saelab.section = function (title, ...children) {
  return Saelab.el("section", { class: "card" }, Saelab.el("h2", {}, title), ...children);
};

Saelab.empty = function (text) {
  return Saelab.el("p", { class: "empty" }, text);
};

// -- URLs ---------------------------------------------------------------------------------------

Saelab.param = (name) => new URLSearchParams(location.search).get(name);
Saelab.saeUrl = (key) => `sae.html?sae=${encodeURIComponent(key)}`;
Saelab.featureUrl = (key, f) => `feature.html?sae=${encodeURIComponent(key)}&f=${f}`;

// -- numbers ------------------------------------------------------------------------------------

Saelab.NOT_MEASURED = "not measured";

// 3 significant digits, no exponent for ordinary sizes; "–" for a missing value.
Saelab.num = function (x, digits = 3) {
  if (x === null || x === undefined) return "–";
  if (typeof x === "string") return x; // "nan", "inf" as written by the site
  if (x === 0) return "0";
  const abs = Math.abs(x);
  if (abs >= 1e6 || abs < 1e-3) return x.toExponential(digits - 1).replace("e+", "e");
  return String(Number(x.toPrecision(digits)));
};

Saelab.int = (x) => (x === null || x === undefined ? "–" : Math.round(x).toLocaleString("en-US"));

Saelab.pct = function (x, digits = 3) {
  if (x === null || x === undefined) return "–";
  if (typeof x === "string") return x;
  if (x === 0) return "0%";
  return `${Saelab.num(100 * x, digits)}%`;
};

// A summary metric: "not measured" where the build did not measure it.
Saelab.metric = function (value, kind) {
  if (value === null || value === undefined) return Saelab.NOT_MEASURED;
  return kind === "pct" ? Saelab.pct(value) : kind === "int" ? Saelab.int(value) : Saelab.num(value);
};

// [label, metric name, kind]: the summary every SAE shows, in order (None: "not measured").
Saelab.METRICS = [
  ["L0", "l0", "num"],
  ["explained variance", "explained_variance", "pct"],
  ["CE loss recovered", "ce_loss_recovered", "pct"],
  ["dead features", "dead_fraction", "pct"],
  ["dense features", "dense_fraction", "pct"],
];

// An SAE's summary as a definition list: features, the metrics, tokens read.
Saelab.metricsList = function (sae) {
  const el = Saelab.el;
  const item = (label, text, muted) => el("div", {}, el("dt", {}, label), el("dd", { class: muted ? "muted" : null }, text));
  return el("dl", { class: "metrics" },
    item("features", `${Saelab.int(sae.n_features)} of ${Saelab.int(sae.info.d_sae)}`),
    Saelab.METRICS.map(([label, name, kind]) => {
      const value = sae.metrics[name];
      return item(label, Saelab.metric(value, kind), value === null || value === undefined);
    }),
    item("tokens read", Saelab.int(sae.info.n_tokens)));
};

// The explanation scores of an SAE: each median beside its shuffled control.
Saelab.scoreLines = function (rows) {
  const el = Saelab.el;
  if (!rows.length) return el("span", { class: "muted" }, "no explanations");
  return rows.map((r) => el("div", {},
    `${r.explainer} · ${r.metric}: median `, el("b", {}, Saelab.num(r.median)),
    el("span", { class: "muted" }, ` (shuffled control ${Saelab.num(r.median_shuffled)})`)));
};

// -- page frame ---------------------------------------------------------------------------------

// The top bar: the site's title, then one crumb per level ([text, href] pairs; the last is the page).
Saelab.frame = function (site, crumbs) {
  document.title = [...crumbs.map((c) => c[0])].reverse().concat(site ? [site.title] : []).join(" · ");
  const bar = document.getElementById("crumbs");
  bar.replaceChildren(Saelab.el("a", { class: "brand", href: "index.html" }, site ? site.title : "saelab"));
  for (const [text, href] of crumbs) {
    bar.append(Saelab.el("span", { class: "sep" }, "›"));
    bar.append(href ? Saelab.el("a", { href }, text) : Saelab.el("span", { class: "here" }, text));
  }
};

Saelab.main = () => document.getElementById("main");

// A failure the reader should see (and the console too, so that tests notice it).
Saelab.fail = function (error) {
  console.error(error);
  Saelab.main().replaceChildren(Saelab.el("div", { class: "card error" },
    Saelab.el("h2", {}, "This page could not be shown"),
    Saelab.el("p", {}, String(error && error.message ? error.message : error)),
    Saelab.el("p", {}, Saelab.el("a", { href: "index.html" }, "Back to the list of SAEs"))));
};

// A missing item (unknown SAE or feature): a plain message, not an error.
Saelab.notFound = function (text, href, label) {
  Saelab.main().replaceChildren(Saelab.el("div", { class: "card notice" },
    Saelab.el("p", {}, text), Saelab.el("p", {}, Saelab.el("a", { href }, label))));
};

Saelab.run = function (page) {
  const start = () => page().catch(Saelab.fail);
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
};
