import { h, clear, tree, pill, ago, fmtTime } from './dom.js';
import { api } from './api.js';
import { flash, onAuthError } from './app.js';

const POLL_MS = 2000;

function setBadge(n) {
  const badge = document.getElementById('pending-badge');
  badge.hidden = !n; badge.textContent = String(n);
}

export async function refreshBadge() {
  try { setBadge((await api('GET', '/api/approvals?status=pending', undefined, true)).data.length); } catch (_) { /* the page shows errors */ }
}

// approvalsView is the inbox (pending, live by polling) and the decided list; with an
// id it is that approval's own page (the webhook's deep link).
export function approvalsView(main, id) {
  let tab = 'pending';
  let timer = null;
  let stopped = false;
  const cards = new Map(); // id -> {sig, el}
  const list = h('div', { id: 'approval-list' });
  const title = h('h1', null, id ? 'Approval' : 'Approvals');
  const tabs = h('div', { class: 'tabs' });
  const status = h('p', { class: 'muted', id: 'inbox-status' });
  main.append(title);
  if (!id) {
    for (const t of ['pending', 'decided']) {
      const b = h('button', { type: 'button', 'data-tab': t, class: t === tab ? 'active' : '' }, t === 'pending' ? 'Pending' : 'Decided and expired');
      b.addEventListener('click', () => { tab = t; polls = 0; for (const x of tabs.children) x.classList.toggle('active', x === b); cards.clear(); clear(list); refresh(); });
      tabs.append(b);
    }
    main.append(tabs);
  } else {
    main.append(h('p', null, h('a', { href: '/console/approvals' }, '← All approvals')));
  }
  main.append(status, list);

  let polls = 0;
  async function refresh() {
    const background = polls++ > 0;
    try {
      let rows;
      if (id) rows = [(await api('GET', '/api/approvals/' + encodeURIComponent(id), undefined, background)).data];
      else rows = (await api('GET', '/api/approvals?status=' + tab, undefined, background)).data;
      if (stopped) return;
      render(rows);
      const pend = rows.filter(r => r.status === 'pending').length;
      status.textContent = id ? '' : (tab === 'pending' ? (pend ? pend + ' waiting for a decision' : 'Nothing is waiting for a decision.') : rows.length + ' decided or expired') + ' · updated ' + new Date().toLocaleTimeString(undefined, { hour12: false });
      if (!id && tab === 'pending') setBadge(pend); else refreshBadge();
    } catch (e) {
      if (onAuthError(e)) return;
      status.textContent = '';
      clear(list).append(h('p', { class: 'err' }, e.message));
    }
  }

  function render(rows) {
    const seen = new Set();
    let prev = null;
    for (const a of rows) {
      seen.add(a.id);
      const sig = JSON.stringify([a.status, a.decided_by, a.comment, a.can_decide, a.expires_at]);
      let c = cards.get(a.id);
      if (!c || c.sig !== sig) {
        const el = card(a, refresh);
        if (c) c.el.replaceWith(el);
        c = { sig, el };
        cards.set(a.id, c);
      }
      // keep newest-first order
      if (prev ? prev.nextSibling !== c.el : list.firstChild !== c.el) {
        if (prev) prev.after(c.el); else list.prepend(c.el);
      }
      prev = c.el;
    }
    for (const [k, c] of cards) if (!seen.has(k)) { c.el.remove(); cards.delete(k); }
    for (const el of list.querySelectorAll('[data-expires]')) el.textContent = 'expires ' + ago(el.dataset.expires);
  }

  async function loop() {
    await refresh();
    if (!stopped) timer = setTimeout(loop, POLL_MS);
  }
  loop();
  return () => { stopped = true; clearTimeout(timer); };
}

function card(a, refresh) {
  let args = null;
  try { args = typeof a.arguments === 'string' ? JSON.parse(a.arguments) : a.arguments; } catch (_) { args = a.arguments; }
  const el = h('div', { class: 'card approval', 'data-approval-id': a.id, 'data-status': a.status },
    h('div', { class: 'row' },
      h('strong', { class: 'tool' }, a.tool), pill(a.status),
      h('span', { class: 'muted' }, a.surface),
      h('span', { class: 'spacer' }),
      h('a', { href: a.url, class: 'deep-link' }, 'link')),
    h('dl', { class: 'kv' },
      h('dt', null, 'caller'), h('dd', { class: 'caller' }, a.caller.sub),
      h('dt', null, 'org / workspace'), h('dd', null, a.caller.org + ' / ' + (a.caller.workspace || '—')),
      h('dt', null, 'reason'), h('dd', { class: 'reason' }, a.reason || '—'),
      h('dt', null, 'policy revision'), h('dd', { class: 'mono' }, a.policy_revision),
      h('dt', null, 'approvers'), h('dd', null, (a.approvers && a.approvers.length) ? a.approvers.join(', ') : 'approver role'),
      h('dt', null, 'requested'), h('dd', null, fmtTime(a.created_at) + ' (' + ago(a.created_at) + ')'),
      a.status === 'pending' ? [h('dt', null, 'expiry'), h('dd', { 'data-expires': a.expires_at }, 'expires ' + ago(a.expires_at))]
        : a.status === 'expired' ? [h('dt', null, 'expired at'), h('dd', null, fmtTime(a.expires_at))]
          : a.status === 'approved' ? [h('dt', null, 'valid until'), h('dd', null, fmtTime(a.expires_at))] : null,
      a.used_at ? [h('dt', null, 'used by the agent'), h('dd', null, fmtTime(a.used_at))] : null,
      a.decided_by ? [h('dt', null, 'decided by'), h('dd', { class: 'decided-by' }, a.decided_by + ' at ' + fmtTime(a.decided_at))] : null,
      a.comment ? [h('dt', null, 'comment'), h('dd', { class: 'comment' }, a.comment)] : null,
      h('dt', null, 'arguments'), h('dd', { class: 'arguments' }, tree(args))));
  if (a.status === 'pending') {
    if (a.can_decide) {
      const ta = h('textarea', { rows: 2, class: 'decision-comment', placeholder: 'Comment (required to deny; the agent is told)', maxlength: 2000 });
      const err = h('span', { class: 'err decision-error' });
      const approve = h('button', { type: 'button', class: 'approve' }, 'Approve');
      const deny = h('button', { type: 'button', class: 'deny' }, 'Deny');
      const act = async (verb) => {
        err.textContent = '';
        if (verb === 'deny' && !ta.value.trim()) { err.textContent = 'A comment is required to deny: it tells the agent why.'; ta.focus(); return; }
        approve.disabled = deny.disabled = true;
        try {
          await api('POST', '/api/approvals/' + encodeURIComponent(a.id) + '/' + verb, { comment: ta.value });
          flash((verb === 'approve' ? 'Approved ' : 'Denied ') + a.tool);
          await refresh();
        } catch (e) {
          if (onAuthError(e)) return;
          err.textContent = e.message;
          approve.disabled = deny.disabled = false;
        }
      };
      approve.addEventListener('click', () => act('approve'));
      deny.addEventListener('click', () => act('deny'));
      el.append(ta, h('div', { class: 'row' }, approve, deny, err));
    } else {
      el.append(h('p', { class: 'muted why-not' }, a.why_not || 'You cannot decide this call.'));
    }
  }
  return el;
}

