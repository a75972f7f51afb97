#!/usr/bin/env bash
# Web chat in -> reply out under gVisor (issue #6): 200 messages one at a time through
# the real daemon and a live runsc session (mock provider via the model proxy), p50/p99
# next to the Go system's poll-bound design floor, then 20 sessions at once (replies/s).
# Targets: p50 <= 50 ms, p99 <= 250 ms (exits 1 after reporting if missed).
# Needs root and runsc (apt-get install -y runsc).
set -euo pipefail
cd "$(dirname "$0")/.."
RUSTFLAGS='-C target-feature=+crt-static' \
    cargo build --release --target x86_64-unknown-linux-gnu -p ironclaw-sandbox
# The bench drives the daemon and ironctl built next to it.
cargo build --release -p ironclaw-controlplane -p ironctl
cargo bench -p ironclaw-e2e --bench chat_latency
