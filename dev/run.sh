#!/usr/bin/env bash
# The main job on a fresh machine: build everything, start the daemon with embedded
# defaults (--dev: state in ./.ironclaw-dev, the seeded `dev-agent` group on the mock
# model provider), and ask the agent — running in a gVisor sandbox — a question.
# Run as root on Debian (runsc needs it); installs runsc when missing. The daemon keeps
# running afterwards; its log is ./.ironclaw-dev.log.
set -euo pipefail
cd "$(dirname "$0")/.."
message="${1:-hello}"

need=()
command -v runsc >/dev/null || need+=(runsc)
command -v cc >/dev/null || need+=(gcc)
command -v make >/dev/null || need+=(make)
command -v perl >/dev/null || need+=(perl)
if [ ${#need[@]} -gt 0 ]; then
    apt-get update -qq && apt-get install -y -qq "${need[@]}"
fi

cargo build --release -p ironclaw-controlplane -p ironctl
RUSTFLAGS='-C target-feature=+crt-static' \
    cargo build --release --target x86_64-unknown-linux-gnu -p ironclaw-sandbox

addr=127.0.0.1:8787
if ! curl -fsS "http://$addr/healthz" >/dev/null 2>&1; then
    ./target/release/ironclaw-controlplane --dev --api-addr "$addr" >.ironclaw-dev.log 2>&1 &
    echo "daemon started (pid $!); log: .ironclaw-dev.log"
    for _ in $(seq 1 100); do
        curl -fsS "http://$addr/healthz" >/dev/null 2>&1 && break
        sleep 0.1
    done
fi
export IRONCLAW_API_TOKEN="$(cat .ironclaw-dev/dev-token)"
./target/release/ironctl status
echo "> $message"
./target/release/ironctl chat send --group dev-agent "$message"
