#!/usr/bin/env bash
# Task bump-redis-blob: scripts/bump-redis-blob --commit, which downloads
# the newest redis source package of bookworm-security with apt-get source.
set -euo pipefail
cd "$(dirname "$0")/../.."
exec scripts/bump-redis-blob --commit
