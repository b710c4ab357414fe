#!/usr/bin/env bash
# Task bump-redis-blob: scripts/bump-redis-blob --commit with the source
# tarball of the GitHub release.
set -euo pipefail
work=$PWD
cd "$(dirname "$0")/../.."
exec scripts/bump-redis-blob --commit "$work/redis-upstream/source.tar.gz"
