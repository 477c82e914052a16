/* atlasjax activation-atlas viewer: plain JS, no dependencies, works offline
 * from file:// or any static server.  Data arrive as <script> files written
 * by atlasjax.viewer.write_viewer (window.ATLAS_DATA, then lazily
 * AtlasViewer.registerCells / registerAttr calls). */
(function () {
  'use strict';

  var D = window.ATLAS_DATA;
  var $ = function (id) { return document.getElementById(id); };
  var root = $('atlas-viewer');
  var stage = $('av-stage');
  var canvas = $('av-canvas');
  var ctx = canvas.getContext('2d');
  var info = $('av-info-body');
  var levelLabel = $('av-level-label');
  var legend = $('av-legend');
  var scatterImg = $('av-scatter');
  var scatterCanvas = $('av-scatter-overlay');
  var sctx = scatterCanvas.getContext('2d');

  var MAX_INFLIGHT = 48;      // concurrent icon requests
  var MAX_CACHE = 1600;       // decoded icons kept
  var MAX_ZOOM_CELL = 3;      // finest level may be zoomed to 3x its fit cell size

  // ---------------------------------------------------------------- data --
  var store = {};             // "layer/size" -> grid record
  function key(li, size) { return li + '/' + size; }
  function gridRec(li, size) {
    var k = key(li, size);
    if (!store[k]) {
      var meta = D.layers[li].grids.filter(function (g) { return g.size === size; })[0];
      store[k] = { li: li, meta: meta, cells: null, index: null, attr: {}, loading: null };
    }
    return store[k];
  }

  var scripts = {};
  function loadScript(src) {
    if (!scripts[src]) {
      scripts[src] = new Promise(function (resolve, reject) {
        var s = document.createElement('script');
        s.src = src;
        s.async = true;
        s.onload = function () { resolve(); };
        s.onerror = function () { reject(new Error('could not load ' + src)); };
        document.head.appendChild(s);
      });
    }
    return scripts[src];
  }

  function ensureCells(li, size) {
    var g = gridRec(li, size);
    if (!g.loading) {
      g.loading = loadScript(g.meta.cells).then(function () { return g; });
    }
    return g.loading;
  }

  function ensureAttr(g, cls) {
    var m = g.meta;
    if (!m.attr || !m.attrChunks) return Promise.resolve(null);
    var k = Math.floor(cls / m.attrChunk);
    if (k >= m.attrChunks) return Promise.resolve(null);
    return loadScript(m.attr.replace('%d', k)).then(function () { return g.attr[k] || null; });
  }

  function decodeInt8(b64) {
    var bin = atob(b64), a = new Int8Array(bin.length);
    for (var i = 0; i < bin.length; i++) a[i] = bin.charCodeAt(i);
    return a;
  }

  window.AtlasViewer = {
    registerCells: function (li, size, cols) {
      var g = gridRec(li, size), n = size;
      var index = new Int32Array(n * n).fill(-1);
      for (var i = 0; i < cols.x.length; i++) index[cols.y[i] * n + cols.x[i]] = i;
      g.cells = cols;
      g.index = index;
      g.shadeCache = {};
    },
    registerAttr: function (li, size, k, chunk) {
      var g = gridRec(li, size);
      g.attr[k] = { start: chunk.start, rows: chunk.rows, scale: chunk.scale, q: decodeInt8(chunk.data) };
    }
  };

  // --------------------------------------------------------------- state --
  var S = {
    layer: 0, scale: 1, tx: 0, ty: 0, fit: 1, w: 1, h: 1,
    drawn: null,            // grid record being drawn
    want: null,             // size the zoom asks for
    density: false, search: null, hover: -1, pinned: -1,
    frame: 0, ready: false
  };
  var frameTimes = [];
  var prefetched = {};

  function layer() { return D.layers[S.layer]; }
  function sizes() { return layer().grids.map(function (g) { return g.size; }).sort(function (a, b) { return a - b; }); }
  function classNames() { return D.classNames[layer().names] || []; }
  function className(i) { var n = classNames()[i]; return n === undefined ? 'class ' + i : n; }

  function levelFor(scale) {
    var ss = sizes(), z = scale / S.fit, best = ss[0];
    for (var i = 0; i < ss.length; i++) if (z >= ss[i] / ss[0] - 1e-6) best = ss[i];
    return best;
  }

  function resize() {
    var r = stage.getBoundingClientRect(), dpr = window.devicePixelRatio || 1;
    var cx = (S.w / 2 - S.tx) / S.scale, cy = (S.h / 2 - S.ty) / S.scale, z = S.scale / S.fit;
    S.w = Math.max(1, r.width); S.h = Math.max(1, r.height);
    canvas.width = Math.round(S.w * dpr); canvas.height = Math.round(S.h * dpr);
    S.fit = Math.min(S.w, S.h) * 0.94;
    if (!S.ready) { fitView(); return; }
    S.scale = S.fit * z; S.tx = S.w / 2 - cx * S.scale; S.ty = S.h / 2 - cy * S.scale;
    viewChanged();
  }

  function fitView() {
    S.scale = S.fit; S.tx = (S.w - S.fit) / 2; S.ty = (S.h - S.fit) / 2;
    viewChanged();
  }

  function clampView() {
    var ss = sizes();
    var maxScale = S.fit * (ss[ss.length - 1] / ss[0]) * MAX_ZOOM_CELL;
    S.scale = Math.min(Math.max(S.scale, S.fit * 0.5), maxScale);
    var m = 0.5;  // keep at least half a viewport of atlas visible
    S.tx = Math.min(Math.max(S.tx, S.w * m - S.scale), S.w * (1 - m));
    S.ty = Math.min(Math.max(S.ty, S.h * m - S.scale), S.h * (1 - m));
  }

  function zoomAt(px, py, factor) {
    var old = S.scale;
    S.scale *= factor;
    clampView();
    var f = S.scale / old;
    S.tx = px - (px - S.tx) * f; S.ty = py - (py - S.ty) * f;
    clampView();
    viewChanged();
  }

  function panBy(dx, dy) { S.tx += dx; S.ty += dy; clampView(); viewChanged(); }

  function viewChanged() {
    var want = levelFor(S.scale);
    S.want = want;
    var g = gridRec(S.layer, want);
    if (g.cells) setDrawn(g);
    else ensureCells(S.layer, want).then(function (g2) {
      if (S.want === g2.meta.size && S.layer === g2.li) setDrawn(g2);
    }, reportError);
    root.dataset.zoom = (S.scale / S.fit).toFixed(3);
    root.dataset.targetLevel = want;
    requestRender();
  }

  function setDrawn(g) {
    if (S.drawn !== g) {
      S.drawn = g;
      S.hover = -1;
      if (S.pinned >= 0) { S.pinned = -1; }
      showInfo(-1);
      if (S.search !== null) applySearch();
    }
    root.dataset.level = g.meta.size;
    var ss = sizes();
    levelLabel.innerHTML = 'Grid <b>' + g.meta.size + '&times;' + g.meta.size + '</b>' +
      (ss.length > 1 ? ' <span class="av-muted">(' + ss.join(' / ') + ')</span>' : '') +
      ' &middot; zoom ' + (S.scale / S.fit).toFixed(1) + '&times;';
    S.ready = true;
    root.dataset.ready = '1';
    if (!prefetched[S.layer]) {
      prefetched[S.layer] = true;
      // Prefetch the other levels of this layer in the background.
      var li = S.layer;
      setTimeout(function () { ss.forEach(function (s) { ensureCells(li, s).catch(reportError); }); }, 300);
    }
    requestRender();
  }

  function reportError(e) { console.error('atlas viewer: ' + (e && e.message || e)); }

  // -------------------------------------------------------------- icons ---
  var icons = new Map();    // url -> {img, ok, failed, used}
  var inflight = 0;
  function icon(url, wanted, dist) {
    var e = icons.get(url);
    if (e) { e.used = S.frame; return e.ok ? e.img : null; }
    wanted.push([dist, url]);
    return null;
  }
  function requestIcons(wanted) {
    wanted.sort(function (a, b) { return a[0] - b[0]; });
    for (var i = 0; i < wanted.length && inflight < MAX_INFLIGHT; i++) {
      (function (url) {
        var img = new Image(), e = { img: img, ok: false, failed: false, used: S.frame };
        icons.set(url, e);
        inflight++;
        img.decoding = 'async';
        img.onload = function () { e.ok = true; inflight--; requestRender(); };
        img.onerror = function () { e.failed = true; inflight--; requestRender(); };
        img.src = url;
      })(wanted[i][1]);
    }
    root.dataset.iconsPending = String(wanted.length + inflight);
    if (icons.size > MAX_CACHE) {
      var excess = icons.size - Math.floor(MAX_CACHE * 0.8);
      icons.forEach(function (e, url) {
        if (excess > 0 && e.used < S.frame && (e.ok || e.failed)) { icons.delete(url); excess--; }
      });
    }
  }

  // ------------------------------------------------------------ shading ---
  // Attribution of every cell of grid g to class cls, scaled to [-1, 1] by
  // the largest |value| over the grid's kept cells; null until loaded.
  function shadeValues(g, cls) {
    if (!g || cls === null || !g.cells) return null;
    if (g.shadeCache[cls]) return g.shadeCache[cls];
    var m = g.meta;
    if (!m.attrChunks) return null;
    var ch = g.attr[Math.floor(cls / m.attrChunk)];
    if (!ch) return null;
    var row = cls - ch.start, sc = ch.scale[row], off = row * ch.rows;
    var n = g.cells.x.length, v = new Float32Array(n), mx = 0;
    for (var i = 0; i < n; i++) {
      var d = g.cells.dir[i];
      v[i] = d >= 0 && d < ch.rows ? ch.q[off + d] * sc : 0;
      mx = Math.max(mx, Math.abs(v[i]));
    }
    if (mx > 0) for (var j = 0; j < n; j++) v[j] /= mx;
    g.shadeCache[cls] = v;
    return v;
  }

  function applySearch() {
    var g = S.drawn, cls = S.search;
    root.dataset.searchClass = cls === null ? '' : String(cls);
    root.dataset.shaded = '0';
    if (cls === null) { legend.hidden = true; requestRender(); return; }
    legend.hidden = false;
    // The cells' top classes and this shading share one ranking (writer.py).
    legend.innerHTML = (g && g.meta.ranking === 'support' ? 'Support for' : 'Attribution to') +
      ' <b></b><span class="av-ramp"></span>';
    legend.querySelector('b').textContent = className(cls);
    if (!g) return;
    if (!g.meta.attrChunks) { legend.innerHTML += ' <span class="av-muted">(no attributions)</span>'; return; }
    ensureAttr(g, cls).then(function () {
      if (S.search === cls) requestRender();
    }, reportError);
  }

  function setSearch(cls) {
    S.search = cls;
    if (cls !== null) $('av-search').value = className(cls);
    applySearch();
    if (S.pinned >= 0 || S.hover >= 0) showInfo(S.pinned >= 0 ? S.pinned : S.hover);
  }

  function findClass(text) {
    var q = text.trim().toLowerCase(), names = classNames();
    if (!q) return null;
    if (/^\d+$/.test(q) && +q < names.length) return +q;
    var i, tests = [
      function (n) { return n === q; },
      function (n) { return n.indexOf(q) === 0; },
      function (n) { return n.indexOf(q) >= 0; }];
    for (var t = 0; t < tests.length; t++)
      for (i = 0; i < names.length; i++) if (tests[t](String(names[i]).toLowerCase())) return i;
    return null;
  }

  // ------------------------------------------------------------- render ---
  var rafPending = false;
  function requestRender() {
    if (!rafPending) {
      rafPending = true;
      root.dataset.iconsPending = '-1';  // unknown until the frame is drawn
      requestAnimationFrame(render);
    }
  }

  function render() {
    rafPending = false;
    var t0 = performance.now();
    S.frame++;
    var dpr = window.devicePixelRatio || 1;
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.fillStyle = '#fff';
    ctx.fillRect(0, 0, S.w, S.h);
    var g = S.drawn, wanted = [];
    if (g && g.cells) {
      var n = g.meta.size, cp = S.scale / n, c = g.cells;
      ctx.strokeStyle = '#ececec';
      ctx.lineWidth = 1;
      ctx.strokeRect(Math.round(S.tx) - 0.5, Math.round(S.ty) - 0.5, Math.round(S.scale) + 1, Math.round(S.scale) + 1);
      var x0 = Math.max(0, Math.floor(-S.tx / cp)), x1 = Math.min(n - 1, Math.floor((S.w - S.tx) / cp));
      var y0 = Math.max(0, Math.floor(-S.ty / cp)), y1 = Math.min(n - 1, Math.floor((S.h - S.ty) / cp));
      var shade = shadeValues(g, S.search), cx = S.w / 2, cy = S.h / 2;
      var shadedCount = 0;
      for (var y = y0; y <= y1; y++) {
        for (var x = x0; x <= x1; x++) {
          var i = g.index[y * n + x];
          if (i < 0) continue;
          var sx = S.tx + x * cp, sy = S.ty + y * cp, s = 1;
          if (S.density) s = Math.max(0.15, Math.sqrt(c.count[i] / g.meta.maxCount));
          var sz = cp * s, o = (cp - sz) / 2;
          var dx = sx + cp / 2 - cx, dy = sy + cp / 2 - cy;
          var img = icon(c.icon[i], wanted, dx * dx + dy * dy);
          if (img) ctx.drawImage(img, sx + o, sy + o, sz, sz);
          else { ctx.fillStyle = '#f1f1f1'; ctx.fillRect(sx + o + 1, sy + o + 1, sz - 2, sz - 2); }
          if (shade) {
            var v = Math.max(0, shade[i]);
            ctx.fillStyle = 'rgba(255,255,255,' + (0.88 * (1 - v)).toFixed(3) + ')';
            ctx.fillRect(sx + o, sy + o, sz, sz);
            if (v > 0.05) {
              ctx.strokeStyle = 'rgba(214,43,0,' + v.toFixed(3) + ')';
              ctx.lineWidth = Math.max(1, Math.min(3, cp * 0.05));
              ctx.strokeRect(sx + o + 1, sy + o + 1, sz - 2, sz - 2);
            }
            shadedCount++;
          }
        }
      }
      root.dataset.shaded = shade ? '1' : '0';
      root.dataset.shadedCells = String(shadedCount);
      var hi = S.pinned >= 0 ? S.pinned : S.hover;
      if (hi >= 0 && hi < c.x.length) {
        ctx.strokeStyle = S.pinned >= 0 ? '#d62b00' : '#222';
        ctx.lineWidth = 2;
        ctx.strokeRect(S.tx + c.x[hi] * cp + 1, S.ty + c.y[hi] * cp + 1, cp - 2, cp - 2);
      }
    }
    requestIcons(wanted);
    drawScatterOverlay();
    var dt = performance.now() - t0;
    frameTimes.push(dt);
    if (frameTimes.length > 600) frameTimes.splice(0, 300);
  }

  function drawScatterOverlay() {
    if (root.classList.contains('av-no-layout') || !layer().scatter) return;
    var w = scatterCanvas.clientWidth, h = scatterCanvas.clientHeight;
    if (!w || !h) return;
    if (scatterCanvas.width !== w || scatterCanvas.height !== h) { scatterCanvas.width = w; scatterCanvas.height = h; }
    sctx.clearRect(0, 0, w, h);
    var ax = Math.max(0, -S.tx / S.scale), ay = Math.max(0, -S.ty / S.scale);
    var bx = Math.min(1, (S.w - S.tx) / S.scale), by = Math.min(1, (S.h - S.ty) / S.scale);
    if (bx > ax && by > ay && (ax > 0 || ay > 0 || bx < 1 || by < 1)) {
      sctx.fillStyle = 'rgba(0,0,0,0.08)';
      sctx.fillRect(0, 0, w, h);
      sctx.clearRect(ax * w, ay * h, (bx - ax) * w, (by - ay) * h);
      sctx.strokeStyle = '#d62b00';
      sctx.lineWidth = 1.5;
      sctx.strokeRect(ax * w, ay * h, (bx - ax) * w, (by - ay) * h);
    }
    var g = S.drawn, hi = S.pinned >= 0 ? S.pinned : S.hover;
    if (g && g.cells && hi >= 0) {
      var n = g.meta.size;
      sctx.strokeStyle = '#000';
      sctx.lineWidth = 1.5;
      sctx.strokeRect(g.cells.x[hi] / n * w, g.cells.y[hi] / n * h, w / n, h / n);
    }
  }

  // --------------------------------------------------------------- info ---
  function esc(s) {
    return String(s).replace(/[&<>"']/g, function (ch) {
      return { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[ch];
    });
  }

  // A URL from the data files: relative, allow-listed characters only (the
  // writer encodes every link so; anything else, e.g. javascript:, is dropped).
  function safeUrl(u) {
    return typeof u === 'string' && /^[A-Za-z0-9_.~%-][A-Za-z0-9_.~%\/-]*$/.test(u) ? u : null;
  }

  function featureLabels(feats) {
    // The cell's strongest dictionary features (dictionary_labels.json, see
    // writer.py), each linked to its feature page when one was written.
    if (!feats || !feats.length) return '';
    var h = '<div class="av-muted">Dictionary features</div><ol class="av-feat">';
    feats.forEach(function (f) {
      var page = safeUrl(f[2]), image = safeUrl(f[3]), id = esc(Number(f[0]));
      var label = (image ? '<img src="' + esc(image) + '" alt="">' : '') +
        '<span>feature ' + id + '</span><span class="av-val">' + Number(f[1]).toFixed(3) + '</span>';
      h += '<li data-feature="' + id + '">' + (page ? '<a href="' + esc(page) + '">' +
        label + '</a>' : label) + '</li>';
    });
    return h + '</ol>';
  }

  function showInfo(i) {
    var g = S.drawn;
    root.dataset.cell = i >= 0 && g ? g.cells.x[i] + ',' + g.cells.y[i] : '';
    if (i < 0 || !g || !g.cells) {
      info.className = 'av-muted';
      info.innerHTML = 'Hover a cell to see its activations; click to pin it.';
      return;
    }
    var c = g.cells, top = c.top[i] || [], mx = 0;
    top.forEach(function (t) { mx = Math.max(mx, Math.abs(t[1])); });
    var h = '<div class="av-cell-head"><img src="' + esc(c.icon[i]) + '" alt="">' +
      '<div><div>cell (' + c.x[i] + ', ' + c.y[i] + ') of ' + g.meta.size + '&times;' + g.meta.size + '</div>' +
      '<div><span class="av-count" data-count="' + c.count[i] + '">' + c.count[i] + '</span> activations</div>' +
      (S.pinned === i ? '<div class="av-muted">pinned &middot; click again to release</div>' : '') +
      '</div></div>';
    h += '<ol class="av-top">';
    top.forEach(function (t) {
      var wpc = mx > 0 ? Math.round(100 * Math.abs(t[1]) / mx) : 0;
      h += '<li data-class="' + t[0] + '"' + (S.search === t[0] ? ' class="av-active"' : '') +
        ' title="shade the atlas by this class"><span>' + esc(className(t[0])) + '</span>' +
        '<span><div class="av-bar' + (t[1] < 0 ? ' av-neg' : '') + '" style="width:' + wpc + '%"></div></span>' +
        '<span class="av-val">' + (Math.abs(t[1]) >= 0.01 || t[1] === 0 ? t[1].toFixed(3) : t[1].toPrecision(2)) + '</span></li>';
    });
    h += '</ol>';
    h += featureLabels(c.feat && c.feat[i]);
    var ex = c.ex[i] || [];
    if (ex.length) {
      h += '<div class="av-thumbs">';
      ex.forEach(function (stem, k) {
        h += '<img loading="lazy" src="' + esc(D.thumbs + stem + '.jpg') + '" title="' + esc(c.exNames[i][k] || '') + '" alt="">';
      });
      h += '</div>';
    } else if (!layer().thumbs) {
      h += '<div class="av-muted">No example images (images_root not readable).</div>';
    }
    info.className = '';
    info.innerHTML = h;
  }

  info.addEventListener('click', function (ev) {
    var li = ev.target.closest('li[data-class]');
    if (li) setSearch(+li.dataset.class);
  });

  // -------------------------------------------------------------- input ---
  function cellAt(px, py) {
    var g = S.drawn;
    if (!g || !g.cells) return -1;
    var n = g.meta.size, cp = S.scale / n;
    var x = Math.floor((px - S.tx) / cp), y = Math.floor((py - S.ty) / cp);
    if (x < 0 || y < 0 || x >= n || y >= n) return -1;
    return g.index[y * n + x];
  }

  function localXY(ev) {
    var r = canvas.getBoundingClientRect();
    return [ev.clientX - r.left, ev.clientY - r.top];
  }

  function setHover(i) {
    if (i === S.hover) return;
    S.hover = i;
    if (S.pinned < 0) showInfo(i);
    requestRender();
  }

  var pointers = new Map(), drag = null, pinch = null;
  canvas.addEventListener('pointerdown', function (ev) {
    canvas.setPointerCapture(ev.pointerId);
    stage.focus({ preventScroll: true });
    var p = localXY(ev);
    pointers.set(ev.pointerId, p);
    if (pointers.size === 1) drag = { x: p[0], y: p[1], sx: p[0], sy: p[1], moved: false };
    else if (pointers.size === 2) { drag = null; pinch = pinchState(); }
  });
  function pinchState() {
    var ps = Array.from(pointers.values());
    return { d: Math.hypot(ps[0][0] - ps[1][0], ps[0][1] - ps[1][1]) || 1,
      mx: (ps[0][0] + ps[1][0]) / 2, my: (ps[0][1] + ps[1][1]) / 2 };
  }
  canvas.addEventListener('pointermove', function (ev) {
    var p = localXY(ev);
    if (pointers.has(ev.pointerId)) pointers.set(ev.pointerId, p);
    if (pinch && pointers.size >= 2) {
      var now = pinchState();
      panBy(now.mx - pinch.mx, now.my - pinch.my);
      zoomAt(now.mx, now.my, now.d / pinch.d);
      pinch = now;
      return;
    }
    if (drag) {
      if (!drag.moved && Math.hypot(p[0] - drag.sx, p[1] - drag.sy) > 3) {
        drag.moved = true;
        stage.classList.add('av-dragging');
      }
      if (drag.moved) { panBy(p[0] - drag.x, p[1] - drag.y); drag.x = p[0]; drag.y = p[1]; return; }
    }
    setHover(cellAt(p[0], p[1]));
  });
  function endPointer(ev) {
    var p = localXY(ev);
    pointers.delete(ev.pointerId);
    if (pointers.size < 2) pinch = null;
    if (drag && !drag.moved && ev.type === 'pointerup') {
      var i = cellAt(p[0], p[1]);
      S.pinned = (i >= 0 && i !== S.pinned) ? i : -1;
      showInfo(S.pinned >= 0 ? S.pinned : i);
      requestRender();
    }
    drag = null;
    stage.classList.remove('av-dragging');
  }
  canvas.addEventListener('pointerup', endPointer);
  canvas.addEventListener('pointercancel', endPointer);
  canvas.addEventListener('pointerleave', function () { if (!drag) setHover(-1); });

  canvas.addEventListener('wheel', function (ev) {
    ev.preventDefault();
    var p = localXY(ev);
    var dy = ev.deltaY * (ev.deltaMode === 1 ? 16 : ev.deltaMode === 2 ? S.h : 1);
    // ctrl+wheel is how browsers report a trackpad pinch.
    zoomAt(p[0], p[1], Math.exp(-dy * (ev.ctrlKey ? 0.01 : 0.0015)));
  }, { passive: false });

  window.addEventListener('keydown', function (ev) {
    var t = ev.target;
    if (t && (t.tagName === 'INPUT' || t.tagName === 'SELECT' || t.tagName === 'TEXTAREA')) {
      if (ev.key === 'Escape' && t.id === 'av-search') { setSearch(null); t.value = ''; t.blur(); }
      return;
    }
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    var step = Math.min(S.w, S.h) * 0.15, done = true;
    switch (ev.key) {
      case '+': case '=': zoomAt(S.w / 2, S.h / 2, 1.25); break;
      case '-': case '_': zoomAt(S.w / 2, S.h / 2, 0.8); break;
      case 'ArrowLeft': panBy(step, 0); break;
      case 'ArrowRight': panBy(-step, 0); break;
      case 'ArrowUp': panBy(0, step); break;
      case 'ArrowDown': panBy(0, -step); break;
      case '0': fitView(); break;
      case 'd': case 'D': $('av-density').click(); break;
      case 'l': case 'L': $('av-show-layout').click(); break;
      case '/': $('av-search').focus(); break;
      case 'Escape': S.pinned = -1; setSearch(null); $('av-search').value = ''; showInfo(S.hover); break;
      default: done = false;
    }
    if (done) ev.preventDefault();
  });

  $('av-zoom-in').onclick = function () { zoomAt(S.w / 2, S.h / 2, 1.5); };
  $('av-zoom-out').onclick = function () { zoomAt(S.w / 2, S.h / 2, 1 / 1.5); };
  $('av-reset').onclick = fitView;
  $('av-density').onchange = function (ev) {
    S.density = ev.target.checked;
    root.dataset.density = S.density ? '1' : '0';
    requestRender();
  };
  $('av-show-layout').onchange = function (ev) {
    root.classList.toggle('av-no-layout', !ev.target.checked);
    resize();
  };
  var search = $('av-search');
  function searchFromBox() {
    var cls = findClass(search.value);
    if (cls === null && search.value.trim()) { search.setCustomValidity('no such class'); search.reportValidity(); return; }
    search.setCustomValidity('');
    setSearch(cls);
  }
  search.addEventListener('change', searchFromBox);
  search.addEventListener('keydown', function (ev) { if (ev.key === 'Enter') searchFromBox(); });
  search.addEventListener('input', function () {
    // Picking from the datalist gives an exact name: apply it at once.
    var q = search.value.trim().toLowerCase();
    if (classNames().some(function (n) { return String(n).toLowerCase() === q; })) searchFromBox();
    else if (!q) setSearch(null);
  });
  $('av-clear').onclick = function () { search.value = ''; setSearch(null); };

  // Scatter: click or drag to centre the atlas there.
  var scatterDrag = false;
  function scatterGo(ev) {
    var r = scatterCanvas.getBoundingClientRect();
    var u = (ev.clientX - r.left) / r.width, v = (ev.clientY - r.top) / r.height;
    S.tx = S.w / 2 - u * S.scale; S.ty = S.h / 2 - v * S.scale;
    clampView(); viewChanged();
  }
  scatterCanvas.addEventListener('pointerdown', function (ev) {
    scatterDrag = true; scatterCanvas.setPointerCapture(ev.pointerId); scatterGo(ev);
  });
  scatterCanvas.addEventListener('pointermove', function (ev) { if (scatterDrag) scatterGo(ev); });
  scatterCanvas.addEventListener('pointerup', function () { scatterDrag = false; });

  function setLayer(li) {
    S.layer = li;
    root.dataset.layer = String(li);
    var L = layer();
    var dl = $('av-classes');
    dl.innerHTML = '';
    classNames().forEach(function (n) { var o = document.createElement('option'); o.value = n; dl.appendChild(o); });
    if (L.scatter) { scatterImg.src = L.scatter; $('av-layout').hidden = false; }
    else { scatterImg.removeAttribute('src'); $('av-layout').hidden = true; }
    S.drawn = null;
    root.dataset.ready = '0';
    viewChanged();
    if (S.search !== null && S.search >= classNames().length) setSearch(null);
  }

  // ------------------------------------------------------------ startup ---
  if (!D || !D.layers || !D.layers.length) {
    info.textContent = 'No atlas data (viewer/data/atlas.js missing): run experiments/viewer.py --workdir=...';
    console.error('atlas viewer: no ATLAS_DATA');
    return;
  }
  if (D.layers.length > 1) {
    var sel = $('av-layer');
    D.layers.forEach(function (L, i) {
      var o = document.createElement('option'); o.value = i; o.textContent = L.name; sel.appendChild(o);
    });
    sel.onchange = function () { setLayer(+sel.value); };
    $('av-layer-wrap').hidden = false;
  }
  if (typeof ResizeObserver !== 'undefined') new ResizeObserver(function () { resize(); }).observe(stage);
  window.addEventListener('resize', resize);
  resize();
  setLayer(0);

  // A small programmatic API, used by the tests and the benchmark.
  window.atlasViewer = {
    state: function () {
      return { layer: S.layer, level: S.drawn ? S.drawn.meta.size : null, want: S.want,
        zoom: S.scale / S.fit, scale: S.scale, tx: S.tx, ty: S.ty, search: S.search,
        density: S.density, hover: S.hover, pinned: S.pinned, iconsCached: icons.size, inflight: inflight };
    },
    // Page coordinates (CSS px) of the centre of cell (x, y) at the drawn level.
    cellCenter: function (x, y) {
      var r = canvas.getBoundingClientRect(), n = S.drawn.meta.size, cp = S.scale / n;
      return [r.left + S.tx + (x + 0.5) * cp, r.top + S.ty + (y + 0.5) * cp];
    },
    cells: function () {
      var c = S.drawn && S.drawn.cells;
      return c ? c.x.map(function (x, i) { return [x, c.y[i], c.count[i], c.dir[i]]; }) : [];
    },
    shading: function () {
      var v = shadeValues(S.drawn, S.search);
      if (!v) return null;
      var c = S.drawn.cells;
      return { cls: S.search, level: S.drawn.meta.size,
        cells: c.x.map(function (x, i) { return [x, c.y[i], v[i]]; }) };
    },
    zoomAt: zoomAt, panBy: panBy, fit: fitView, setSearch: setSearch, setLayer: setLayer,
    findClass: findClass, frameTimes: frameTimes
  };
})();
