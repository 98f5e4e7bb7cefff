// The console API: same-origin fetches with the session cookie; every state change
// carries the session's CSRF token.
let csrf = '';
export function setCSRF(t) { csrf = t || ''; }

export class APIError extends Error {
  constructor(status, body) {
    const e = (body && body.error) || {};
    super(e.message || ('request failed (' + status + ')'));
    this.status = status; this.code = e.code || ''; this.field = e.field || ''; this.requestID = e.request_id || '';
  }
}

export async function api(method, path, body) {
  const opts = { method, headers: {}, credentials: 'same-origin', cache: 'no-store' };
  if (body !== undefined) { opts.headers['Content-Type'] = 'application/json'; opts.body = JSON.stringify(body); }
  if (method !== 'GET') opts.headers['X-CSRF-Token'] = csrf;
  const r = await fetch('/console' + path, opts);
  let j = null;
  try { j = await r.json(); } catch (_) { j = null; }
  if (!r.ok) throw new APIError(r.status, j);
  return j;
}
