#!/usr/bin/env bash
# Installs the tools the tests drive for real: kcat, Debian's kubectl (v1.20), Prometheus and
# promtool, wrk for the benchmarks, and a JDK + Maven for Kafka and Helm. Idempotent.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

apt_install kcat prometheus wrk redis-tools mariadb-client
command -v java >/dev/null || apt_install default-jre-headless
command -v mvn >/dev/null || apt_install maven

# Debian's kubernetes-client clashes with other kubectl packages over /usr/bin/kubectl, so it is
# unpacked into .cache instead of installed; tests use $KUBECTL (see test/support/kubectl.ts).
kubectl_dir="$CACHE/kubernetes-client"
if [ ! -x "$kubectl_dir/usr/bin/kubectl" ]; then
  log "unpacking Debian's kubernetes-client into $kubectl_dir"
  if [ -z "$apt_updated" ]; then apt-get update -qq >/dev/null; apt_updated=1; fi
  mkdir -p "$CACHE/debs" && (cd "$CACHE/debs" && rm -f kubernetes-client_*.deb && apt-get download -qq -o APT::Sandbox::User=root kubernetes-client)
  rm -rf "$kubectl_dir" && dpkg-deb -x "$CACHE"/debs/kubernetes-client_*.deb "$kubectl_dir"
fi
"$kubectl_dir/usr/bin/kubectl" version --client --short >/dev/null 2>&1 || { log "kubectl from kubernetes-client does not run"; exit 1; }

# helm-java (Helm's Go code as a native library) for the chart tests: jars into .cache/helm/libs.
if ! ls "$CACHE"/helm/libs/linux-amd64-*.jar >/dev/null 2>&1; then
  log "resolving helm-java into $CACHE/helm/libs"
  mvn_quiet -f "$ROOT/infra/helm/pom.xml" dependency:copy-dependencies -DoutputDirectory="$CACHE/helm/libs" >&2
fi
