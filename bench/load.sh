#!/usr/bin/env bash
# Load test (issue #7): the release daemon in --dev on a loopback port with its own state
# dir, sessions under runsc, driven by wrk. Two phases on the same state dir:
#
#   1. throughput, LOAD_SECS (default 60) s, rate limiter off (--rate-limit-rps 0): a mix
#      of authenticated reads (GET /v1/status, /v1/sessions, /v1/changes/pending,
#      /v1/registry/agent-groups) and, every LOAD_CHAT_EVERY-th request (default 10),
#      POST /v1/chat/send into one web conversation of `dev-agent` (a live runsc
#      session answers them). Fails on any 5xx, on any non-2xx at all (nothing here
#      should be refused), or when the daemon's RSS grows by more than
#      LOAD_RSS_GROWTH_MIB (default 64) MiB from before the run to after it.
#   2. the default rate limit (50 rps, burst 100 per client), LIMIT_SECS (default 10) s:
#      the excess must be 429 — never 5xx — and a 429 must carry Retry-After (curl).
#
# Why +64 MiB: the daemon's steady state under load is connection buffers, the
# allocator's per-thread arenas and bounded caches; the chat messages sent are kept in
# the session's on-disk queues, not in memory. Growth beyond that over one run is a leak.
#
# Usage: bench/load.sh   (root; needs runsc, wrk, curl, python3; installs wrk via apt)
#   LOAD_SECS=60 LOAD_CONNS=16 LOAD_CHAT_EVERY=10 LIMIT_SECS=10 LOAD_RSS_GROWTH_MIB=64
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${LOAD_SECS:-60}
conns=${LOAD_CONNS:-16}
chat_every=${LOAD_CHAT_EVERY:-10}
limit_secs=${LIMIT_SECS:-10}
growth_mib=${LOAD_RSS_GROWTH_MIB:-64}

command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
command -v curl >/dev/null || { apt-get update -qq && apt-get install -y -qq curl >/dev/null; }
cargo build --release -q -p ironclaw-controlplane
agent=target/x86_64-unknown-linux-gnu/release/ironclaw-sandbox
[ -x "$agent" ] || RUSTFLAGS='-C target-feature=+crt-static' \
    cargo build --release -q --target x86_64-unknown-linux-gnu -p ironclaw-sandbox

