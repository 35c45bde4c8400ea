/* The explain page: for each protein, each latent's activations as a heat strip under the sequence. */
(function () {
  'use strict';
  var S = RDStrip, el = S.el;
  var META = JSON.parse(document.getElementById('atlas-meta').textContent);
  document.getElementById('title').textContent = META.title;
  document.getElementById('subtitle').textContent = (META.notes || []).join(' · ');
  var host = document.getElementById('strips');
  var width = Math.min(host.clientWidth || 1000, 1060) - 24;
  META.proteins.forEach(function (p) {
    var box = el('section', 'prot'), head = el('div', 'prot-head');
    head.appendChild(el('span', 'acc', p.acc));
    if (p.name) head.appendChild(el('span', 'pname', p.name));
    head.appendChild(el('span', 'stat', p.seq.length + ' residues'));
    box.appendChild(head);
    var vmax = 0;
    p.tracks.forEach(function (t) { if (t.scale > vmax) vmax = t.scale; });
    box.appendChild(S.legend(vmax || 1));
    p.tracks.forEach(function (t) {
      var tr = el('div', 'track'), q = S.b64bytes(t.q), m = S.argmax(q);
      tr.appendChild(el('h3', '', t.label));
      var terms = t.terms.map(function (x) { return x[1] + ' (' + x[0] + ', p_adj ' + S.fmt(x[2]) + ')'; }).join('; ');
      if (terms) tr.appendChild(el('p', 'terms', terms));
      var stat = 'max ' + S.fmt(t.scale) + (m >= 0 && q[m] > 0 ? ' at ' + p.seq.charAt(m) + (m + 1) : '') +
        (t.note ? ' · ' + t.note : '');
      tr.appendChild(el('p', 'terms', stat));
      tr.appendChild(S.render({ seq: p.seq, q: q, levels: t.levels, scale: t.scale, vmax: t.scale, width: width }));
      box.appendChild(tr);
    });
    host.appendChild(box);
  });
  document.body.setAttribute('data-ready', '1');
})();
