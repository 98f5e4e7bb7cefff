import { h, clear } from './dom.js';
import { api } from './api.js';
import { onAuthError } from './app.js';
import { stacked, bars, swatches, COLORS, PALETTE } from './charts.js';

export function overviewView(main) {
  main.append(h('h1', null, 'Overview'));
  const body = h('div', { id: 'overview' }, h('p', { class: 'muted' }, 'Loading…'));
  main.append(body);
  let timer = null, stopped = false, loads = 0;
  async function load() {
    try {
      const d = (await api('GET', '/api/overview', undefined, loads++ > 0)).data;
      if (stopped) return;
      clear(body);
      const badge = document.getElementById('pending-badge');
      badge.hidden = !d.pending_approvals; badge.textContent = String(d.pending_approvals);
      body.append(h('div', { class: 'card row' },
        h('div', null, h('div', { class: 'big', id: 'pending-count' }, String(d.pending_approvals)), h('div', { class: 'muted' }, 'approvals waiting')),
        h('a', { href: '/console/approvals' }, 'Open the inbox →')));
      if (!d.trail) { body.append(h('p', { class: 'muted' }, 'The charts read the audit trail: they need the auditor role.')); return; }
      const series = ['allow', 'deny', 'rate_limited', 'approval', 'rejected', 'auth_failed'];
      body.append(h('div', { class: 'card' }, h('h2', null, 'Decisions per minute (last hour)'), swatches(series, COLORS),
        stacked(d.decisions_per_minute, series, COLORS, { label: 'decisions per minute by action' })));
      const errSeries = [...new Set(d.upstream_errors_per_minute.flatMap(b => Object.keys(b.counts)))];
      const errColors = Object.fromEntries(errSeries.map((k, i) => [k, PALETTE[i % PALETTE.length]]));
      body.append(h('div', { class: 'grid2' },
        h('div', { class: 'card' }, h('h2', null, 'Top tools'),
          bars(d.top_tools.map(t => ({ label: t.key, value: t.count })), { label: 'top tools', empty: 'no calls in the last hour' })),
        h('div', { class: 'card' }, h('h2', null, 'Top refused callers'),
          bars(d.top_denied_callers.map(t => ({ label: t.key, value: t.count, color: COLORS.deny })), { label: 'top refused callers', empty: 'nobody was refused' }))));
      body.append(h('div', { class: 'card' }, h('h2', null, 'Upstream errors per minute'),
        errSeries.length ? [swatches(errSeries, errColors), stacked(d.upstream_errors_per_minute, errSeries, errColors, { height: 120, label: 'upstream errors per minute' })]
          : h('p', { class: 'muted' }, 'No upstream errors in the last hour.')));
      if (d.truncated) body.append(h('p', { class: 'muted' }, 'Busy hour: the charts show the newest rows only.'));
    } catch (e) {
      if (onAuthError(e)) return;
      clear(body).append(h('p', { class: 'err' }, e.message));
    }
    if (!stopped) timer = setTimeout(load, 15000);
  }
  load();
  return () => { stopped = true; clearTimeout(timer); };
}
