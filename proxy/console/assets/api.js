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

// api calls the console API. A background call (a page refreshing itself) does not count
// as the person's activity for the session's idle timeout.
export async function api(method, path, body, background) {
  const opts = { method, headers: {}, credentials: 'same-origin', cache: 'no-store' };
  if (background) opts.headers['X-Console-Background'] = '1';
  if (body !== undefined) { opts.headers['Content-Type'] = 'application/json'; opts.body = JSON.stringify(body); }
  if (method !== 'GET') opts.headers['X-CSRF-Token'] = csrf;
  const r = await fetch('/console' + path, opts);
  let j = null;
  try { j = await r.json(); } catch (_) { j = null; }
  if (!r.ok) throw new APIError(r.status, j);
  return j;
}
