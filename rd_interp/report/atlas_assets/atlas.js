/* Latent atlas viewer. Reads only data embedded in this file; chunks are inflated on demand.
   Every data string is inserted with textContent (via RDStrip.el); links are built from constant
   https:// prefixes plus encodeURIComponent(id). */
(function () {
  'use strict';
  var S = RDStrip, el = S.el, fmt = S.fmt;
  var META = JSON.parse(document.getElementById('atlas-meta').textContent);
  var NS = ['BP', 'MF', 'CC', '?'], STRATA = ['', 'base', 'mixed', 'residual'];
  var PAGE = 100;
  var lastTerm = -1, IDX = null, SAES = [], TERMS = null, termHits = null, ACC = null, SPACE = {};
  var state = { tab: 'latents', q: '', space: '', seed: '', stratum: '', ns: '', sort: 'sig', annot: false, limit: PAGE,
    sel: '' };
  var $ = function (id) { return document.getElementById(id); };

  // ------------------------------------------------------------------ data chunks
  var cache = {};
  function unpack(buf) {
    var dv = new DataView(buf), hl = dv.getUint32(0, true);
    var head = JSON.parse(new TextDecoder().decode(new Uint8Array(buf, 4, hl)));
    var base = 4 + hl; base += (8 - base % 8) % 8;
    var T = { u1: Uint8Array, u2: Uint16Array, u4: Uint32Array, i4: Int32Array, f4: Float32Array, f8: Float64Array };
    var arrays = {};
    Object.keys(head.arrays).forEach(function (k) {
      var a = head.arrays[k];
      arrays[k] = new T[a[0]](buf, base + a[1], a[2]);
    });
    return { json: head.json, a: arrays };
  }
  function chunk(id) {
    if (!cache[id]) {
      cache[id] = Promise.resolve().then(function () {
        var node = $('chunk-' + id);
        if (!node) throw new Error('data block ' + id + ' is missing from this file');
        if (typeof DecompressionStream === 'undefined')
          throw new Error('this browser cannot inflate the embedded data (no DecompressionStream); use a current Chrome, Firefox or Safari');
        var bytes = S.b64bytes(node.textContent);
        var stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream('deflate'));
        return new Response(stream).arrayBuffer();
      }).then(unpack);
    }
    return cache[id];
  }

  // ------------------------------------------------------------------ helpers
  function link(href, text, cls) {
    var a = el('a', cls, text);
    a.href = href;
    if (href.charAt(0) !== '#') { a.target = '_blank'; a.rel = 'noopener noreferrer'; }
    return a;
  }
  function enc(x) { return encodeURIComponent(String(x)); }
  function uniprot(acc) { return link('https://www.uniprot.org/uniprotkb/' + enc(acc) + '/entry', acc, 'acc'); }
  function quickgo(id) { return link('https://www.ebi.ac.uk/QuickGO/term/' + enc(id), id, 'mono'); }
  function latentHash(si, l) { var s = SAES[si]; return '#latent/' + enc(s.space) + '/' + enc(s.seed) + '/' + l; }
  function termHash(t) { return '#term/' + enc(TERMS.ids[t]); }
  function pfmt(lp) { // -log10 p -> text
    if (!(lp >= 0)) return '—';
    if (lp >= 399) return '< 1e-300';
    var p = Math.pow(10, -lp);
    return p >= 0.001 ? p.toPrecision(2) : p.toExponential(1);
  }
  function pct(x) { return x >= 0.1 ? (100 * x).toFixed(0) + '%' : x >= 0.001 ? (100 * x).toFixed(1) + '%' : x > 0 ? '<0.1%' : '0%'; }
  function clear(n) { while (n.firstChild) n.removeChild(n.firstChild); return n; }
  function td(text, cls) { return el('td', cls, text); }
  function th(text, cls) { return el('th', cls, text); }
  function spaceLabel(key) { return SPACE[key] ? SPACE[key].label : key; }
  function saeLabel(si) { var s = SAES[si]; return spaceLabel(s.space) + ' · seed ' + s.seed; }
  function badge(text, cls) { return el('span', 'badge ' + (cls || ''), text); }
  function fail(host, err) { clear(host).appendChild(el('p', 'warn', 'Could not show this: ' + (err && err.message || err))); }
  function seqOf(sq, p) {
    var a = sq.a.off[p], b = sq.a.off[p + 1], s = '';
    for (var i = a; i < b; i += 4096) s += String.fromCharCode.apply(null, sq.a.seq.subarray(i, Math.min(b, i + 4096)));
    return s;
  }

  // ------------------------------------------------------------------ index
  function loadIndex(ix) {
    IDX = ix;
    var j = ix.json, a = ix.a;
    TERMS = { ids: j.go_ids, names: j.go_names, lower: [], ns: a['t.ns'], depth: a['t.depth'], ic: a['t.ic'] };
    for (var t = 0; t < TERMS.ids.length; t++) TERMS.lower.push((TERMS.ids[t] + ' ' + TERMS.names[t]).toLowerCase());
    META.spaces.forEach(function (sp) { SPACE[sp.key] = sp; });
    META.saes.forEach(function (m, si) {
      var p = 's' + si + '.', s = { i: si, space: m.space, seed: m.seed, n: m.n_latents, meta: m };
      ['freq', 'nfire', 'max', 'nterms', 'toff', 'tid', 'tlp', 'tfold', 'tk', 'trole', 'share', 'stratum'].forEach(function (k) {
        s[k] = a[p + k] || null;
      });
      s.spec = new Float32Array(s.n);
      for (var l = 0; l < s.n; l++) {
        var best = -1;
        for (var e = s.toff[l]; e < s.toff[l + 1]; e++) {
          var ic = TERMS.ic[s.tid[e]], v = isFinite(ic) ? ic : TERMS.depth[s.tid[e]];
          if (v > best) best = v;
        }
        s.spec[l] = best;
      }
      SAES.push(s);
    });
    ACC = {};
    j.accs.forEach(function (acc, i) { ACC[acc] = i; });
  }
  function hits() {  // term -> [[si, l, entry]]
    if (termHits) return termHits;
    termHits = new Array(TERMS.ids.length);
    for (var t = 0; t < termHits.length; t++) termHits[t] = [];
    SAES.forEach(function (s) {
      for (var l = 0; l < s.n; l++) for (var e = s.toff[l]; e < s.toff[l + 1]; e++) termHits[s.tid[e]].push([s.i, l, e]);
    });
    return termHits;
  }
  function termIndex(goid) { for (var t = 0; t < TERMS.ids.length; t++) if (TERMS.ids[t] === goid) return t; return -1; }
  function saeOk(s) { return (!state.space || s.space === state.space) && (state.seed === '' || String(s.seed) === state.seed); }
  function termMatcher(q) {
    if (!q) return null;
    var m = new Uint8Array(TERMS.ids.length);
    for (var t = 0; t < m.length; t++) m[t] = TERMS.lower[t].indexOf(q) >= 0 ? 1 : 0;
    return m;
  }

  // ------------------------------------------------------------------ list: latents
  function latentRows() {
    var q = state.q.trim().toLowerCase(), qnum = /^#?\d+$/.test(q) ? parseInt(q.replace('#', ''), 10) : -1;
    var match = qnum < 0 ? termMatcher(q) : null, ns = state.ns === '' ? -1 : +state.ns, st = +state.stratum || 0;
    var rows = [];
    SAES.forEach(function (s) {
      if (!saeOk(s)) return;
      for (var l = 0; l < s.n; l++) {
        var a = s.toff[l], b = s.toff[l + 1];
        if (state.annot && a === b) continue;
        if (st && (!s.stratum || s.stratum[l] !== st)) continue;
        if (qnum >= 0 && l !== qnum) continue;
        if (ns >= 0 || match) {
          var ok = false;
          for (var e = a; e < b && !ok; e++) ok = (ns < 0 || TERMS.ns[s.tid[e]] === ns) && (!match || match[s.tid[e]] === 1);
          if (!ok) continue;
        }
        rows.push([s.i, l]);
      }
    });
    var key = {
      sig: function (r) { var s = SAES[r[0]]; return s.toff[r[1]] < s.toff[r[1] + 1] ? s.tlp[s.toff[r[1]]] : -1; },
      cov: function (r) { return SAES[r[0]].nterms[r[1]]; },
      spec: function (r) { return SAES[r[0]].spec[r[1]]; },
      freq: function (r) { return SAES[r[0]].freq[r[1]]; },
      rare: function (r) { var f = SAES[r[0]].freq[r[1]]; return f > 0 ? -f : -2; },
      idx: function (r) { return -(r[0] * 1e6 + r[1]); }
    }[state.sort] || function () { return 0; };
    var sig = function (r) { var s = SAES[r[0]]; return s.toff[r[1]] < s.toff[r[1] + 1] ? s.tlp[s.toff[r[1]]] : -1; };
    rows.forEach(function (r) { r.push(key(r), sig(r)); });
    rows.sort(function (x, y) { return (y[2] - x[2]) || (y[3] - x[3]) || (x[0] - y[0]) || (x[1] - y[1]); });
    return rows;
  }
  function renderLatentList(host) {
    var rows = latentRows();
    host.appendChild(el('div', 'count', rows.length.toLocaleString('en') + ' latents match'));
    var tb = el('table', 'rows'), hr = el('tr');
    [['Latent', ''], ['Best term', ''], ['p_adj', 'num'], ['terms', 'num'], ['fires', 'num'], ['stratum', '']].forEach(function (h) { hr.appendChild(th(h[0], h[1])); });
    var thead = el('thead'); thead.appendChild(hr); tb.appendChild(thead);
    var body = el('tbody');
    rows.slice(0, state.limit).forEach(function (r) {
      var s = SAES[r[0]], l = r[1], tr = el('tr', 'click'), e = s.toff[l];
      var h = latentHash(r[0], l);
      if (state.sel === h) tr.className += ' sel';
      var c1 = el('td'); c1.appendChild(link(h, '#' + l)); c1.appendChild(el('div', 'sub', saeLabel(r[0])));
      tr.appendChild(c1);
      var c2 = el('td');
      if (e < s.toff[l + 1]) {
        c2.appendChild(el('div', '', TERMS.names[s.tid[e]]));
        c2.appendChild(el('div', 'sub', TERMS.ids[s.tid[e]] + ' · ' + NS[TERMS.ns[s.tid[e]]]));
      } else c2.appendChild(el('span', 'sub', s.freq[l] > 0 ? 'no captured term' : 'never fires'));
      tr.appendChild(c2);
      tr.appendChild(td(e < s.toff[l + 1] ? pfmt(s.tlp[e]) : '', 'num'));
      tr.appendChild(td(s.nterms[l] ? String(s.nterms[l]) : '', 'num'));
      tr.appendChild(td(pct(s.freq[l]), 'num'));
      var c6 = el('td');
      if (s.stratum && s.stratum[l]) c6.appendChild(badge(STRATA[s.stratum[l]], STRATA[s.stratum[l]]));
      tr.appendChild(c6);
      tr.addEventListener('click', function (ev) { if (ev.target.tagName !== 'A') location.hash = h; });
      body.appendChild(tr);
    });
    tb.appendChild(body); host.appendChild(tb);
    more(host, rows.length);
  }
  function more(host, n) {
    if (n <= state.limit) return;
    var b = el('button', 'more', 'Show ' + Math.min(PAGE, n - state.limit) + ' more of ' + (n - state.limit).toLocaleString('en'));
    b.type = 'button';
    b.addEventListener('click', function () { state.limit += PAGE; renderList(); });
    host.appendChild(b);
  }

  // ------------------------------------------------------------------ list: GO terms
  function termRows(minSpaces) {
    var H = hits(), q = state.q.trim().toLowerCase(), ns = state.ns === '' ? -1 : +state.ns, rows = [];
    for (var t = 0; t < H.length; t++) {
      if (!H[t].length || (ns >= 0 && TERMS.ns[t] !== ns) || (q && TERMS.lower[t].indexOf(q) < 0)) continue;
      var n = 0, best = -1, spaces = {};
      H[t].forEach(function (h) {
        var s = SAES[h[0]];
        if (!saeOk(s)) return;
        n++; spaces[s.space] = 1;
        if (s.tlp[h[2]] > best) best = s.tlp[h[2]];
      });
      var ns_ = Object.keys(spaces).length;
      if (n && ns_ >= (minSpaces || 1)) rows.push([t, n, ns_, best]);
    }
    var k = state.sort === 'cov' ? 1 : state.sort === 'spec' ? -1 : 3;
    rows.sort(function (x, y) {
      var a = k < 0 ? (TERMS.ic[y[0]] || 0) - (TERMS.ic[x[0]] || 0) : y[k] - x[k];
      return a || (y[2] - x[2]) || (y[3] - x[3]) || (x[0] - y[0]);
    });
    return rows;
  }
  function renderTermList(host, minSpaces) {
    var rows = termRows(minSpaces);
    host.appendChild(el('div', 'count', rows.length.toLocaleString('en') + ' GO terms captured' +
      (minSpaces > 1 ? ' in two or more spaces' : '') + (state.q ? ' match' : '')));
    var tb = el('table', 'rows'), hr = el('tr');
    [['GO term', ''], ['latents', 'num'], ['spaces', 'num'], ['best p_adj', 'num']].forEach(function (h) { hr.appendChild(th(h[0], h[1])); });
    var thead = el('thead'); thead.appendChild(hr); tb.appendChild(thead);
    var body = el('tbody');
    rows.slice(0, state.limit).forEach(function (r) {
      var t = r[0], tr = el('tr', 'click'), h = minSpaces > 1 ? compareHash(t) : termHash(t);
      if (state.sel === h) tr.className += ' sel';
      var c = el('td'); c.appendChild(link(h, TERMS.names[t]));
      c.appendChild(el('div', 'sub', TERMS.ids[t] + ' · ' + NS[TERMS.ns[t]] + ' · depth ' + TERMS.depth[t]));
      tr.appendChild(c);
      tr.appendChild(td(String(r[1]), 'num')); tr.appendChild(td(String(r[2]), 'num')); tr.appendChild(td(pfmt(r[3]), 'num'));
      tr.addEventListener('click', function (ev) { if (ev.target.tagName !== 'A') location.hash = h; });
      body.appendChild(tr);
    });
    tb.appendChild(body); host.appendChild(tb);
    more(host, rows.length);
  }

  // ------------------------------------------------------------------ list: proteins
  function renderProteinList(host) {
    var q = state.q.trim().toLowerCase(), accs = IDX.json.accs, names = IDX.json.names, rows = [];
    for (var i = 0; i < accs.length; i++) {
      if (q && accs[i].toLowerCase().indexOf(q) < 0 && names[i].toLowerCase().indexOf(q) < 0) continue;
      rows.push(i);
    }
    if (q) rows.sort(function (x, y) {  // exact accession first
      return (accs[y].toLowerCase() === q) - (accs[x].toLowerCase() === q) || (x - y);
    });
    host.appendChild(el('div', 'count', rows.length.toLocaleString('en') + ' proteins' + (q ? ' match' : ' (type an accession or a name to search)')));
    var tb = el('table', 'rows'), hr = el('tr');
    [['Accession', ''], ['Name', ''], ['length', 'num']].forEach(function (h) { hr.appendChild(th(h[0], h[1])); });
    var thead = el('thead'); thead.appendChild(hr); tb.appendChild(thead);
    var body = el('tbody');
    rows.slice(0, state.limit).forEach(function (i) {
      var h = '#protein/' + enc(accs[i]), tr = el('tr', 'click');
      if (state.sel === h) tr.className += ' sel';
      var c = el('td'); c.appendChild(link(h, accs[i])); tr.appendChild(c);
      tr.appendChild(td(names[i] || '—'));
      tr.appendChild(td(IDX.a['p.len'][i] ? String(IDX.a['p.len'][i]) : '', 'num'));
      tr.addEventListener('click', function (ev) { if (ev.target.tagName !== 'A') location.hash = h; });
      body.appendChild(tr);
    });
    tb.appendChild(body); host.appendChild(tb);
    more(host, rows.length);
  }

  function renderList() {
    var host = clear($('list'));
    if (state.tab === 'latents') renderLatentList(host);
    else if (state.tab === 'terms') renderTermList(host, 1);
    else if (state.tab === 'proteins') renderProteinList(host);
    else renderTermList(host, 2);
  }

  // ------------------------------------------------------------------ detail: latent
  function histogram(s, d, l) {
    var bins = d.json.bins, h = d.a.hist.subarray(l * bins, (l + 1) * bins), w = 300, hgt = 84;
    var pair = S.canvas('hist', w, hgt + 16), c = pair[0], ctx = pair[1], mx = 0;
    for (var i = 0; i < bins; i++) if (h[i] > mx) mx = h[i];
    var bw = w / bins;
    for (i = 0; i < bins; i++) {
      if (!h[i]) continue;
      var bh = Math.max(1, hgt * Math.log1p(h[i]) / Math.log1p(mx));
      ctx.fillStyle = '#4f7fbf'; ctx.fillRect(i * bw + 0.5, hgt - bh, bw - 1, bh);
    }
    ctx.fillStyle = '#5b6473'; ctx.font = '11px sans-serif'; ctx.textAlign = 'left';
    ctx.fillText('0', 0, hgt + 12); ctx.textAlign = 'right'; ctx.fillText(fmt(s.max[l]), w, hgt + 12);
    c.title = 'Proteins by pooled activation (' + bins + ' bins from 0 to the max; log count)';
    var box = el('div'); box.appendChild(el('div', 'sub', 'Pooled activation of firing proteins (log count)'));
    box.appendChild(c);
    return box;
  }
  function fact(k, v, sub) {
    var f = el('div', 'fact'); f.appendChild(el('div', 'k', k)); f.appendChild(el('div', 'v', v));
    if (sub) f.appendChild(el('div', 'sub', sub));
    return f;
  }
  function shareFact(s, l) {
    var sp = SPACE[s.space], blocks = sp.blocks || [], v = s.share[l];
    var f = el('div', 'fact');
    f.appendChild(el('div', 'k', 'Decoder share'));
    var bar = el('div', 'sharebar'), b = el('div', 'b'), r = el('div', 'r');
    b.style.width = (100 * v).toFixed(1) + '%'; r.style.width = (100 * (1 - v)).toFixed(1) + '%';
    bar.appendChild(b); bar.appendChild(r); f.appendChild(bar);
    f.appendChild(el('div', 'sharelab', (blocks[0] ? blocks[0].name : 'block 1') + ' ' + pct(v) + ' · ' +
      (blocks[1] ? blocks[1].name : 'rest') + ' ' + pct(1 - v)));
    return f;
  }
  function termsTable(s, l, opt) {
    var a = s.toff[l], b = s.toff[l + 1], compact = opt && opt.compact, mark = opt ? opt.term : -1;
    if (a === b) return el('p', 'muted', s.freq[l] > 0 ? 'No GO term captured by this latent.' : 'This latent never fires on the scored proteins.');
    var tb = el('table', 'rows'), hr = el('tr');
    var cols = compact ? [['GO term', ''], ['p_adj', 'num'], ['fold', 'num']]
      : [['GO term', ''], ['p_adj', 'num'], ['fold', 'num'], ['depth', 'num'], ['k', 'num']];
    cols.forEach(function (h) { hr.appendChild(th(h[0], h[1])); });
    var thead = el('thead'); thead.appendChild(hr); tb.appendChild(thead);
    var body = el('tbody');
    for (var e = a; e < b; e++) {
      var t = s.tid[e], tr = el('tr', t === mark ? 'sel' : '');
      var c = el('td'); c.appendChild(link(termHash(t), TERMS.names[t]));
      var sub = el('div', 'sub'); sub.appendChild(quickgo(TERMS.ids[t])); sub.appendChild(document.createTextNode(' · ' + NS[TERMS.ns[t]] + ' '));
      if (s.trole[e] & 1) sub.appendChild(badge('most significant', 'sig'));
      if (s.trole[e] & 2) sub.appendChild(badge('most specific', 'spec'));
      c.appendChild(sub); tr.appendChild(c);
      tr.appendChild(td(pfmt(s.tlp[e]), 'num')); tr.appendChild(td(fmt(s.tfold[e]), 'num'));
      if (!compact) { tr.appendChild(td(String(TERMS.depth[t]), 'num')); tr.appendChild(td(String(s.tk[e]), 'num')); }
      body.appendChild(tr);
    }
    tb.appendChild(body);
    var box = el('div'); box.appendChild(tb);
    box.appendChild(el('p', 'sub', s.nterms[l] + ' captured term' + (s.nterms[l] === 1 ? '' : 's') +
      ' in all; shown: the most significant, the most specific, then further terms by p_adj that are not ancestors or descendants of a listed one. k = top proteins annotated.'));
    return box;
  }
  function topProteins(host, si, l, opt) {
    var s = SAES[si];
    host.appendChild(el('p', 'muted', 'Inflating residue activations…'));
    return Promise.all([chunk(s.meta.detail), chunk('seq')]).then(function (res) {
      var d = res[0], sq = res[1], a = d.a.toff[l], b = d.a.toff[l + 1];
      clear(host);
      if (a === b) { host.appendChild(el('p', 'muted', 'No protein activates this latent.')); return d; }
      var vmax = 0;
      for (var k = a; k < b; k++) if (d.a.tscale[k] > vmax) vmax = d.a.tscale[k];
      host.appendChild(S.legend(vmax || 1));
      var width = Math.max(260, (host.clientWidth || 800) - 22), n = Math.min(b - a, opt.limit || 1e9);
      for (k = a; k < a + n; k++) {
        var p = d.a.tprot[k], acc = IDX.json.accs[p], seq = seqOf(sq, p);
        var q = d.a.strips.subarray(d.a.soff[k], d.a.soff[k + 1]), m = S.argmax(q);
        var box = el('div', 'prot'), head = el('div', 'prot-head');
        head.appendChild(el('span', 'stat', (k - a + 1) + '.'));
        head.appendChild(uniprot(acc));
        head.appendChild(link('#protein/' + enc(acc), 'all latents', 'sub'));
        if (IDX.json.names[p]) head.appendChild(el('span', 'pname', IDX.json.names[p]));
        head.appendChild(el('span', 'stat', 'max ' + fmt(d.a.tact[k]) + (m >= 0 && q[m] > 0 ? ' at ' + seq.charAt(m) + (m + 1) : '') +
          ' · ' + seq.length + ' aa' + (q.length ? ' · ' + countNz(q) + (countNz(q) === 1 ? ' residue' : ' residues') + ' active' : '')));
        box.appendChild(head);
        if (!q.length) box.appendChild(el('p', 'sub', 'No residue activations were stored for this protein.'));
        else if (opt.overview) box.appendChild(S.overview({ seq: seq, q: q, levels: d.a.tlev[k], scale: d.a.tscale[k], vmax: vmax, width: width }));
        else box.appendChild(S.render({ seq: seq, q: q, levels: d.a.tlev[k], scale: d.a.tscale[k], vmax: vmax, width: width }));
        host.appendChild(box);
      }
      if (n < b - a) host.appendChild(el('p', 'sub', (b - a - n) + ' more in the latent view.'));
      return d;
    });
  }
  function countNz(q) { var n = 0; for (var i = 0; i < q.length; i++) if (q[i]) n++; return n; }

  function latentPanel(si, l, opt) {
    var s = SAES[si], box = el('div', 'latent');
    var h = el(opt.compact ? 'h3' : 'h2', opt.compact ? 'paneltitle' : '');
    if (opt.compact) h.appendChild(link(latentHash(si, l), spaceLabel(s.space) + ' · seed ' + s.seed + ' · latent #' + l));
    else h.textContent = spaceLabel(s.space) + ' · seed ' + s.seed + ' · latent #' + l + ' ';
    if (s.stratum && s.stratum[l]) { h.appendChild(document.createTextNode(' ')); h.appendChild(badge(STRATA[s.stratum[l]], STRATA[s.stratum[l]])); }
    box.appendChild(h);
    var facts = el('div', 'facts');
    facts.appendChild(fact('Fires in', pct(s.freq[l]), s.nfire[l].toLocaleString('en') + ' of ' + s.meta.n_proteins.toLocaleString('en') + ' proteins'));
    facts.appendChild(fact('Max activation', fmt(s.max[l])));
    facts.appendChild(fact('Terms captured', String(s.nterms[l])));
    if (s.share && isFinite(s.share[l])) facts.appendChild(shareFact(s, l));
    var row = el('div', 'row2'), hbox = el('div');
    row.appendChild(facts); row.appendChild(hbox); box.appendChild(row);
    box.appendChild(el('h3', '', 'GO terms'));
    box.appendChild(termsTable(s, l, opt));
    var a = s.toff[l];
    if (!opt.compact && a < s.toff[l + 1]) {
      var t = s.tid[a], b = el('button', 'act', 'Compare "' + TERMS.names[t] + '" across spaces');
      b.type = 'button';
      b.addEventListener('click', function () { location.hash = compareHash(t, s.space); });
      box.appendChild(b);
    }
    box.appendChild(el('h3', '', 'Top proteins' + (opt.compact ? '' : ' — activation along the sequence')));
    var tp = el('div', 'tops');
    box.appendChild(tp);
    var done = topProteins(tp, si, l, opt).then(function (d) { hbox.appendChild(histogram(s, d, l)); });
    return [box, done];
  }
  function showLatent(spaceKey, seed, l) {
    var si = -1;
    SAES.forEach(function (s) { if (s.space === spaceKey && String(s.seed) === String(seed)) si = s.i; });
    var host = clear($('detail'));
    if (si < 0 || !(l >= 0 && l < SAES[si].n)) { host.appendChild(el('p', 'warn', 'No such latent in this atlas.')); return Promise.resolve(); }
    var r = latentPanel(si, l, { term: lastTerm });  // the term the user came from is highlighted
    host.appendChild(r[0]);
    return r[1].catch(function (e) { fail(host, e); });
  }

  // ------------------------------------------------------------------ detail: term
  function showTerm(goid) {
    var host = clear($('detail')), t = termIndex(goid);
    lastTerm = t;
    if (t < 0) { host.appendChild(el('p', 'warn', 'No latent in this atlas captures ' + goid + '.')); return Promise.resolve(); }
    var h = el('h2', '', TERMS.names[t]);
    host.appendChild(h);
    var sub = el('p', 'sub'); sub.appendChild(quickgo(TERMS.ids[t]));
    sub.appendChild(document.createTextNode(' · ' + NS[TERMS.ns[t]] + ' · depth ' + TERMS.depth[t] +
      (isFinite(TERMS.ic[t]) ? ' · IC ' + TERMS.ic[t].toFixed(2) : '')));
    host.appendChild(sub);
    var H = hits()[t].slice().sort(function (x, y) { return SAES[y[0]].tlp[y[2]] - SAES[x[0]].tlp[x[2]] || x[0] - y[0] || x[1] - y[1]; });
    var bySpace = {}, order = [];
    H.forEach(function (x) { var k = SAES[x[0]].space; if (!bySpace[k]) { bySpace[k] = []; order.push(k); } bySpace[k].push(x); });
    var spaces = META.spaces.map(function (sp) { return sp.key; }).filter(function (k) { return bySpace[k]; });
    host.appendChild(el('p', '', H.length + ' latent' + (H.length === 1 ? '' : 's') + ' in ' + spaces.length + ' of ' +
      META.spaces.length + ' spaces capture this term.'));
    if (spaces.length >= 1) {
      var pk = el('div', 'pickers'), A = select(spaces, spaces[0]), B = select(META.spaces.map(function (sp) { return sp.key; }), spaces[1] || otherSpace(spaces[0]));
      var la = el('label', '', 'Compare '); la.appendChild(A); var lb = el('label', '', ' with '); lb.appendChild(B);
      var go = el('button', 'act', 'Side by side'); go.type = 'button';
      go.addEventListener('click', function () { location.hash = compareHash(t, A.value, B.value); });
      pk.appendChild(la); pk.appendChild(lb); pk.appendChild(go); host.appendChild(pk);
    }
    var tb = el('table', 'rows'), hr = el('tr');
    [['Space', ''], ['seed', 'num'], ['latent', 'num'], ['p_adj', 'num'], ['fold', 'num'], ['k', 'num'], ['fires', 'num'], ['', '']].forEach(function (x) { hr.appendChild(th(x[0], x[1])); });
    var thead = el('thead'); thead.appendChild(hr); tb.appendChild(thead);
    var body = el('tbody');
    spaces.forEach(function (k) {
      bySpace[k].forEach(function (x, i) {
        var s = SAES[x[0]], tr = el('tr', 'click'), hh = latentHash(x[0], x[1]);
        tr.appendChild(td(spaceLabel(k))); tr.appendChild(td(String(s.seed), 'num'));
        var c = el('td', 'num'); c.appendChild(link(hh, '#' + x[1])); tr.appendChild(c);
        tr.appendChild(td(pfmt(s.tlp[x[2]]), 'num')); tr.appendChild(td(fmt(s.tfold[x[2]]), 'num'));
        tr.appendChild(td(String(s.tk[x[2]]), 'num')); tr.appendChild(td(pct(s.freq[x[1]]), 'num'));
        var c8 = el('td'); if (i === 0) c8.appendChild(badge('best in space', 'sig'));
        if (s.trole[x[2]] & 2) c8.appendChild(badge('most specific', 'spec'));
        tr.appendChild(c8);
        tr.addEventListener('click', function (ev) { if (ev.target.tagName !== 'A') location.hash = hh; });
        body.appendChild(tr);
      });
    });
    tb.appendChild(body); host.appendChild(tb);
    return Promise.resolve();
  }
  function select(keys, value) {
    var s = el('select');
    keys.forEach(function (k) { var o = el('option', '', spaceLabel(k)); o.value = k; if (k === value) o.selected = true; s.appendChild(o); });
    return s;
  }
  function otherSpace(k) { var o = META.spaces.filter(function (sp) { return sp.key !== k; }); return o.length ? o[0].key : k; }

  // ------------------------------------------------------------------ detail: compare
  function bestInSpace(t, key) {
    var best = null;
    hits()[t].forEach(function (x) {
      var s = SAES[x[0]];
      if (s.space === key && (!best || s.tlp[x[2]] > SAES[best[0]].tlp[best[2]])) best = x;
    });
    return best;
  }
  function compareHash(t, a, b) {
    if (!a || !b) {
      var sp = [];
      META.spaces.forEach(function (x) { if (bestInSpace(t, x.key)) sp.push(x.key); });
      a = a || sp[0] || META.spaces[0].key;
      b = b || sp.filter(function (k) { return k !== a; })[0] || otherSpace(a);
    }
    return '#compare/' + enc(TERMS.ids[t]) + '/' + enc(a) + '/' + enc(b);
  }
  function showCompare(goid, a, b) {
    var host = clear($('detail')), t = termIndex(goid);
    lastTerm = t;
    if (t < 0) { host.appendChild(el('p', 'warn', 'No latent in this atlas captures ' + goid + '.')); return Promise.resolve(); }
    var h = el('h2', '', 'Best latent for "' + TERMS.names[t] + '" in two spaces');
    host.appendChild(h);
    var sub = el('p', 'sub'); sub.appendChild(quickgo(TERMS.ids[t]));
    sub.appendChild(document.createTextNode(' · ' + NS[TERMS.ns[t]] + ' · best = lowest p_adj over the seeds of a space'));
    host.appendChild(sub);
    var keys = META.spaces.map(function (sp) { return sp.key; });
    var pk = el('div', 'pickers'), A = select(keys, a), B = select(keys, b);
    var la = el('label', '', 'Left '); la.appendChild(A); var lb = el('label', '', 'Right '); lb.appendChild(B);
    var upd = function () { location.hash = compareHash(t, A.value, B.value); };
    A.addEventListener('change', upd); B.addEventListener('change', upd);
    pk.appendChild(la); pk.appendChild(lb); host.appendChild(pk);
    var grid = el('div', 'compare'), jobs = [];
    host.appendChild(grid);
    [a, b].forEach(function (key) {
      var col = el('div');
      grid.appendChild(col);
      var x = bestInSpace(t, key);
      if (!x) { col.appendChild(el('h2', '', spaceLabel(key))); col.appendChild(el('p', 'muted', 'No latent in this space captures the term.')); return; }
      col.appendChild(el('p', 'sub', 'p_adj ' + pfmt(SAES[x[0]].tlp[x[2]]) + ' · fold ' + fmt(SAES[x[0]].tfold[x[2]]) + ' · ' +
        SAES[x[0]].tk[x[2]] + ' top proteins annotated'));
      var r = latentPanel(x[0], x[1], { compact: true, overview: true, limit: 6, term: t });
      col.appendChild(r[0]); jobs.push(r[1]);
    });
    return Promise.all(jobs).catch(function (e) { fail(host, e); });
  }

  // ------------------------------------------------------------------ detail: protein
  function showProtein(acc) {
    var host = clear($('detail')), p = ACC[acc];
    if (p === undefined) { host.appendChild(el('p', 'warn', 'Protein ' + acc + ' is not in this atlas.')); return Promise.resolve(); }
    var h = el('h2'); h.appendChild(uniprot(acc));
    if (IDX.json.names[p]) h.appendChild(el('span', 'pname', ' ' + IDX.json.names[p]));
    host.appendChild(h);
    if (IDX.a['p.len'][p]) host.appendChild(el('p', 'sub', IDX.a['p.len'][p] + ' residues'));
    var body = el('div'); body.appendChild(el('p', 'muted', 'Loading…')); host.appendChild(body);
    return chunk('pl').then(function (pl) {
      clear(body);
      body.appendChild(el('p', 'sub', 'Per SAE, the latents with the highest activation on this protein relative to each latent\'s ' +
        'maximum over all scored proteins. Strips are shown where the protein is among the latent\'s top proteins.'));
      var jobs = [], any = false;
      SAES.forEach(function (s) {
        var pre = 's' + s.i + '.', off = pl.a[pre + 'off'], a = off[p], b = off[p + 1];
        if (a === b) return;
        any = true;
        body.appendChild(el('h3', '', saeLabel(s.i)));
        var tb = el('table', 'rows'), tbody = el('tbody');
        for (var k = a; k < b; k++) (function (k) {
          var l = pl.a[pre + 'lat'][k], rel = pl.a[pre + 'rel'][k] / 255, tr = el('tr'), e = s.toff[l];
          var c1 = el('td'); c1.appendChild(link(latentHash(s.i, l), '#' + l)); tr.appendChild(c1);
          var c2 = el('td', 'num'), bar = el('span', 'relbar'); bar.style.width = Math.max(2, Math.round(60 * rel)) + 'px';
          c2.appendChild(bar); c2.appendChild(document.createTextNode(' ' + Math.round(100 * rel) + '%')); tr.appendChild(c2);
          var c3 = el('td');
          if (e < s.toff[l + 1]) { c3.appendChild(link(termHash(s.tid[e]), TERMS.names[s.tid[e]])); c3.appendChild(el('span', 'sub', ' p_adj ' + pfmt(s.tlp[e]))); }
          else c3.appendChild(el('span', 'sub', 'no captured term'));
          tr.appendChild(c3);
          var c4 = el('td', 'stripcell'); tr.appendChild(c4);
          if (pl.a[pre + 'top'][k]) jobs.push(Promise.all([chunk(s.meta.detail), chunk('seq')]).then(function (res) {
            var d = res[0], ta = d.a.toff[l], tb2 = d.a.toff[l + 1];
            for (var j = ta; j < tb2; j++) if (d.a.tprot[j] === p) {
              var q = d.a.strips.subarray(d.a.soff[j], d.a.soff[j + 1]);
              if (q.length) c4.appendChild(S.overview({ seq: seqOf(res[1], p), q: q, levels: d.a.tlev[j], scale: d.a.tscale[j], vmax: d.a.tscale[j], width: 220 }));
            }
          }));
          tbody.appendChild(tr);
        })(k);
        tb.appendChild(tbody); body.appendChild(tb);
      });
      if (!any) body.appendChild(el('p', 'muted', 'No latent fires on this protein.'));
      return Promise.all(jobs);
    }).catch(function (e) { fail(host, e); });
  }

  // ------------------------------------------------------------------ controls, routing
  function setTab(tab) {
    if (state.tab !== tab) state.limit = PAGE;
    state.tab = tab;
    Array.prototype.forEach.call($('tabs').querySelectorAll('button'), function (b) {
      b.className = b.getAttribute('data-tab') === tab ? 'on' : '';
    });
    var show = { latents: ['f-space', 'f-seed', 'f-stratum', 'f-ns', 'f-sort', 'f-annot'], terms: ['f-space', 'f-seed', 'f-ns', 'f-sort'],
      proteins: [], compare: ['f-ns', 'f-sort'] }[tab];
    ['f-space', 'f-seed', 'f-stratum', 'f-ns', 'f-sort', 'f-annot'].forEach(function (id) {
      $(id).parentNode.className = ($(id).parentNode.className.replace(/\s*hide/g, '')) + (show.indexOf(id) < 0 ? ' hide' : '');
    });
    document.querySelector('main.panes').className = 'panes' + (tab === 'compare' ? ' narrowlist' : '');
    $('q').placeholder = { latents: 'Filter latents by GO id or term name, or #index', terms: 'Search GO terms by id or name',
      proteins: 'Search proteins by accession or name', compare: 'Search GO terms captured in two or more spaces' }[tab];
  }
  function route() {
    var parts = location.hash.replace(/^#/, '').split('/').map(function (x) { try { return decodeURIComponent(x); } catch (e) { return ''; } });
    state.sel = location.hash;
    var job;
    if (parts[0] === 'latent') job = showLatent(parts[1], parts[2], parseInt(parts[3], 10));
    else if (parts[0] === 'term') { setTab('terms'); job = showTerm(parts[1]); }
    else if (parts[0] === 'protein') { setTab('proteins'); job = showProtein(parts[1]); }
    else if (parts[0] === 'compare') { setTab('compare'); job = showCompare(parts[1], parts[2], parts[3]); }
    else job = Promise.resolve();
    renderList();
    $('detail').scrollTop = 0;
    return job.then(function () { document.body.setAttribute('data-view', '#' + parts.join('/')); });  // decoded, for tests and tools
  }
  function initControls() {
    var sp = $('f-space'), sd = $('f-seed'), seeds = {};
    var o = el('option', '', 'all'); o.value = ''; sp.appendChild(o);
    META.spaces.forEach(function (x) { var op = el('option', '', x.label); op.value = x.key; sp.appendChild(op); });
    META.saes.forEach(function (m) { seeds[m.seed] = 1; });
    o = el('option', '', 'all'); o.value = ''; sd.appendChild(o);
    Object.keys(seeds).sort(function (a, b) { return a - b; }).forEach(function (k) { var op = el('option', '', k); op.value = k; sd.appendChild(op); });
    var timer = null;
    $('q').addEventListener('input', function () {
      clearTimeout(timer);
      timer = setTimeout(function () { state.q = $('q').value; state.limit = PAGE; renderList(); }, 120);
    });
    [['f-space', 'space'], ['f-seed', 'seed'], ['f-stratum', 'stratum'], ['f-ns', 'ns'], ['f-sort', 'sort']].forEach(function (p) {
      $(p[0]).addEventListener('change', function () { state[p[1]] = $(p[0]).value; state.limit = PAGE; renderList(); });
    });
    $('f-annot').addEventListener('change', function () { state.annot = $('f-annot').checked; state.limit = PAGE; renderList(); });
    Array.prototype.forEach.call($('tabs').querySelectorAll('button'), function (b) {
      b.addEventListener('click', function () { setTab(b.getAttribute('data-tab')); renderList(); });
    });
    window.addEventListener('hashchange', route);
  }

  function header() {
    var nl = 0;
    META.saes.forEach(function (m) { nl += m.n_latents; });
    $('title').textContent = META.title;
    $('subtitle').textContent = META.spaces.length + ' spaces · ' + META.saes.length + ' SAEs · ' + nl.toLocaleString('en') +
      ' latents · ' + META.n_proteins_scored.toLocaleString('en') + ' proteins scored · ' + TERMS.ids.length.toLocaleString('en') + ' GO terms captured';
    var f = $('footer');
    (META.notes || []).forEach(function (n) { f.appendChild(el('p', '', n)); });
    var v = META.created_by || {};
    f.appendChild(el('p', '', META.format + ' · rd_interp ' + (v.rd_interp || '?') + ' · stratum: decoder share on the first block relative to its share of the dimensions ≥ ' +
      META.share_thresholds[0] + ' base, ≤ ' + META.share_thresholds[1] + ' residual, else mixed · UniProt and QuickGO links open only on click.'));
  }

  window.addEventListener('error', function (ev) { fail($('detail'), ev.message); });
  document.title = META.title;
  $('title').textContent = META.title;
  chunk('idx').then(function (ix) {
    loadIndex(ix);
    header();
    initControls();
    setTab('latents');
    return route();
  }).then(function () {
    if (window.performance && performance.mark) performance.mark('atlas-ready');
    document.body.setAttribute('data-ready', '1');
  }).catch(function (e) {
    $('subtitle').textContent = 'The atlas could not be loaded: ' + (e && e.message || e);
    document.body.setAttribute('data-ready', 'error');
  });
})();
