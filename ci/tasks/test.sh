#!/usr/bin/env bash
# Task test: scripts/test, the command a developer runs, with Node 20 from the
# node-20 input's rootfs first on PATH.
set -euo pipefail
work=$PWD
cd "$(dirname "$0")/../.."
PATH=$work/node-20/rootfs/usr/local/bin:$PATH scripts/test
