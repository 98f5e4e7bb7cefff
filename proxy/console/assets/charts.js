import { h, s } from './dom.js';

export const COLORS = { allow: '#2e9e5b', deny: '#d0453a', rate_limited: '#d99a1e', approval: '#7b4fd1', rejected: '#8a94a6', auth_failed: '#444c5c' };
const PALETTE = ['#d0453a', '#d99a1e', '#7b4fd1', '#2f5bd3', '#444c5c', '#8a94a6'];

// stacked draws per-minute columns stacked by series.
export function stacked(buckets, series, colors, opts = {}) {
  const W = 760, H = opts.height || 180, L = 34, B = 22, T = 8;
  const totals = buckets.map(b => series.reduce((a, k) => a + (b.counts[k] || 0), 0));
  const max = Math.max(1, ...totals);
  const bw = (W - L - 4) / buckets.length;
  const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, width: '100%', class: 'chart', role: 'img', 'aria-label': opts.label || 'chart' });
  for (const f of [0, 0.5, 1]) {
    const y = T + (H - T - B) * (1 - f);
    svg.append(s('line', { x1: L, x2: W, y1: y, y2: y, stroke: '#e3e6ec' }), s('text', { x: L - 4, y: y + 4, 'text-anchor': 'end' }, String(Math.round(max * f))));
  }
  buckets.forEach((b, i) => {
    let y = H - B;
    for (const k of series) {
      const v = b.counts[k] || 0;
      if (!v) continue;
      const hh = (H - T - B) * v / max;
      y -= hh;
      svg.append(s('rect', { x: L + i * bw + 1, y, width: Math.max(1, bw - 2), height: hh, fill: colors[k] || '#999' },
        s('title', null, new Date(b.start).toLocaleTimeString(undefined, { hour12: false, hour: '2-digit', minute: '2-digit' }) + ' ' + k + ': ' + v)));
    }
    if (i % 10 === 0) svg.append(s('text', { x: L + i * bw, y: H - 6 }, new Date(b.start).toLocaleTimeString(undefined, { hour12: false, hour: '2-digit', minute: '2-digit' })));
  });
  return svg;
}


// bars draws a horizontal bar per item.
export function bars(items, opts = {}) {
  const W = 420, row = 24, L = opts.labelWidth || 170;
  const H = Math.max(row, items.length * row) + 4;
  const max = Math.max(1, ...items.map(i => i.value));
  const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, width: '100%', class: 'chart bars', role: 'img', 'aria-label': opts.label || 'chart' });
  if (!items.length) { svg.append(s('text', { x: 4, y: 16 }, opts.empty || 'nothing yet')); return svg; }
  items.forEach((it, i) => {
    const y = i * row + 2;
    const w = (W - L - 50) * it.value / max;
    const name = it.label.length > 26 ? it.label.slice(0, 25) + '…' : it.label;
    svg.append(s('text', { x: L - 6, y: y + 15, 'text-anchor': 'end' }, name, s('title', null, it.label)),
      s('rect', { x: L, y: y + 3, width: Math.max(2, w), height: row - 8, fill: it.color || opts.color || '#2f5bd3', rx: 2 }),
      s('text', { x: L + w + 6, y: y + 15 }, String(it.value) + (it.suffix || '')));
  });
  return svg;
}

export function swatches(series, colors) {
  return h('div', { class: 'legend' }, series.map(k => {
    const sw = s('svg', { width: 10, height: 10 }, s('rect', { width: 10, height: 10, rx: 2, fill: colors[k] || '#999' }));
    return h('span', null, sw, ' ' + k);
  }));
}

export { PALETTE };
