#!/usr/bin/env bash
# The test command: tools, infrastructure, lint, type check, then every test against the real
# Kafka, Redis and MariaDB. Run through `npm test` so node_modules/.bin (Node 24) comes first.
set -euo pipefail
cd "$(dirname "$0")/.."
bash infra/tools.sh
bash infra/up.sh
echo "== lint"; npx eslint .
echo "== typecheck"; npx tsc -p tsconfig.json --noEmit
echo "== tests"
NODE_OPTIONS="${NODE_OPTIONS:-} --disable-warning=TimeoutNegativeWarning" node --test --test-concurrency=1 --test-timeout=600000 "test/**/*.test.ts"
