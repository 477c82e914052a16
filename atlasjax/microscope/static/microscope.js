// The offline Microscope: every unit of a layer, one page per unit, links
// along the strongest expanded weights. Data arrive by <script> tags
// (MICROSCOPE_INDEX, then Microscope.addLayer per layer); pages are addressed
// by the URL hash (#/layer/NAME, #/unit/NAME/CHANNEL), so the browser's
// back/forward buttons walk a circuit back. No request leaves the site folder.
"use strict";

const Microscope = (() => {
  const BASE = "microscope/";
  const layers = {};
  const root = () => document.getElementById("microscope");
  const main = () => document.getElementById("ms-main");

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined) continue;
      if (k === "text") e.textContent = v;
      else if (k.startsWith("data-")) e.setAttribute(k, v);
      else e[k] = v;
    }
    for (const c of children) if (c) e.append(c);
    return e;
  }

  // Layer names may hold "/" (ViT sub-layers: block1/attn/out): each segment
  // is percent-encoded, and the router takes the last segment as the unit.
  function encodePath(name) { return String(name).split("/").map(encodeURIComponent).join("/"); }
  function unitHref(layer, c) { return `#/unit/${encodePath(layer)}/${c}`; }
  function layerHref(layer) { return `#/layer/${encodePath(layer)}`; }
  function hasLayer(name) { return Object.prototype.hasOwnProperty.call(layers, name); }
  // A URL from the data files: relative, allow-listed characters only (no
  // scheme such as javascript:, no absolute or protocol-relative path).
  function safeUrl(u) {
    return typeof u === "string" && /^[A-Za-z0-9_.~%-][A-Za-z0-9_.~%\/-]*$/.test(u) ? u : null;
  }

  function thumb(layer, c) {
    // The unit's visualization, else its best dataset example, else a blank.
    const u = hasLayer(layer) && layers[layer].units[c];
    const src = safeUrl(u && (u.v || (u.ex.length ? u.ex[0][0] : null)));
    return src ? el("img", {src: BASE + src, alt: `${layer}:${c}`, loading: "lazy"})
               : el("div", {className: "ms-noimg"});
  }

  function kernelCanvas(shape, values) {
    // Red: positive weight, blue: negative, scaled by this kernel's max |w|.
    const [h, w] = shape;
    const canvas = el("canvas", {width: w, height: h, title: `${h}×${w} kernel`});
    const ctx = canvas.getContext("2d");
    const img = ctx.createImageData(w, h);
    const scale = Math.max(1e-12, ...values.map(Math.abs));
    values.forEach((v, i) => {
      const t = Math.min(1, Math.abs(v) / scale);
      const fade = Math.round(255 * (1 - t));
      const [r, g, b] = v >= 0 ? [255, fade, fade] : [fade, fade, 255];
      img.data.set([r, g, b, 255], 4 * i);
    });
    ctx.putImageData(img, 0, 0);
    return canvas;
  }

  function linkCard([layer, c, norm, shape, values], sign) {
    const known = hasLayer(layer);
    const card = el(known ? "a" : "div", {
      className: "ms-link unit-link", href: known ? unitHref(layer, c) : null,
      "data-unit": `${layer}:${c}`, "data-sign": sign},
      thumb(layer, c), kernelCanvas(shape, values),
      el("span", {}, el("strong", {text: `${layer}:${c}`}),
         el("small", {text: `${sign === "p" ? "+" : "−"}‖w‖ = ${norm.toFixed(3)}`})));
    return card;
  }

  function linkSection(title, links, sign) {
    if (!links || !links[sign] || !links[sign].length) return null;
    return el("section", {},
      el("h3", {text: title}),
      el("div", {className: "ms-links", "data-list": title},
         ...links[sign].map(l => linkCard(l, sign))));
  }

  function featureSection(name, features) {
    // The dictionary features whose decoder rows weigh most on this unit
    // (written when dictionary pages exist for the layer); a feature with
    // a page links to it.
    if (!features || !features.length) return null;
    return el("section", {},
      el("h3", {text: "Dictionary features (decoder weight on this unit)"}),
      el("div", {className: "ms-links", "data-list": "features"},
         ...features.map(([f, w, page, img]) => [f, w, safeUrl(page), safeUrl(img)])
           .map(([f, w, page, img]) => el(page ? "a" : "div", {
           className: "ms-link feature-link", href: page, "data-feature": String(f)},
           img ? el("img", {src: img, alt: `${name} feature ${f}`, loading: "lazy"})
               : el("div", {className: "ms-noimg"}),
           el("span", {}, el("strong", {text: `feature ${f}`}),
              el("small", {text: `w = ${w >= 0 ? "+" : "−"}${Math.abs(w).toFixed(3)}`}))))));
  }

  // Quality scores (atlasjax.quality, added by add_quality_scores): a table
  // on the unit page, and sort keys for the layer grid.
  const pct = v => (v === null || v === undefined) ? "–" : `${(100 * v).toFixed(0)} %`;
  const interval = ci => ci ? ` [${pct(ci[0])}, ${pct(ci[1])}]` : "";
  const SCORE_KINDS = [["s", "synthetic"], ["n", "natural"], ["p", "path check"]];
  const sortBy = {};   // layer -> "param:kind" or "" (unit order)

  function qualitySection(L, u) {
    if (!u.q || !L.quality) return null;
    const rows = L.quality.params.filter(p => u.q[p]).map(p => {
      const q = u.q[p];
      return el("tr", {"data-param": p}, el("td", {text: p}),
        el("td", {text: pct(q.s) + interval(q.sc)}),
        el("td", {text: pct(q.n) + interval(q.nc)}),
        el("td", {text: q.p === null ? "–" : q.p.toFixed(2)}));
    });
    return el("section", {className: "ms-quality"},
      el("h3", {text: `Quality (2AFC accuracy judged by ${L.quality.judge}, ` +
                      `${u.q[L.quality.params.find(p => u.q[p])].t} trials; chance 50 %)`}),
      el("table", {},
         el("tr", {}, ...["param", "synthetic refs", "natural refs", "path check"].map(
           t => el("th", {text: t}))),
         ...rows));
  }

  function sortControl(name, L) {
    if (!L.quality) return null;
    const select = el("select", {id: "ms-sort"},
      el("option", {value: "", text: "unit order"}),
      ...L.quality.params.flatMap(p => SCORE_KINDS.map(([k, label]) =>
        el("option", {value: `${p}:${k}`, text: `${p} ${label}`}))));
    select.value = sortBy[name] || "";
    select.addEventListener("change", () => { sortBy[name] = select.value; showGrid(name); });
    return el("label", {className: "ms-sort"}, "Sort by ", select);
  }

  function gridOrder(name, L) {
    const order = L.units.map((u, c) => c);
    const key = sortBy[name];
    if (!key) return order;
    const [p, k] = key.split(":");
    const value = c => {
      const q = L.units[c].q && L.units[c].q[p];
      return q && q[k] !== null && q[k] !== undefined ? q[k] : -Infinity;
    };
    return order.sort((a, b) => value(b) - value(a) || a - b);
  }

  function setView(view, layer, unit) {
    const r = root();
    r.dataset.view = view;
    r.dataset.layer = layer;
    r.dataset.unit = unit || "";
    for (const a of document.querySelectorAll("#ms-layers a"))
      a.classList.toggle("current", a.dataset.layer === layer);
    window.scrollTo(0, 0);
  }

  function showGrid(name) {
    const L = layers[name];
    const m = main();
    const key = sortBy[name];
    const score = c => {
      if (!key) return "";
      const [p, k] = key.split(":");
      const q = L.units[c].q && L.units[c].q[p];
      return q && q[k] !== null ? ` · ${k === "p" ? q[k].toFixed(2) : pct(q[k])}` : "";
    };
    m.replaceChildren(...[
      el("h2", {text: `${name} — ${L.depth} units` +
                (L.rendered ? "" : " (not rendered: dataset examples shown)")}),
      sortControl(name, L),
      el("div", {className: "ms-grid"}, ...gridOrder(name, L).map(c =>
        el("a", {className: "ms-tile", href: unitHref(name, c),
                 "data-unit": `${name}:${c}`},
           thumb(name, c), el("span", {text: String(c) + score(c)}))))].filter(Boolean));
    setView("grid", name, "");
  }

  function showUnit(name, c) {
    const L = layers[name], u = L.units[c];
    const head = el("div", {className: "ms-unit-head"},
      safeUrl(u.v) ? el("img", {className: "ms-vis", src: BASE + u.v, alt: `${name}:${c}`})
          : el("div", {className: "ms-noimg ms-vis", text: "not rendered"}),
      el("div", {},
        el("h2", {text: `${name}:${c}`}),
        el("p", {className: "ms-muted",
                 text: `Unit ${c} of ${L.depth} in ${name} (stride ${L.stride}).`}),
        el("p", {}, el("a", {href: layerHref(name), text: `All units of ${name}`}),
           " · ", c > 0 ? el("a", {href: unitHref(name, c - 1), text: "← previous"}) : null,
           " ", c + 1 < L.depth ? el("a", {href: unitHref(name, c + 1), text: "next →"}) : null)));
    const parts = [head];
    if (u.d.length)
      parts.push(el("h3", {text: "Diversity"}),
                 el("div", {className: "ms-strip"},
                    ...u.d.filter(safeUrl).map(s => el("img", {src: BASE + s, alt: "diverse render"}))));
    if (u.ex.length)
      parts.push(el("h3", {text: "Dataset examples" +
                                 (L.crop ? ` (${L.crop}px crops around the maximum)` : "")}),
                 el("div", {className: "ms-examples"}, ...u.ex.filter(e => safeUrl(e[0])).map(([src, score, file]) =>
                   el("figure", {title: file}, el("img", {src: BASE + src, alt: file}),
                      el("figcaption", {text: score.toFixed(1)})))));
    parts.push(qualitySection(L, u), featureSection(name, u.f),
               linkSection("Strongest positive inputs", u.in, "p"),
               linkSection("Strongest negative inputs", u.in, "n"),
               linkSection("Strongest positive outputs", u.out, "p"),
               linkSection("Strongest negative outputs", u.out, "n"));
    main().replaceChildren(...parts.filter(Boolean));
    setView("unit", name, `${name}:${c}`);
  }

  function firstLayer() {
    const idx = window.MICROSCOPE_INDEX;
    const r = idx.layers.find(l => l.rendered) || idx.layers[0];
    return r.name;
  }

  function route() {
    // #/unit/<layer>/<c> and #/layer/<layer>, <layer> possibly several
    // segments: each segment decoded on its own, the unit is the last one.
    const parts = location.hash.replace(/^#\/?/, "").split("/").map(p => {
      try { return decodeURIComponent(p); } catch (e) { return p; }
    });
    status("");
    if (parts[0] === "unit" && parts.length >= 3) {
      const name = parts.slice(1, -1).join("/"), last = parts[parts.length - 1];
      const c = /^\d+$/.test(last) ? Number(last) : -1;
      if (hasLayer(name) && c >= 0 && c < layers[name].depth) return showUnit(name, c);
    }
    const name = parts.slice(1).join("/");
    if (parts[0] === "layer" && hasLayer(name)) return showGrid(name);
    showGrid(firstLayer());
  }

  function status(text) { document.getElementById("ms-status").textContent = text; }

  function find(query) {
    // "layer:channel" or a channel of the layer on screen; null if unknown.
    const q = query.trim();
    const m = q.match(/^(?:(.+?)\s*[:/ ]\s*)?(\d+)$/);
    if (!m) return null;
    const name = m[1] || root().dataset.layer;
    const c = Number(m[2]);
    return hasLayer(name) && c < layers[name].depth ? [name, c] : null;
  }

  function start() {
    const idx = window.MICROSCOPE_INDEX;
    document.getElementById("ms-layers").replaceChildren(...idx.layers.map(l =>
      el("a", {href: layerHref(l.name), text: l.name, "data-layer": l.name,
               className: l.rendered ? "" : "neighbour"})));
    document.getElementById("ms-search-form").addEventListener("submit", ev => {
      ev.preventDefault();
      const q = document.getElementById("ms-search").value;
      const hit = find(q);
      if (hit) location.hash = unitHref(hit[0], hit[1]);
      else status(`no unit "${q}"`);
    });
    window.addEventListener("hashchange", route);
    route();
    root().dataset.ready = "1";
  }

  return {
    addLayer(layer) { layers[layer.name] = layer; },
    start, find, layers,
  };
})();
