#!/usr/bin/env bash
# Installs the tools the tests drive for real: kcat, Prometheus and promtool, wrk for the
# benchmarks, a JDK + Maven for Kafka, and (infra/cluster.sh build) kube-apiserver,
# kube-controller-manager, kubectl and helm built from source. Idempotent.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

apt_install kcat prometheus wrk redis-tools mariadb-client
command -v java >/dev/null || apt_install default-jre-headless
command -v mvn >/dev/null || apt_install maven

# The real Kubernetes control plane, kubectl and helm, built from their Go modules into
# .cache/bin (skipped when the pinned versions are there; the first build takes a while: README).
bash "$ROOT/infra/cluster.sh" build
