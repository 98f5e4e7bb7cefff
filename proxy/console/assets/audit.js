import { h, append, clear, tree, pill, fmtTime } from './dom.js';
import { api } from './api.js';
import { onAuthError, navigate } from './app.js';

const DECISIONS = ['allow', 'deny', 'rate_limited', 'policy_error', 'approval_required', 'approval_requested', 'approval_granted',
  'approval_denied', 'approval_expired', 'approval_used', 'approvals_unavailable', 'rate_limiter_unavailable', 'invalid_arguments',
  'batch_refused', 'rejected', 'pass', 'outcome', 'auth_failed', 'shadow_allow', 'shadow_deny', 'shadow_rate_limit', 'shadow_require_approval'];
const KINDS = ['decision', 'outcome', 'approval', 'auth_failure', 'shadow'];
const FIELDS = ['since', 'until', 'sub', 'tool', 'decision', 'kind', 'request_id', 'approval_id'];

// toLocalInput turns an RFC 3339 time into a datetime-local value, and back.
function toLocalInput(rfc) {
  if (!rfc) return '';
  const d = new Date(rfc);
  if (isNaN(d)) return '';
  const p = n => String(n).padStart(2, '0');
  return d.getFullYear() + '-' + p(d.getMonth() + 1) + '-' + p(d.getDate()) + 'T' + p(d.getHours()) + ':' + p(d.getMinutes());
}
function fromLocalInput(v) { if (!v) return ''; const d = new Date(v); return isNaN(d) ? '' : d.toISOString(); }

export function auditView(main, params) {
  main.append(h('h1', null, 'Audit trail'));
  const verify = h('div', { class: 'card', id: 'verify' }, h('span', { class: 'muted' }, 'Checking the chain…'));
  main.append(verify);
  loadVerify(verify, false);

  const inputs = {};
  const mk = (name, label, el) => { inputs[name] = el; el.name = name; return h('label', null, label, el); };
  const sel = (opts) => h('select', null, h('option', { value: '' }, 'any'), opts.map(o => h('option', { value: o }, o)));
  const form = h('form', { class: 'card row', id: 'audit-filter' },
    mk('since', 'since', h('input', { type: 'datetime-local' })),
    mk('until', 'until', h('input', { type: 'datetime-local' })),
    mk('sub', 'caller (sub)', h('input', { type: 'text', size: 12 })),
    mk('tool', 'tool', h('input', { type: 'text', size: 14 })),
    mk('decision', 'decision', sel(DECISIONS)),
    mk('kind', 'kind', sel(KINDS)),
    mk('request_id', 'request id', h('input', { type: 'text', size: 16 })),
    mk('approval_id', 'approval id', h('input', { type: 'text', size: 14 })),
    h('button', { type: 'submit', class: 'primary', id: 'audit-apply' }, 'Filter'),
    h('button', { type: 'button', id: 'last-hour' }, 'Last hour'));
  for (const f of FIELDS) {
    const v = params.get(f) || '';
    inputs[f].value = (f === 'since' || f === 'until') ? toLocalInput(v) : v;
  }
  const filterQuery = () => {
    const q = new URLSearchParams();
    for (const f of FIELDS) {
      let v = inputs[f].value.trim();
      if (f === 'since' || f === 'until') v = fromLocalInput(v);
      if (v) q.set(f, v);
    }
    return q;
  };
  form.addEventListener('submit', ev => { ev.preventDefault(); navigate('/console/audit?' + filterQuery().toString()); });
  form.querySelector('#last-hour').addEventListener('click', () => {
    inputs.since.value = toLocalInput(new Date(Date.now() - 3600e3).toISOString()); inputs.until.value = '';
    navigate('/console/audit?' + filterQuery().toString());
  });
  main.append(form);

  const q = new URLSearchParams();
  for (const f of FIELDS) if (params.get(f)) q.set(f, params.get(f));
  const exp = h('p', null, 'Export this filter: ',
    h('a', { href: '/console/api/audit/export?format=jsonl&' + q.toString(), download: '', id: 'export-jsonl' }, 'JSON lines'), ' · ',
    h('a', { href: '/console/api/audit/export?format=csv&' + q.toString(), download: '', id: 'export-csv' }, 'CSV'));
  main.append(exp);

  const tbody = h('tbody', { id: 'audit-rows' });
  const table = h('table', null, h('thead', null, h('tr', null,
    ['time', 'kind', 'decision', 'tool', 'caller', 'reason', 'status', 'request'].map(t => h('th', null, t)))), tbody);
  const more = h('button', { type: 'button', id: 'audit-more', hidden: true }, 'Older rows');
  const msg = h('p', { class: 'muted', id: 'audit-msg' });
  main.append(table, h('p', null, more), msg);

  let cursor = '';
  async function load() {
    more.disabled = true;
    try {
      const qq = new URLSearchParams(q);
      qq.set('limit', '50');
      if (cursor) qq.set('cursor', cursor);
      const r = await api('GET', '/api/audit?' + qq.toString());
      for (const ev of r.data) tbody.append(row(ev));
      cursor = r.next_cursor || '';
      more.hidden = !cursor;
      msg.textContent = tbody.children.length ? tbody.children.length + ' rows shown' + (cursor ? '' : ' (all)') : 'No rows match.';
    } catch (e) {
      if (onAuthError(e)) return;
      msg.textContent = ''; msg.append(h('span', { class: 'err' }, e.message));
    } finally { more.disabled = false; }
  }
  more.addEventListener('click', load);
  load();
  return null;
}

