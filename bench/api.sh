#!/usr/bin/env bash
# API benchmark (issue #3). Starts a release daemon in --dev on a free loopback port and
# measures, in the same run:
#   1. wrk throughput of GET /v1/changes/pending (authenticated, storage read) against
#      GET /healthz (open, no storage) on the same server, and their ratio (target >= 0.5);
#   2. a submit+approve loop: changes fully applied per second, each with its fsynced
#      audit records (submit, verdict, decision, applied);
#   3. the daemon's idle RSS (target <= 30 MiB).
# Usage: bench/api.sh [seconds-per-wrk-run]   (needs wrk and python3; installs wrk via apt)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
command -v wrk >/dev/null || apt-get install -y -qq wrk >/dev/null
cargo build --release -q -p ironclaw-controlplane -p ironctl
state=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
./target/release/ironclaw-controlplane --dev --state-dir "$state/s" --api-addr "127.0.0.1:$port" \
    --rate-limit-rps 0 >/dev/null 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; rm -rf "$state"' EXIT
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
token=$(cat "$state/s/dev-token")
sleep 1
rss_idle=$(awk '/VmRSS/ {print $2}' /proc/$pid/status)

run_wrk() { wrk -t2 -c16 -d"${secs}s" "$@" | awk '/Requests\/sec/ {print $2}'; }
health=$(run_wrk "http://127.0.0.1:$port/healthz")
pending=$(run_wrk -H "Authorization: Bearer $token" "http://127.0.0.1:$port/v1/changes/pending")

applied=$(python3 - "$port" "$token" <<'PY'
import http.client, json, sys, time
port, owner = int(sys.argv[1]), sys.argv[2]
c = http.client.HTTPConnection("127.0.0.1", port)
def call(method, path, token, body=None):
    c.request(method, path, body=json.dumps(body) if body is not None else None,
              headers={"Authorization": "Bearer " + token, "Content-Type": "application/json"})
    r = c.getresponse(); data = r.read()
    if r.status >= 300: raise SystemExit(f"{method} {path}: {r.status} {data!r}")
    return json.loads(data)
alice = call("POST", "/v1/tokens", owner, {"name": "bench", "role": "admin"})["token"]
n = 300
t0 = time.monotonic()
for i in range(n):
    cid = call("POST", "/v1/changes", alice, {"kind": "persona", "agent_group_id": "dev-agent", "payload": {"persona": f"bench {i}"}})["id"]
    rec = call("POST", f"/v1/changes/{cid}/decision", owner, {"outcome": "approve"})
    assert rec["status"] == "applied", rec
print(f"{n / (time.monotonic() - t0):.1f}")
PY
)
rss_after=$(awk '/VmRSS/ {print $2}' /proc/$pid/status)

echo "API benchmark, same run, $secs s per wrk run (2 threads, 16 connections):"
echo "  GET /healthz             ${health} req/s"
echo "  GET /v1/changes/pending  ${pending} req/s (token check + the gateway's pending list, cached between writes)"
python3 -c "r=$pending/$health; print(f'  ratio pending/healthz    {r:.2f}   (target >= 0.50: {\"met\" if r >= 0.5 else \"MISSED\"})')"
echo "  submit+approve+apply     ${applied} changes/s (4 fsynced audit records each)"
python3 -c "m=$rss_idle/1024; print(f'  idle RSS                 {m:.1f} MiB (target <= 30 MiB: {\"met\" if m <= 30 else \"MISSED\"}); after load {$rss_after/1024:.1f} MiB')"
