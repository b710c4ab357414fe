#!/usr/bin/env bash
# Task test: scripts/test, the command a developer runs.
set -euo pipefail
cd "$(dirname "$0")/../.."
exec scripts/test
