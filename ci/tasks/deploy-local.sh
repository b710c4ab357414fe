#!/usr/bin/env bash
# Task deploy-local: scripts/deploy-local, which deploys and runs the smoke
# tests, with redis compiled from the release's blob as the VMs run it.
set -euo pipefail
cd "$(dirname "$0")/../.."
scripts/setup
trap 'scripts/deploy-local --down' EXIT
scripts/deploy-local --compile-redis
