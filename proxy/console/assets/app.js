import { h, clear } from './dom.js';
import { api, setCSRF, APIError } from './api.js';
import { approvalsView } from './approvals.js';
import { auditView, timelineView } from './audit.js';
import { policyView } from './policy.js';
import { overviewView } from './overview.js';

const main = document.getElementById('main');
export const state = { session: null, stop: null };

export function flash(msg, isError) {
  const box = document.getElementById('flash');
  const d = h('div', { class: isError ? 'error' : '' }, msg);
  box.append(d);
  setTimeout(() => d.remove(), isError ? 8000 : 3500);
}

export function navigate(path) {
  history.pushState(null, '', path);
  route();
}

document.addEventListener('click', ev => {
  const a = ev.target.closest && ev.target.closest('a[href^="/console/"]');
  if (!a || a.hasAttribute('download') || a.target || ev.ctrlKey || ev.metaKey || ev.shiftKey) return;
  if (a.pathname.startsWith('/console/api/') || a.pathname.startsWith('/console/auth/')) return;
  ev.preventDefault();
  navigate(a.pathname + a.search);
});
window.addEventListener('popstate', () => route());

async function loadSession() {
  try {
    const r = await api('GET', '/api/session');
    state.session = r.data;
    setCSRF(r.data.csrf_token);
  } catch (e) {
    if (!(e instanceof APIError) || e.status !== 401) throw e;
    state.session = null;
  }
}

function chrome() {
  const s = state.session;
  document.getElementById('nav').hidden = !s;
  document.getElementById('logout').hidden = !s;
  const who = document.getElementById('who');
  who.textContent = s ? (s.sub + ' · ' + s.org + (s.roles && s.roles.length ? ' · ' + s.roles.join(', ') : '')) : '';
  const seg = location.pathname.split('/')[2] || 'overview';
  for (const a of document.querySelectorAll('#nav a')) a.classList.toggle('active', a.dataset.nav === seg);
}

document.getElementById('logout').addEventListener('click', async () => {
  try {
    await fetch('/console/auth/logout', { method: 'POST', credentials: 'same-origin' });
  } finally {
    state.session = null; setCSRF('');
    navigate('/console/');
  }
});

export async function route() {
  if (state.stop) { state.stop(); state.stop = null; }
  if (!state.session) await loadSession();
  chrome();
  clear(main);
  if (!state.session) { signIn(); return; }
  const parts = location.pathname.replace(/\/+$/, '').split('/').slice(2).map(decodeURIComponent);
  const params = new URLSearchParams(location.search);
  let stop = null;
  try {
    switch (parts[0] || '') {
      case '': stop = overviewView(main); break;
      case 'approvals': stop = approvalsView(main, parts[1] || null); break;
      case 'audit':
        if (parts[1] === 'request' && parts[2]) stop = timelineView(main, { request_id: parts[2] });
        else if (parts[1] === 'approval' && parts[2]) stop = timelineView(main, { approval_id: parts[2] });
        else stop = auditView(main, params);
        break;
      case 'policy': stop = policyView(main, params); break;
      default: main.append(h('h1', null, 'Not found'), h('p', null, 'No console page at ' + location.pathname));
    }
  } catch (e) { main.append(h('p', { class: 'err' }, String(e.message || e))); }
  state.stop = stop;
}

export function onAuthError(e) {
  if (e instanceof APIError && e.status === 401) { state.session = null; route(); return true; }
  return false;
}

async function signIn() {
  const box = h('div', { class: 'signin card' }, h('h1', null, 'Sign in to the Portcullis console'));
  main.append(box);
  let methods = { token: false, oidc: false };
  try { methods = (await api('GET', '/auth/methods')).data; } catch (e) { box.append(h('p', { class: 'err' }, e.message)); }
  if (methods.oidc) {
    const ret = location.pathname.startsWith('/console/') ? location.pathname : '/console/';
    box.append(h('p', null, h('a', { id: 'oidc-login', class: 'button', href: '/console/auth/login?return_to=' + encodeURIComponent(ret) },
      h('button', { type: 'button', class: 'primary' }, 'Sign in with single sign-on'))));
  }
  if (methods.token) {
    const ta = h('textarea', { id: 'token', rows: 4, placeholder: 'eyJhbGciOi…', autocomplete: 'off', spellcheck: 'false' });
    const err = h('p', { class: 'err', id: 'signin-error' });
    const btn = h('button', { type: 'submit', class: 'primary', id: 'token-signin' }, 'Sign in with token');
    const form = h('form', null,
      h('p', { class: 'muted' }, 'Dev mode: paste a token minted with ', h('code', null, 'portcullis token --sub alice --org acme --roles approver,auditor'), '.'),
      ta, h('p', null, btn), err);
    form.addEventListener('submit', async ev => {
      ev.preventDefault();
      err.textContent = '';
      btn.disabled = true;
      try {
        const r = await fetch('/console/auth/token', { method: 'POST', credentials: 'same-origin',
          headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ token: ta.value }) });
        const j = await r.json().catch(() => null);
        if (!r.ok) throw new APIError(r.status, j);
        ta.value = '';
        state.session = j.data; setCSRF(j.data.csrf_token);
        route();
      } catch (e) { err.textContent = e.message; } finally { btn.disabled = false; }
    });
    box.append(form);
  }
  if (!methods.oidc && !methods.token) box.append(h('p', { class: 'err' }, 'No sign-in method is configured.'));
}

route();
