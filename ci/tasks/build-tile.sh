#!/usr/bin/env bash
# Task build-tile: scripts/build-tile with the release build-release made
# and the bosh.io bpm release, into the tile output.
set -euo pipefail
work=$PWD
cd "$(dirname "$0")/../.."
REDIS_RELEASE=$work/release/redis-for-cf-dev.tgz BPM_RELEASE=$work/bpm-release/release.tgz \
  scripts/build-tile -o "$work/tile" ${TILE_VERSION:+--version "$TILE_VERSION"}
