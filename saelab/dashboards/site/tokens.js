// Tokens as a reader should see them, highlighted windows, the windows' tokens, and histograms.
"use strict";

(function () {
  const el = Saelab.el;
  const GLYPHS = { "\n": "↵", "\r": "␍", "\t": "⇥" };
  const HIGHLIGHT = "255, 140, 0"; // orange, as in saelab.viz.highlight

  // The token's characters as nodes: line breaks and tabs become grey glyphs, and spaces become grey
  // middle dots where they would vanish (a token of spaces only, or every space when `chip`, a token
  // shown alone). Text nodes only, so nothing in a token is ever read as HTML.
  Saelab.tokenNodes = function (token, chip) {
    const dots = chip || /^[ \t\r\n]+$/.test(token);
    const nodes = [];
    let run = "";
    for (const char of token) {
      const glyph = GLYPHS[char] || (char === " " && dots ? "·" : null);
      if (glyph === null) { run += char; continue; }
      if (run) nodes.push(document.createTextNode(run));
      run = "";
      nodes.push(el("span", { class: "ws" }, glyph));
    }
    if (run) nodes.push(document.createTextNode(run));
    if (!nodes.length) nodes.push(el("span", { class: "ws" }, "∅"));
    return nodes;
  };

  // A token shown on its own (tables, lists), its exact string in the tooltip.
  Saelab.chip = function (token, extra) {
    return el("span", { class: "chip", title: JSON.stringify(token) + (extra ? ` · ${extra}` : "") },
      Saelab.tokenNodes(token, true));
  };

  // One window, each token shaded by activation / vmax; the value is in the token's tooltip and
  // data-act. A token shown as "" holds the first bytes of a character that the next token completes
  // (saelab.extract.token_strings): it is drawn with that token, at the larger of their values.
  Saelab.windowRow = function (win, acts, vmax, label) {
    const text = el("div", { class: "win-text" });
    let held = [];
    let peak = 0;
    const flush = (token, pos) => {
      const value = Math.max(...held.map((p) => acts.get(p) || 0));
      const tip = [JSON.stringify(token), `id ${win.ids[pos]}`, `${label} ${Saelab.num(value)}`];
      if (held.length > 1) tip.push(`${held.length} tokens`);
      const span = el("span", { class: value > 0 ? "tok on" : "tok", title: tip.join(" · "), "data-act": value,
        "data-pos": pos }, Saelab.tokenNodes(token, false));
      if (value > 0) span.style.backgroundColor = `rgba(${HIGHLIGHT}, ${Math.min(1, value / vmax).toFixed(3)})`;
      text.append(span);
      peak = Math.max(peak, value);
      held = [];
    };
    win.tokens.forEach((token, pos) => {
      held.push(pos);
      if (token !== "") flush(token, pos);
    });
    if (held.length) flush("\ufffd", held[0]);
    const where = `sequence ${win.seq}, tokens ${win.start}–${win.start + win.tokens.length - 1}`;
    return el("div", { class: "win" },
      el("span", { class: "win-peak", title: `largest activation in this window (${where})` }, Saelab.num(peak)), text);
  };

  // Activations of a window from its record: [window index, position, value, ...], values in units
  // of 10**exponent.
  Saelab.windowActs = function (ref, exponent) {
    const acts = new Map();
    const unit = 10 ** exponent;
    for (let i = 1; i + 1 < ref.length; i += 2) acts.set(ref[i], ref[i + 1] * unit);
    return acts;
  };

  // The tokens of the site's windows of one model: its vocabulary and shards, read as needed.
  Saelab.WindowStore = class {
    constructor(modelKey, shardSize) {
      this.modelKey = modelKey;
      this.shardSize = shardSize;
      this.shards = new Map();
    }

    vocab() {
      if (!this._vocab) this._vocab = Saelab.loadJson(`${this.modelKey}/vocab`);
      return this._vocab;
    }

    // Token id -> its string, for tokens named by id alone (the logit tables).
    names() {
      if (!this._names) {
        this._names = this.vocab().then((vocab) => {
          const variants = new Set(vocab.variants || []);
          const names = new Map();
          vocab.ids.forEach((id, entry) => { if (!variants.has(entry)) names.set(id, vocab.tokens[entry]); });
          return names;
        });
      }
      return this._names;
    }

    shard(n) {
      if (!this.shards.has(n)) {
        this.shards.set(n, Promise.all([this.vocab(), Saelab.load(`${this.modelKey}/w${n}`)])
          .then(([vocab, bytes]) => decodeShard(Saelab.varints(bytes), vocab)));
      }
      return this.shards.get(n);
    }

    // index -> {tokens, ids, seq, start} for every index asked for.
    async windows(indices) {
      const shards = [...new Set(indices.map((i) => Math.floor(i / this.shardSize)))];
      const decoded = new Map(await Promise.all(shards.map(async (n) => [n, await this.shard(n)])));
      return new Map(indices.map((i) => [i, decoded.get(Math.floor(i / this.shardSize))[i % this.shardSize]]));
    }
  };

  // A shard: its window count n, then n sequences, n starts and n lengths, then every window's
  // vocabulary entries one after the other.
  function decodeShard(v, vocab) {
    const n = v[0];
    const windows = [];
    let at = 1 + 3 * n;
    for (let k = 0; k < n; k++) {
      const entries = v.slice(at, at + v[1 + 2 * n + k]);
      at += entries.length;
      windows.push({ seq: v[1 + k], start: v[1 + n + k], tokens: entries.map((e) => vocab.tokens[e]),
        ids: entries.map((e) => vocab.ids[e]) });
    }
    return windows;
  }

  // -- histograms (inline SVG: no plotting library on a feature's page) -----------------------

  const SVG = "http://www.w3.org/2000/svg";
  function svg(tag, attrs, ...children) {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
    for (const child of children) node.append(child);
    return node;
  }

  // h: {lo, hi, counts} (even bins) or {edges, counts}; bars left of zero use colors[0], others colors[1].
  Saelab.histogram = function (h, { xlabel, colors = ["#f59e0b", "#f59e0b"], label = "count" } = {}) {
    const n = h.counts.length;
    if (!n) return Saelab.empty("no histogram");
    const edges = h.edges || Array.from({ length: n + 1 }, (_, i) => h.lo + ((h.hi - h.lo) * i) / n);
    const W = 400, H = 150, left = 8, right = 8, top = 18, bottom = 34;
    const lo = edges[0], span = edges[n] - lo || 1, peak = Math.max(...h.counts, 1);
    const x = (v) => left + ((v - lo) / span) * (W - left - right);
    const y = (c) => top + (1 - c / peak) * (H - top - bottom);
    const chart = svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "hist", role: "img", "aria-label": xlabel });
    h.counts.forEach((c, i) => {
      const x0 = x(edges[i]), x1 = x(edges[i + 1]);
      const color = (edges[i] + edges[i + 1]) / 2 < 0 ? colors[0] : colors[1];
      const tip = svg("title", {});
      tip.textContent = `${Saelab.num(edges[i])} to ${Saelab.num(edges[i + 1])}: ${Saelab.int(c)} (${label})`;
      chart.append(svg("rect", { x: x0 + 0.5, y: y(c), width: Math.max(0.5, x1 - x0 - 1), height: H - bottom - y(c),
        fill: color }, tip));
    });
    const base = H - bottom;
    chart.append(svg("line", { x1: left, x2: W - right, y1: base, y2: base, class: "axis" }));
    const text = (tx, ty, anchor, value, cls = "tick") => {
      const t = svg("text", { x: tx, y: ty, "text-anchor": anchor, class: cls });
      t.textContent = value;
      chart.append(t);
    };
    text(left, base + 14, "start", Saelab.num(lo));
    text(W - right, base + 14, "end", Saelab.num(edges[n]));
    if (lo < 0 && edges[n] > 0) {
      chart.append(svg("line", { x1: x(0), x2: x(0), y1: top, y2: base, class: "zero" }));
      text(x(0), base + 14, "middle", "0");
    }
    text(left, 12, "start", `${label} up to ${Saelab.int(peak)}`, "tick muted");
    text(W / 2, H - 4, "middle", xlabel, "tick label");
    return chart;
  };
})();