function row(ev) {
  const link = ev.request_id ? h('a', { href: '/console/audit/request/' + encodeURIComponent(ev.request_id), class: 'timeline-link' }, ev.request_id)
    : (ev.approval_id ? h('a', { href: '/console/audit/approval/' + encodeURIComponent(ev.approval_id), class: 'timeline-link' }, ev.approval_id) : '');
  return h('tr', { 'data-seq': ev.seq },
    h('td', null, fmtTime(ev.time)), h('td', null, ev.kind), h('td', null, pill(ev.decision || '')),
    h('td', { class: 'wrap' }, ev.tool), h('td', null, ev.caller && ev.caller.sub),
    h('td', { class: 'wrap reason' }, ev.reason), h('td', null, ev.status || ''), h('td', { class: 'mono' }, link));
}

async function loadVerify(box, fresh) {
  try {
    const r = (await api('GET', '/api/audit/verify' + (fresh ? '?fresh=1' : ''))).data;
    clear(box);
    if (!r.configured) { box.append(h('span', { class: 'muted' }, 'Chain verification is not configured.')); return; }
    if (r.error) { box.append(h('span', { class: 'err' }, r.error)); return; }
    const rep = r.report;
    const again = h('button', { type: 'button' }, 'Verify now');
    again.addEventListener('click', () => loadVerify(box, true));
    append(box, [h('div', { class: 'row' },
      h('strong', { class: rep.ok ? 'ok' : 'err', id: 'verify-status' }, rep.ok ? '✓ Chain verifies' : '✗ Chain verification FAILED'),
      h('span', { class: 'muted', id: 'verify-detail' }, rep.rows + ' rows (seq ' + rep.first_seq + '–' + rep.last_seq + '), ' + rep.checkpoints +
        ' signed checkpoints' + (rep.checkpoints ? '; the last covers seq ' + (rep.last_seq - rep.unsigned_tail) + ', ' + rep.unsigned_tail + ' rows since' : '')),
      h('span', { class: 'muted' }, 'checked ' + fmtTime(r.checked_at)), again),
      (rep.problems || []).map(p => h('p', { class: 'err' }, p)),
      (rep.warnings || []).map(p => h('p', { class: 'muted' }, p))]);
  } catch (e) {
    if (onAuthError(e)) return;
    clear(box).append(h('span', { class: 'err' }, e.message));
  }
}

export function timelineView(main, key) {
  const what = key.request_id ? 'request ' + key.request_id : 'approval ' + key.approval_id;
  main.append(h('p', null, h('a', { href: '/console/audit' }, '← Audit trail')), h('h1', null, 'Timeline of ' + what));
  const list = h('ol', { class: 'timeline', id: 'timeline' });
  main.append(list);
  const q = new URLSearchParams(key);
  api('GET', '/api/audit/timeline?' + q.toString()).then(r => {
    if (!r.data.length) { main.append(h('p', { class: 'muted' }, 'No rows for this ' + (key.request_id ? 'request' : 'approval') + ' in your org.')); return; }
    for (const ev of r.data) {
      let args = null;
      if (ev.arguments !== undefined) args = ev.arguments;
      const step = ev.kind === 'decision' ? 'Decision' : ev.kind === 'approval' ? 'Approval ' + (ev.decision || '').replace('approval_', '')
        : ev.kind === 'outcome' ? 'Outcome' : ev.kind === 'shadow' ? 'Shadow policy difference' : ev.kind;
      list.append(h('li', { 'data-kind': ev.kind },
        h('div', { class: 'row' }, h('strong', null, step), pill(ev.decision || ''), h('span', { class: 'muted' }, fmtTime(ev.time) + ' · seq ' + ev.seq)),
        h('dl', { class: 'kv' },
          h('dt', null, 'tool'), h('dd', null, ev.tool || '—'),
          h('dt', null, 'caller'), h('dd', null, (ev.caller && ev.caller.sub) || '—'),
          ev.reason ? [h('dt', null, ev.kind === 'approval' ? 'comment' : 'reason'), h('dd', { class: 'reason' }, ev.reason)] : null,
          ev.approver ? [h('dt', null, 'approver'), h('dd', null, ev.approver)] : null,
          ev.approval_id ? [h('dt', null, 'approval'), h('dd', { class: 'mono' }, h('a', { href: '/console/approvals/' + encodeURIComponent(ev.approval_id) }, ev.approval_id))] : null,
          ev.policy_revision ? [h('dt', null, 'policy revision'), h('dd', { class: 'mono' }, ev.policy_revision)] : null,
          ev.status ? [h('dt', null, 'status'), h('dd', null, String(ev.status) + (ev.error_class ? ' (' + ev.error_class + ')' : ''))] : null,
          ev.latency_us ? [h('dt', null, 'latency'), h('dd', null, (ev.latency_us / 1000).toFixed(1) + ' ms')] : null,
          args !== null ? [h('dt', null, 'arguments'), h('dd', null, tree(args))] : null),
        ev.kind === 'decision' && ev.request_id && (ev.surface === 'mcp' || ev.surface === 'rest')
          ? h('p', null, h('a', { href: '/console/policy?request_id=' + encodeURIComponent(ev.request_id) }, 'Load this input in the policy playground')) : null));
    }
  }).catch(e => { if (!onAuthError(e)) main.append(h('p', { class: 'err' }, e.message)); });
  return null;
}
