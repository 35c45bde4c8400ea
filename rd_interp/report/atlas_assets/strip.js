/* Per-residue heat strips on canvas (shared by the latent atlas and the explain page).
   Data strings never reach innerHTML: text goes in with textContent or fillText. */
var RDStrip = (function () {
  'use strict';
  var STOPS = [[255, 237, 160], [254, 178, 76], [253, 141, 60], [227, 26, 28], [128, 0, 38]];
  var ZERO = '#e6e9ee';
  var FONT = '11px ui-monospace, "SFMono-Regular", Menlo, Consolas, "DejaVu Sans Mono", monospace';

  function color(t) {  // t in (0, 1] -> rgb string; 0 -> ZERO
    if (!(t > 0)) return ZERO;
    if (t > 1) t = 1;
    var x = t * (STOPS.length - 1), i = Math.min(Math.floor(x), STOPS.length - 2), f = x - i;
    var a = STOPS[i], b = STOPS[i + 1];
    return 'rgb(' + Math.round(a[0] + (b[0] - a[0]) * f) + ',' + Math.round(a[1] + (b[1] - a[1]) * f) + ',' +
      Math.round(a[2] + (b[2] - a[2]) * f) + ')';
  }

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  function canvas(cls, w, h) {
    var c = el('canvas', cls), r = window.devicePixelRatio || 1;
    c.width = Math.round(w * r); c.height = Math.round(h * r);
    c.style.width = w + 'px'; c.style.height = h + 'px';
    var ctx = c.getContext('2d');
    ctx.scale(r, r);
    return [c, ctx];
  }

  function argmax(q) {
    var m = -1, at = -1;
    for (var i = 0; i < q.length; i++) if (q[i] > m) { m = q[i]; at = i; }
    return at;
  }

  function fmt(x) {
    if (!isFinite(x)) return '—';
    if (x === 0) return '0';
    var a = Math.abs(x);
    if (a >= 1000 || a < 0.001) return x.toExponential(2);
    return x.toPrecision(3);
  }

  /* Sequence rows with the heat strip under each residue.
     opt: seq (string), q (Uint8Array, may be shorter than seq), levels, scale (activation of q == levels),
     vmax (activation drawn at full colour; default scale), width (css px). Returns the canvas. */
  function render(opt) {
    var seq = opt.seq || '', q = opt.q || new Uint8Array(0), L = Math.max(seq.length, q.length);
    var levels = opt.levels || 255, scale = opt.scale || 0, vmax = opt.vmax || scale || 1;
    var width = Math.max(opt.width || 800, 240), labelW = 38, cell = 9, letterH = 13, heatH = 9, gap = 7;
    var per = Math.max(10, Math.floor((width - labelW - 4) / cell / 10) * 10);
    var rows = Math.max(1, Math.ceil(L / per)), rowH = letterH + heatH + gap;
    var cw = labelW + per * cell + 4, ch = rows * rowH + 3;
    var pair = canvas('strip', cw, ch), c = pair[0], ctx = pair[1];
    var mpos = argmax(q), nz = 0;
    ctx.font = FONT; ctx.textBaseline = 'alphabetic';
    for (var r = 0; r < rows; r++) {
      var y0 = r * rowH + 2;
      ctx.fillStyle = '#8a93a1'; ctx.textAlign = 'right';
      ctx.fillText(String(r * per + 1), labelW - 6, y0 + letterH - 2);
      ctx.textAlign = 'center';
      for (var j = 0; j < per; j++) {
        var i = r * per + j;
        if (i >= L) break;
        var x = labelW + j * cell, v = i < q.length ? q[i] : 0;
        var t = v / levels * scale / vmax;
        if (v > 0) nz++;
        ctx.fillStyle = color(v > 0 ? Math.max(t, 0.02) : 0);
        ctx.fillRect(x, y0 + letterH, cell - 1, heatH);
        ctx.fillStyle = v > 0 && t > 0.55 ? '#7a0019' : '#2a303b';
        if (i < seq.length) ctx.fillText(seq.charAt(i), x + cell / 2, y0 + letterH - 2);
        if ((i + 1) % 10 === 0) { ctx.fillStyle = '#b4bbc6'; ctx.fillRect(x + cell - 1, y0 + letterH + heatH, 1, 3); }
      }
    }
    if (mpos >= 0 && q[mpos] > 0) {  // mark the maximum: outline around letter + cell, triangle above
      var mr = Math.floor(mpos / per), mx = labelW + (mpos % per) * cell, my = mr * rowH + 2;
      ctx.strokeStyle = '#0b3d91'; ctx.lineWidth = 1.6;
      ctx.strokeRect(mx - 1, my - 0.5, cell + 1, letterH + heatH + 1);
      c.setAttribute('data-max-pos', String(mpos + 1));
    }
    c.setAttribute('data-cells', String(L));
    c.setAttribute('data-nonzero', String(nz));
    c.setAttribute('role', 'img');
    c.setAttribute('aria-label', 'Per-residue activation along ' + L + ' residues; ' + nz + ' residues active' +
      (mpos >= 0 && q[mpos] > 0 ? '; maximum at residue ' + (mpos + 1) : ''));
    c.addEventListener('mousemove', function (ev) {
      var b = c.getBoundingClientRect(), px = ev.clientX - b.left, py = ev.clientY - b.top;
      var col = Math.floor((px - labelW) / cell), row = Math.floor((py - 2) / rowH), i = row * per + col;
      if (col < 0 || col >= per || i < 0 || i >= L) { c.title = ''; return; }
      var v = i < q.length ? q[i] : 0, a = v / levels * scale;
      c.title = (seq.charAt(i) || '?') + (i + 1) + ': ' + (v > 0 ? fmt(a) + ' (' + Math.round(100 * a / vmax) + '% of max)' : 'not active');
    });
    return c;
  }

  /* One-line overview of the whole protein (each pixel column = max over its residues) with the max marked. */
  function overview(opt) {
    var q = opt.q || new Uint8Array(0), L = Math.max((opt.seq || '').length, q.length, 1);
    var levels = opt.levels || 255, scale = opt.scale || 0, vmax = opt.vmax || scale || 1;
    var w = Math.max(opt.width || 400, 120), h = 16;
    var pair = canvas('overview strip', w, h + 7), c = pair[0], ctx = pair[1];
    var nz = 0;
    for (var x = 0; x < w; x++) {
      var a = Math.floor(x * L / w), b = Math.max(a + 1, Math.floor((x + 1) * L / w)), m = 0;
      for (var i = a; i < b && i < q.length; i++) if (q[i] > m) m = q[i];
      if (m > 0) nz++;
      ctx.fillStyle = color(m > 0 ? Math.max(m / levels * scale / vmax, 0.02) : 0);
      ctx.fillRect(x, 6, 1, h);
    }
    var mpos = argmax(q);
    if (mpos >= 0 && q[mpos] > 0) {
      var mx = (mpos + 0.5) * w / L;
      ctx.fillStyle = '#0b3d91'; ctx.beginPath(); ctx.moveTo(mx - 4, 0); ctx.lineTo(mx + 4, 0); ctx.lineTo(mx, 6); ctx.fill();
      c.setAttribute('data-max-pos', String(mpos + 1));
    }
    c.setAttribute('data-nonzero', String(nz));
    c.setAttribute('role', 'img');
    c.setAttribute('aria-label', 'Activation overview over ' + L + ' residues');
    return c;
  }

  function legend(vmax) {
    var box = el('div', 'legend'), pair = canvas('', 120, 10), ctx = pair[1];
    for (var x = 0; x < 120; x++) { ctx.fillStyle = color((x + 1) / 120); ctx.fillRect(x, 0, 1, 10); }
    var z = canvas('', 14, 10); z[1].fillStyle = ZERO; z[1].fillRect(0, 0, 14, 10);
    box.appendChild(z[0]); box.appendChild(el('span', '', 'not active'));
    box.appendChild(el('span', '', '0')); box.appendChild(pair[0]); box.appendChild(el('span', '', fmt(vmax)));
    box.appendChild(el('span', '', '· boxed residue = maximum · hover for values'));
    return box;
  }

  function b64bytes(s) {
    var bin = atob(s), out = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out;
  }

  return { color: color, render: render, overview: overview, legend: legend, el: el, canvas: canvas,
    fmt: fmt, argmax: argmax, b64bytes: b64bytes };
})();
