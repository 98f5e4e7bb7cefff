import { h, append, clear, fmtTime, pill, tree, dur } from './dom.js';
import { api } from './api.js';
import { onAuthError } from './app.js';
import { bars, COLORS } from './charts.js';

const SAMPLE = { surface: 'mcp', tool: 'delete_integration', arguments: { slug: 'openai-prod' }, http: { method: 'POST', path: '/mcp' },
  caller: { sub: 'agent-1', org: 'acme', workspace: '', roles: ['agent'], session: '' },
  tool_info: { category: 'destructive', risk: 'high', annotations: { destructiveHint: true, readOnlyHint: false } }, upstream: 'integrations', mode: 'call' };

export function policyView(main, params) {
  main.append(h('h1', null, 'Policy'));
  const status = h('div', { class: 'card', id: 'policy-status' }, h('span', { class: 'muted' }, 'Loading…'));
  const shadow = h('div', { id: 'shadow' });
  main.append(status, shadow);

  const input = h('textarea', { id: 'pg-input', rows: 16, spellcheck: 'false' });
  input.value = JSON.stringify(SAMPLE, null, 2);
  const candidate = h('textarea', { id: 'pg-candidate', rows: 16, spellcheck: 'false', placeholder: 'package portcullis\n\nimport rego.v1\n\ndefault decision := {"action": "deny", "reason": "..."}' });
  const rid = h('input', { type: 'text', id: 'pg-request-id', placeholder: 'request id from the trail', size: 28 });
  const loadBtn = h('button', { type: 'button', id: 'pg-load' }, 'Load input');
  const evalBtn = h('button', { type: 'button', class: 'primary', id: 'pg-eval' }, 'Evaluate');
  const result = h('div', { id: 'pg-result' });
  main.append(h('div', { class: 'card' }, h('h2', null, 'Playground'),
    h('div', { class: 'row' }, h('label', null, 'input of a recorded call', rid), loadBtn),
    h('div', { class: 'grid2' },
      h('label', null, 'input (JSON)', input),
      h('label', null, 'candidate policy (Rego; optional for the playground, required for replay)', candidate)),
    h('p', null, evalBtn), result));

  const since = h('input', { type: 'text', id: 'replay-since', value: '24h', size: 6 });
  const replayBtn = h('button', { type: 'button', class: 'primary', id: 'replay-run' }, 'Replay candidate over the trail');
  const replayOut = h('div', { id: 'replay-result' });
  main.append(h('div', { class: 'card' }, h('h2', null, 'Replay'),
    h('p', { class: 'muted' }, 'Decides every recorded call of your org again with the live policy and the candidate, and shows where they differ.'),
    h('div', { class: 'row' }, h('label', null, 'since', since), replayBtn), replayOut));

  async function loadStatus() {
    try {
      const d = (await api('GET', '/api/policy')).data;
      const st = d.status;
      append(clear(status), [h('dl', { class: 'kv' },
        h('dt', null, 'live revision'), h('dd', { class: 'mono', id: 'live-revision' }, st.revision),
        h('dt', null, 'loaded'), h('dd', null, fmtTime(st.loaded_at)),
        h('dt', null, 'refused reloads'), h('dd', null, String(st.reload_failures)),
        st.shadow_revision ? [h('dt', null, 'shadow revision'), h('dd', { class: 'mono' }, st.shadow_revision)] : null),
        st.last_refused ? h('div', { id: 'last-refused' }, h('p', { class: 'err' }, 'Last refused reload, ' + fmtTime(st.last_refused.at) + ' (the previous policy kept deciding):'), h('pre', null, st.last_refused.error))
          : h('p', { class: 'muted' }, 'No reload has been refused.'),
        st.last_shadow_refused ? [h('p', { class: 'err' }, 'Last refused shadow reload, ' + fmtTime(st.last_shadow_refused.at) + ':'), h('pre', null, st.last_shadow_refused.error)] : null]);
      clear(shadow);
      if (st.shadow_revision) {
        const tb = h('tbody');
        for (const ev of d.shadow_differences) tb.append(h('tr', null, h('td', null, fmtTime(ev.time)), h('td', null, ev.tool), h('td', null, ev.caller.sub),
          h('td', null, pill(ev.decision)), h('td', { class: 'wrap' }, ev.reason),
          h('td', null, ev.request_id ? h('a', { href: '/console/audit/request/' + encodeURIComponent(ev.request_id) }, 'timeline') : '')));
        shadow.append(h('div', { class: 'card' }, h('h2', null, 'Shadow policy differences (newest 50)'),
          d.shadow_differences.length ? h('table', null, h('thead', null, h('tr', null, ['time', 'tool', 'caller', 'shadow', 'reason', ''].map(t => h('th', null, t)))), tb)
            : h('p', { class: 'muted' }, 'The shadow policy has agreed with the live one so far.')));
      }
      replayBtn.disabled = !d.replay;
    } catch (e) { if (!onAuthError(e)) clear(status).append(h('p', { class: 'err' }, e.message)); }
  }

  async function loadInput(id) {
    result.textContent = '';
    try {
      const d = (await api('GET', '/api/policy/input?request_id=' + encodeURIComponent(id))).data;
      input.value = JSON.stringify(d.input, null, 2);
      result.append(h('p', { class: 'muted' }, 'Loaded the input of seq ' + d.seq + ' (recorded: ' + d.recorded + '). Claims beyond sub, org, workspace, roles and session are not recorded.'));
    } catch (e) { if (!onAuthError(e)) result.append(h('p', { class: 'err' }, e.message)); }
  }
  loadBtn.addEventListener('click', () => { if (rid.value.trim()) loadInput(rid.value.trim()); });
  if (params.get('request_id')) { rid.value = params.get('request_id'); loadInput(rid.value); }

  evalBtn.addEventListener('click', async () => {
    clear(result);
    let parsed;
    try { parsed = JSON.parse(input.value); } catch (e) { result.append(h('p', { class: 'err' }, 'input: not JSON: ' + e.message)); return; }
    evalBtn.disabled = true;
    try {
      const d = (await api('POST', '/api/policy/eval', { input: parsed, candidate: candidate.value })).data;
      result.append(h('div', { class: 'grid2' }, decisionBox('Live policy', d.live, 'pg-live'),
        d.candidate ? decisionBox('Candidate', d.candidate, 'pg-cand') : h('p', { class: 'muted' }, 'Paste a candidate policy to compare.')));
      if (d.candidate) result.append(h('p', { class: d.differs ? 'err' : 'ok', id: 'pg-differs' }, d.differs ? 'The candidate decides differently.' : 'Same decision.'));
    } catch (e) { if (!onAuthError(e)) result.append(h('pre', { class: 'err', id: 'pg-error' }, e.message)); } finally { evalBtn.disabled = false; }
  });

  replayBtn.addEventListener('click', async () => {
    clear(replayOut);
    if (!candidate.value.trim()) { replayOut.append(h('p', { class: 'err' }, 'Paste a candidate policy above first.')); return; }
    replayBtn.disabled = true;
    replayOut.append(h('p', { class: 'muted' }, 'Replaying…'));
    try {
      const d = (await api('POST', '/api/policy/replay', { candidate: candidate.value, since: since.value.trim() })).data;
      const r = d.report;
      append(clear(replayOut), [
        h('p', { id: 'replay-summary' }, h('strong', null, r.changed + ' of ' + r.replayed), ' replayed calls would be decided differently (' + r.scanned + ' decision rows read, ' + r.skipped + ' not policy decisions).'),
        r.reads_redacted ? h('p', { class: 'err', id: 'replay-redacted' }, r.reads_redacted + ' calls have a decision that depends on a redacted value: a rule reads a secret, which the trail holds only as its HMAC, so the replay cannot say what it would decide (' + r.uncertain_changes + ' of the changes).') : null,
        h('div', { class: 'grid2' },
          h('div', null, h('h2', null, 'By tool'), bars(r.by_tool.map(c => ({ label: c.key, value: c.changed, suffix: ' / ' + c.total })), { empty: 'no changes' })),
          h('div', null, h('h2', null, 'By caller'), bars(r.by_caller.map(c => ({ label: c.key, value: c.changed, suffix: ' / ' + c.total, color: COLORS.approval })), { empty: 'no changes' }))),
        h('h2', null, 'Changes'), bars(r.transitions.map(c => ({ label: c.key, value: c.changed, color: COLORS.deny })), { empty: 'no changes', labelWidth: 230 }),
        r.examples.length ? [h('h2', null, 'Examples'), h('table', { id: 'replay-examples' }, h('thead', null, h('tr', null, ['time', 'tool', 'caller', 'recorded', 'live', 'candidate', 'candidate reason', ''].map(t => h('th', null, t)))),
          h('tbody', null, r.examples.map(x => h('tr', null, h('td', null, fmtTime(x.time)), h('td', null, x.tool), h('td', null, x.caller), h('td', null, pill(x.recorded)),
            h('td', null, pill(x.live)), h('td', null, pill(x.candidate)), h('td', { class: 'wrap' }, x.candidate_reason, x.reads_redacted ? h('div', { class: 'err' }, 'reads a redacted value') : null),
            h('td', null, x.request_id ? h('a', { href: '/console/audit/request/' + encodeURIComponent(x.request_id) }, 'timeline') : '')))))] : null,
        r.notes.map(n => h('p', { class: 'muted' }, n))]);
    } catch (e) { if (!onAuthError(e)) clear(replayOut).append(h('pre', { class: 'err' }, e.message)); } finally { replayBtn.disabled = false; }
  });

  loadStatus();
  return null;
}

function decisionBox(title, d, id) {
  return h('div', { id },
    h('h2', null, title), h('p', null, pill(d.action), ' ', d.reason || ''),
    d.policy_error ? h('p', { class: 'err' }, 'policy error: ' + (d.error || '')) : null,
    d.rate_limit ? h('p', null, 'rate limit: ' + d.rate_limit.max + ' per ' + dur(d.rate_limit.window / 1e6) + (d.rate_limit.key ? ', key ' + d.rate_limit.key : '')) : null,
    d.approval ? h('p', null, 'approval by ' + ((d.approval.approvers || []).join(', ') || 'the approver role') + ', valid ' + dur(d.approval.ttl / 1e6)) : null,
    h('p', { class: 'muted mono' }, 'revision ' + d.revision));
}
