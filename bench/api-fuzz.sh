#!/usr/bin/env bash
# API fuzzing (issue #7): schemathesis generates requests from docs/openapi.yaml — valid
# and invalid ones — against a release daemon in --dev (sessions under runsc) on a
# loopback port with its own state dir, authenticated as the dev owner.
#
#   1. `not_a_server_error` over every operation: any 5xx fails the run.
#   2. schemathesis' default checks (schema and status-code conformance, negative data
#      rejection, ...): reported; FUZZ_STRICT=1 fails on them too (they do not all pass
#      yet: the OpenAPI document is looser or stricter than the API in places).
#   Either way the run fails if the daemon died or logged a panic. schemathesis' own
#   runtime errors (a crash inside the generator, not an answer from the daemon) are
#   reported as warnings. Full outputs: target/api-fuzz-last/.
#
# Bounded: FUZZ_EXAMPLES (default 30) test cases per operation and phase, FUZZ_MAX_TIME
# (default 150) seconds per schemathesis run. The rate limiter is off for the fuzzed
# daemon (--rate-limit-rps 0: a 429 is not what is under test; bench/load.sh checks it).
#
# Usage: bench/api-fuzz.sh   (root; needs runsc, python3 with venv, curl)
#   Installs schemathesis from PyPI into target/api-fuzz-venv when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
examples=${FUZZ_EXAMPLES:-30}
max_time=${FUZZ_MAX_TIME:-150}
strict=${FUZZ_STRICT:-0}
out=target/api-fuzz-last
mkdir -p "$out"

venv=target/api-fuzz-venv
if [ ! -x "$venv/bin/schemathesis" ]; then
    python3 -m venv "$venv" 2>/dev/null || {
        apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
        python3 -m venv "$venv"
    }
    "$venv/bin/pip" install -q 'schemathesis>=4,<5'
fi
command -v curl >/dev/null || { apt-get update -qq && apt-get install -y -qq curl >/dev/null; }
cargo build --release -q -p ironclaw-controlplane
agent=target/x86_64-unknown-linux-gnu/release/ironclaw-sandbox
[ -x "$agent" ] || RUSTFLAGS='-C target-feature=+crt-static' \
    cargo build --release -q --target x86_64-unknown-linux-gnu -p ironclaw-sandbox

work=$(mktemp -d)
chmod 0711 "$work"
state="$work/state"
mkdir -m 0700 "$state"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
base="http://127.0.0.1:$port"
./target/release/ironclaw-controlplane --dev --state-dir "$state" --api-addr "127.0.0.1:$port" \
    --model-proxy-socket "$work/modelproxy.sock" --sandbox-bin "$agent" --rate-limit-rps 0 \
    >"$work/daemon.log" 2>&1 &
pid=$!
cleanup() {
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    umount -R -l "$state/keys" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
for _ in $(seq 200); do curl -sf "$base/healthz" >/dev/null && break; sleep 0.1; done
token=$(cat "$state/dev-token")

fail=0
run() { # name, extra schemathesis args...
    local name=$1
    shift
    echo "==> schemathesis: $name"
    local rc=0
    "$venv/bin/schemathesis" run docs/openapi.yaml --url "$base" \
        -H "Authorization: Bearer $token" \
        --max-examples "$examples" --max-time "$max_time" --workers 1 --seed 7 \
        --generation-database none --no-color --output-truncate true \
        --request-timeout 30 "$@" >"$out/$name.out" 2>&1 || rc=$?
    # The summary only: what ran, what failed and why (the whole output is kept).
    sed -n '/^=* SUMMARY =*$/,$p' "$out/$name.out"
    if ! kill -0 "$pid" 2>/dev/null; then
        echo "FAIL: the daemon died during '$name'; its log:" >&2
        tail -n 40 "$work/daemon.log" >&2
        exit 1
    fi
    if [ "$rc" != 0 ] && ! grep -q '^Failures:' "$out/$name.out"; then
        echo "WARN: '$name': schemathesis reported only its own runtime errors, no failed check (see $out/$name.out)" >&2
        rc=0
    fi
    return "$rc"
}

if ! run not_a_server_error --checks not_a_server_error; then
    echo "FAIL: a request made the daemon answer 5xx (see above and $out/not_a_server_error.out)" >&2
    fail=1
fi
if ! run default-checks; then
    if [ "$strict" = 1 ]; then
        echo "FAIL: schemathesis' default checks failed (FUZZ_STRICT=0 reports them only)" >&2
        fail=1
    else
        echo "WARN: schemathesis' default checks failed (not fatal: FUZZ_STRICT=0)" >&2
    fi
fi
if grep -qiE 'panicked|stack backtrace' "$work/daemon.log"; then
    echo "FAIL: the daemon logged a panic:" >&2
    grep -iE -A5 'panicked' "$work/daemon.log" | head -n 20 >&2
    fail=1
fi
[ "$fail" = 0 ] && echo "ok"
exit "$fail"
