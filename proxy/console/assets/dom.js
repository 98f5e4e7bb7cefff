// DOM helpers. Every value reaches the page as a text node or an attribute set with
// setAttribute: nothing is ever parsed as HTML, so data cannot become markup or script.

export function h(tag, props, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k.startsWith('on') && typeof v === 'function') e.addEventListener(k.slice(2), v);
    else if (k === 'value') e.value = v;
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  append(e, children);
  return e;
}

export function append(parent, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    parent.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return parent;
}

export function clear(e) { while (e.firstChild) e.removeChild(e.firstChild); return e; }

const SVG = 'http://www.w3.org/2000/svg';
export function s(tag, attrs, ...children) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) if (v !== undefined && v !== null) e.setAttribute(k, String(v));
  for (const c of children.flat()) {
    if (c === undefined || c === null) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

export function fmtTime(t) {
  if (!t) return '';
  const d = new Date(t);
  if (isNaN(d)) return String(t);
  return d.toLocaleString(undefined, { hour12: false });
}

export function ago(t) {
  const ms = Date.now() - new Date(t).getTime();
  if (isNaN(ms)) return '';
  return dur(Math.abs(ms)) + (ms >= 0 ? ' ago' : ' from now');
}

export function dur(ms) {
  const s = Math.round(ms / 1000);
  if (s < 60) return s + 's';
  if (s < 3600) return Math.floor(s / 60) + 'm ' + (s % 60) + 's';
  return Math.floor(s / 3600) + 'h ' + Math.floor((s % 3600) / 60) + 'm';
}

// tree renders a JSON value as nested lists; redacted values are marked as such.
export function tree(v) {
  if (v === null || v === undefined) return h('span', { class: 'n' }, 'null');
  if (Array.isArray(v)) {
    if (v.length === 0) return h('span', { class: 'muted' }, '[]');
    return h('ul', { class: 'tree' }, v.map((x, i) => h('li', null, h('span', { class: 'k' }, '[' + i + '] '), tree(x))));
  }
  if (typeof v === 'object') {
    const keys = Object.keys(v);
    if (keys.length === 0) return h('span', { class: 'muted' }, '{}');
    return h('ul', { class: 'tree' }, keys.map(k => h('li', null, h('span', { class: 'k' }, k + ': '), tree(v[k]))));
  }
  if (typeof v === 'string') {
    if (v.includes('hmac-sha256:')) return h('span', { class: 's redacted', title: 'a secret, shown as its HMAC' }, JSON.stringify(v));
    return h('span', { class: 's' }, JSON.stringify(v));
  }
  return h('span', { class: 'n' }, String(v));
}

export function pill(text) { return h('span', { class: 'pill ' + String(text).replace(/[^a-z_]/g, '') }, text); }
