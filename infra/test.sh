#!/usr/bin/env bash
# The test command: tools, infrastructure, the Kubernetes control plane, lint, type check, then
# every test against the real Kafka, Redis, MariaDB and Kubernetes. Run through `npm test` so
# node_modules/.bin (Node 24) comes first.
set -euo pipefail
cd "$(dirname "$0")/.."
bash infra/tools.sh
bash infra/up.sh
# One Kubernetes control plane (and node agent) for every test file; stopped at the end only when
# this run started it.
cluster_started=""
bash infra/cluster.sh status >/dev/null 2>&1 || cluster_started=1
trap '[ -z "$cluster_started" ] || bash infra/cluster.sh down' EXIT
KUBECONFIG="$(bash infra/cluster.sh up | tail -n 1)"
KUBECONFIG="${KUBECONFIG#KUBECONFIG=}"
export KUBECONFIG
echo "== lint"; npx eslint .
echo "== typecheck"; npx tsc -p tsconfig.json --noEmit
echo "== tests"
node --test --test-concurrency=1 --test-timeout=600000 "test/**/*.test.ts"
