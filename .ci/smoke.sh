#!/usr/bin/env bash
# Smoke test of what a new user does: start serve on the defaults (in a temp data dir),
# mint a dev token, create and read an integration through the proxy over REST and MCP,
# see a deny, and verify the audit chain afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
bin="$work/portcullis"
go build -o "$bin" ./cmd/portcullis
export PORTCULLIS_DATA_DIR="$work/data"
# Two free ports (another serve may hold the usual ones).
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
port=18480
while ! port_free "$port" || ! port_free $((port + 1)); do port=$((port + 2)); done
export PORTCULLIS_LISTEN=127.0.0.1:$port
export PORTCULLIS_BACKEND_LISTEN=127.0.0.1:$((port + 1))
base=http://127.0.0.1:$port
# start_serve N: serve in the background (pid in $pid), logs serveN.*, until /healthz answers.
start_serve() {
  "$bin" serve >"$work/serve$1.out" 2>"$work/serve$1.log" &
  pid=$!
  for i in $(seq 1 100); do
    curl -fsS $base/healthz >/dev/null 2>&1 && break
    sleep 0.1
  done
}
pid=
trap 'kill $pid 2>/dev/null || true; rm -rf "$work"' EXIT
start_serve ""
curl -fsS $base/readyz
echo
# The console is served, with its strict page headers.
hdrs=$(curl -fsS -D - -o /dev/null $base/console/)
case "$hdrs" in *"script-src 'self'"*) ;; *) echo "SMOKE FAIL: console headers: $hdrs"; exit 1;; esac
case "$hdrs" in *"X-Frame-Options: DENY"*) ;; *) echo "SMOKE FAIL: console framing: $hdrs"; exit 1;; esac
tok=$("$bin" token --sub agent-1 --org acme --roles agent)
canary="sk-smokecanary$(date +%s%N)"
fail() { echo "SMOKE FAIL: $*"; echo "--- serve log"; tail -50 "$work/serve.log"; exit 1; }

# REST: create (allowed for role agent), then read back masked.
out=$(curl -sS -w ' %{http_code}' -X POST $base/v1/integrations \
  -H "Authorization: Bearer $tok" -H 'Content-Type: application/json' \
  -d "{\"name\":\"smoke openai\",\"ai_provider_id\":\"openai\",\"key\":\"$canary\"}")
echo "create: $out"
case "$out" in *'"slug"'*' 200'|*'"slug"'*' 201') ;; *) fail "create: $out";; esac
out=$(curl -sS -w ' %{http_code}' $base/v1/integrations/smoke-openai -H "Authorization: Bearer $tok")
echo "get: $out"
case "$out" in *masked_key*' 200') ;; *) fail "get: $out";; esac
case "$out" in *"$canary"*) fail "the secret came back";; esac

# MCP: a tools/call through the proxy.
out=$(curl -sS -X POST $base/mcp -H "Authorization: Bearer $tok" \
  -H 'Content-Type: application/json' -H 'Accept: application/json, text/event-stream' \
  -d '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_integration","arguments":{"slug":"smoke-openai"}}}')
echo "mcp get: $out"
case "$out" in *masked_key*) ;; *) fail "mcp get: $out";; esac

# A deny, with its reason.
out=$(curl -sS -w ' %{http_code}' -X DELETE $base/v1/integrations/smoke-openai -H "Authorization: Bearer $tok")
echo "delete as agent: $out"
case "$out" in *' 403') ;; *) fail "delete as agent: $out";; esac

# No token: 401.
code=$(curl -s -o /dev/null -w '%{http_code}' $base/v1/integrations)
[ "$code" = 401 ] || fail "no token gave $code"

kill $pid; wait $pid 2>/dev/null || true
if grep -rqa "$canary" "$work/data" "$work/serve.log" "$work/serve.out"; then fail "the canary secret is in the data dir or the log"; fi
"$bin" audit verify --db "$work/data/audit.db" --key "$work/data/audit-signing.key"

# kill -9 during a load run, then restart: the chain verifies, and every call the client
# saw answered 200 has its decision row.
start_serve 2
load() {
  for i in $(seq 1 3000); do
    curl -sS -o /dev/null -w '%header{x-request-id} %{http_code}\n' -X POST $base/mcp \
      -H "Authorization: Bearer $tok" -H 'Content-Type: application/json' -H 'Accept: application/json, text/event-stream' \
      -d '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_integration","arguments":{"slug":"smoke-openai"}}}' 2>/dev/null || break
  done
}
for w in 1 2 3 4; do load >"$work/acks.$w" & done
sleep 2
kill -9 $pid
wait $pid 2>/dev/null || true
wait
cat "$work"/acks.* | awk '$2 == 200 {print $1}' | sort -u >"$work/acked"
n=$(wc -l <"$work/acked")
[ "$n" -gt 0 ] || { head -3 "$work"/acks.*; fail "no call succeeded before the kill"; }
start_serve 3
kill $pid; wait $pid 2>/dev/null || true
"$bin" audit verify --db "$work/data/audit.db" --key "$work/data/audit-signing.key"
# The checkpoints every run logged are a witness the chain must still match.
cat "$work/serve.log" "$work/serve2.log" "$work/serve3.log" >"$work/witness.log"
"$bin" audit verify --db "$work/data/audit.db" --key "$work/data/audit-signing.key" --witness "$work/witness.log"
# serve also wrote them to data/witness.log itself, across the kill -9 and the restarts.
"$bin" audit verify --db "$work/data/audit.db" --key "$work/data/audit-signing.key" --witness "$work/data/witness.log"
[ "$(stat -c %a "$work/data/witness.log")" = 600 ] || fail "data/witness.log is not mode 0600"
"$bin" audit export --db "$work/data/audit.db" --format jsonl --decision allow \
  | grep -o '"request_id":"[^"]*"' | cut -d'"' -f4 | sort -u >"$work/stored"
missing=$(comm -23 "$work/acked" "$work/stored" | wc -l)
echo "kill -9: $n calls answered 200 before the kill, $missing without a decision row after restart"
[ "$missing" -eq 0 ] || fail "$missing acknowledged calls have no audit row"
echo "smoke: ok"
