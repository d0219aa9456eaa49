#!/usr/bin/env bash
# The main job on a fresh machine: infrastructure, then a local flash sale from examples/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash infra/up.sh
exec node bin/flashsale.js run -f "${1:-examples/flashsale.yaml}"