work=$(mktemp -d)
chmod 0711 "$work" # runsc's gofer traverses down to the session dirs
state="$work/state"
mkdir -m 0700 "$state"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
base="http://127.0.0.1:$port"
pid=
stop_daemon() {
    if [ -n "$pid" ]; then
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        pid=
    fi
}
cleanup() {
    stop_daemon
    umount -R -l "$state/keys" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
start_daemon() { # extra flags...
    ./target/release/ironclaw-controlplane --dev --state-dir "$state" --api-addr "127.0.0.1:$port" \
        --model-proxy-socket "$work/modelproxy.sock" --sandbox-bin "$agent" "$@" \
        >>"$work/daemon.log" 2>&1 &
    pid=$!
    for _ in $(seq 200); do curl -sf "$base/healthz" >/dev/null && return 0; sleep 0.1; done
    echo "the daemon did not come up:" >&2
    tail -n 30 "$work/daemon.log" >&2
    exit 1
}
alive() {
    if ! kill -0 "$pid" 2>/dev/null; then
        echo "FAIL: the daemon died under load; its log:" >&2
        tail -n 40 "$work/daemon.log" >&2
        exit 1
    fi
}
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$pid/status"; }

cat >"$work/mix.lua" <<'LUA'
-- A mix of authenticated reads and web chat sends; counts responses by class.
local token, conv, chat_every
local paths = { "/v1/status", "/v1/sessions", "/v1/changes/pending", "/v1/registry/agent-groups" }
local n = 0
s2, s3, s4, s429, s5, retry_after = 0, 0, 0, 0, 0, 0
first5xx = ""
function init(args)
  token, conv, chat_every = args[1], args[2], tonumber(args[3])
  wrk.headers["Authorization"] = "Bearer " .. token
end
function request()
  n = n + 1
  if chat_every > 0 and n % chat_every == 0 then
    local body = '{"agent_group_id":"dev-agent","conversation_id":"' .. conv ..
      '","text":"load ' .. n .. '"}'
    -- (wrk.format's headers replace wrk.headers: the token goes in again.)
    return wrk.format("POST", "/v1/chat/send",
      { ["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. token }, body)
  end
  return wrk.format("GET", paths[(n % #paths) + 1])
end
function response(status, headers, body)
  if status >= 500 then
    s5 = s5 + 1
    if first5xx == "" then first5xx = status .. " " .. string.sub(body or "", 1, 300) end
  elseif status == 429 then
    s429 = s429 + 1
    if headers["Retry-After"] or headers["retry-after"] then retry_after = retry_after + 1 end
  elseif status >= 400 then s4 = s4 + 1
  elseif status >= 300 then s3 = s3 + 1
  else s2 = s2 + 1 end
end
local threads = {}
function setup(thread) table.insert(threads, thread) end
function done(summary, latency, requests)
  local t = { s2 = 0, s3 = 0, s4 = 0, s429 = 0, s5 = 0, retry_after = 0 }
  for _, th in ipairs(threads) do
    for k, _ in pairs(t) do t[k] = t[k] + th:get(k) end
  end
  for _, th in ipairs(threads) do
    local f = th:get("first5xx")
    if f ~= "" then io.write("FIRST5XX " .. f .. "\n") end
  end
  local e = summary.errors
  io.write(string.format("RESULT rps=%.1f p50_ms=%.2f p99_ms=%.2f requests=%d s2xx=%d s3xx=%d s4xx=%d s429=%d s5xx=%d retry_after=%d sock_errors=%d\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, summary.requests, t.s2, t.s3, t.s4, t.s429, t.s5,
    t.retry_after, e.connect + e.read + e.write + e.timeout))
end
LUA

field() { sed -n "s/.* $1=\([0-9.]*\).*/\1/p" <<<"$2"; }

# Phase 1: throughput, limiter off.
start_daemon --rate-limit-rps 0
token=$(cat "$state/dev-token")
first=$(curl -sf -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
    -d '{"agent_group_id":"dev-agent","text":"warm up"}' "$base/v1/chat/send")
conv=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["conversation_id"])' "$first")
# Wait for the session's first answer, so the launch is not part of the run.
for _ in $(seq 300); do
    curl -sf -H "Authorization: Bearer $token" "$base/v1/chat/$conv/messages" | grep -q '"role":"agent"' && break
    sleep 0.1
done
sleep 1
rss_before=$(rss_kib)
out=$(wrk -t2 -c"$conns" -d"${secs}s" --timeout 10s --latency -s "$work/mix.lua" "$base" -- "$token" "$conv" "$chat_every")
alive
sleep 2
rss_after=$(rss_kib)
res=$(grep '^RESULT' <<<"$out")
grep '^FIRST5XX' <<<"$out" >&2 || true
sessions=$(curl -sf -H "Authorization: Bearer $token" "$base/v1/sessions" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["sessions"]))')
stop_daemon

# Phase 2: the default rate limit (no flags) on the same state.
start_daemon
lim=$(wrk -t1 -c4 -d"${limit_secs}s" -s "$work/mix.lua" "$base" -- "$token" "$conv" 0 | grep '^RESULT')
alive
# One 429 by hand, headers and body: 200 requests on one connection (curl's URL
# globbing) drain the bucket; the last answer is looked at.
curl -s -D "$work/429.hdrs" -o "$work/429.#1.json" -H "Authorization: Bearer $token" \
    "$base/v1/status?n=[1-200]"
hdrs=$(awk '/^HTTP\// {block=""} {block=block $0 "\n"} END {printf "%s", block}' "$work/429.hdrs")
cp "$work/429.200.json" "$work/429.json"
stop_daemon

fail=0
check() { if ! eval "$1"; then echo "FAIL: $2" >&2; fail=1; fi; }
s5=$(field s5xx "$res"); s4=$(field s4xx "$res"); s429=$(field s429 "$res"); s2=$(field s2xx "$res")
ls5=$(field s5xx "$lim"); ls429=$(field s429 "$lim"); ls2=$(field s2xx "$lim"); lra=$(field retry_after "$lim")
echo "Load test: $secs s, wrk 2 threads x $conns connections, 1 in $chat_every requests a chat send"
echo "  throughput     $(field rps "$res") req/s   latency p50 $(field p50_ms "$res") ms, p99 $(field p99_ms "$res") ms"
echo "  statuses       2xx $s2, 4xx $s4, 429 $s429, 5xx $s5 (of $(field requests "$res"); socket errors $(field sock_errors "$res"))"
echo "  sessions       $sessions after the run (one conversation: expected 1)"
python3 -c "b,a,g=$rss_before/1024,$rss_after/1024,$growth_mib; print(f'  daemon RSS     {b:.1f} MiB before, {a:.1f} MiB after (+{a-b:.1f}; bound +{g} MiB: {\"met\" if a-b <= g else \"MISSED\"})')"
echo "Default rate limit (50 rps, burst 100), $limit_secs s, 4 connections:"
echo "  statuses       2xx $ls2, 429 $ls429 (with Retry-After: $lra), 5xx $ls5; rate $(field rps "$lim") req/s"
echo "  a 429 by hand  $(grep -i '^HTTP/' <<<"$hdrs" | tr -d '\r') / $(grep -i '^retry-after' <<<"$hdrs" | tr -d '\r') / $(cat "$work/429.json")"
check '[ "$s5" = 0 ]' "5xx under load"
check '[ "$s4" = 0 ] && [ "$s429" = 0 ]' "requests refused under load with the limiter off"
check '[ "$(field sock_errors "$res")" = 0 ]' "socket errors under load"
check '[ "$s2" -gt 0 ]' "no successful request"
check '[ $((rss_after - rss_before)) -le $((growth_mib * 1024)) ]' "RSS grew by more than $growth_mib MiB"
check '[ "$ls5" = 0 ]' "5xx under the rate limit"
check '[ "$ls429" -gt 0 ] && [ "$ls429" = "$lra" ]' "excess requests were not all 429 with Retry-After"
# At most the burst plus the refill rate over the run (and a little slack) got through.
check '[ "$ls2" -le $((100 + 50 * limit_secs + 50)) ]' "the rate limit let $ls2 requests through"
check 'grep -qi "^HTTP/1.1 429" <<<"$hdrs" && grep -qi "^retry-after: [0-9]" <<<"$hdrs"' "no 429 with Retry-After by hand"
check 'grep -q "\"error\"" "$work/429.json"' "the 429 is not the API's JSON error"
if [ "$fail" != 0 ]; then
    echo "daemon log (errors and warnings, last 30):" >&2
    grep -E ' (ERROR|WARN) ' "$work/daemon.log" | tail -n 30 >&2 || true
    exit 1
fi
echo "ok"
