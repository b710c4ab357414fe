#!/usr/bin/env bash
# Task deploy-local: scripts/deploy-local on the release the tile carries,
# which deploys and runs the smoke tests, with redis compiled from the
# release's own blobs and patches as the VMs run it.
set -euo pipefail
work=$PWD
cd "$(dirname "$0")/../.."
scripts/setup
scripts/unpack-release "$work"/tile/p-redis-*.pivotal "$work/deployed"
cd "$work/deployed"
trap 'scripts/deploy-local --down' EXIT
scripts/deploy-local --compile-redis
