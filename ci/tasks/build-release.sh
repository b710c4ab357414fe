#!/usr/bin/env bash
# Task build-release: scripts/create-release into the release output.
set -euo pipefail
out=$PWD/release
cd "$(dirname "$0")/../.."
exec scripts/create-release "$out/redis-for-cf-dev.tgz"
