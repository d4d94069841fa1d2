#!/usr/bin/env bash
# Sets everything up (scripts/setup.sh) and runs every test: the host workspace
# (unit tests, and tests/ against real etcd, PostgreSQL and wasm plugins) and the
# plugins' native unit tests.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
bash scripts/setup.sh
echo "== cargo test (plugins, native)"
cargo test --manifest-path plugins/Cargo.toml --workspace --locked
echo "== cargo test (host workspace)"
# tests/ drives the daemon binaries (keeld), which `cargo test` alone does not build.
cargo build --workspace --bins --locked
cargo test --workspace --locked
