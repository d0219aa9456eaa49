#!/usr/bin/env bash
# The real Kubernetes control plane for the tests and for trying the chart without Docker.
#   bash infra/cluster.sh build    compile kube-apiserver, kube-controller-manager, kubectl, the
#                                  launcher (embedded etcd) and helm into .cache/bin (skipped
#                                  when the pinned versions are already there)
#   bash infra/cluster.sh up       start (or reuse) etcd + kube-apiserver + kube-controller-manager
#                                  and the node agent; last line: KUBECONFIG=<admin kubeconfig>
#   bash infra/cluster.sh down     stop what `up` started
#   bash infra/cluster.sh status   exit 0 when the control plane answers
# Files in .cache/cluster: admin.kubeconfig, cluster.json (written once healthy), logs/ (etcd,
# kube-apiserver, kube-controller-manager, launcher, node-agent), pki/, node-agent/ (pod logs).
# Sources: test/cluster (Go module pinning k8s.io/kubernetes + etcd), test/cluster/helm (helm).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

K8S_VERSION=v1.36.3
HELM_VERSION=v3.21.4
K8S_BUILD_DATE=2026-07-22T18:07:38Z # the release's commit time, so a rebuild is identical
BIN="$CACHE/bin"
DIR="${CLUSTER_DIR:-$CACHE/cluster}" # another directory (and CLUSTER_NODE_NAME) for a second cluster
SRC="$ROOT/test/cluster"
NODE_NAME="${CLUSTER_NODE_NAME:-$(cat "$DIR/node-name" 2>/dev/null || echo local-node)}"
NODE_AGENT="$ROOT/test/node-agent/main.ts"
KUBECONFIG_PATH="$DIR/admin.kubeconfig"

clog() { printf '[cluster] %s\n' "$*" >&2; }

# --- build ------------------------------------------------------------------------------------

fingerprint() { cat "$@" | sha256sum | cut -d' ' -f1; }

go_build() { # go_build MODULE_DIR LDFLAGS PACKAGE...
  local dir=$1 ldflags=$2; shift 2
  (cd "$dir" && CGO_ENABLED=0 go build -p 2 -trimpath -ldflags "$ldflags" -o "$BIN/" "$@")
}

build() {
  command -v go >/dev/null || { clog "go is not installed (needs Go >= 1.26)"; exit 1; }
  mkdir -p "$BIN"
  local ld="-s -w" p
  for p in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
    ld+=" -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=36 -X $p.gitTreeState=clean -X $p.buildDate=$K8S_BUILD_DATE"
  done

  # Kubernetes binaries: rebuilt only when the pinned modules change.
  local stamp="$BIN/.kubernetes.stamp" want
  want="$K8S_VERSION $(fingerprint "$SRC/go.mod" "$SRC/go.sum")"
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ] || [ ! -x "$BIN/kube-apiserver" ] || [ ! -x "$BIN/kube-controller-manager" ] || [ ! -x "$BIN/kubectl" ]; then
    clog "building kube-apiserver, kube-controller-manager and kubectl $K8S_VERSION (first build: see README)"
    local t0=$SECONDS
    go_build "$SRC" "$ld" k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kubectl
    echo "$want" > "$stamp"
    clog "built in $((SECONDS - t0))s"
  fi

  # The launcher (embedded etcd): small, rebuilt when its sources change.
  stamp="$BIN/.kube-testcluster.stamp"
  want="$(fingerprint "$SRC/go.mod" "$SRC/go.sum" "$SRC"/cmd/kube-testcluster/*.go)"
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ] || [ ! -x "$BIN/kube-testcluster" ]; then
    clog "building kube-testcluster (embedded etcd)"
    go_build "$SRC" "-s -w" ./cmd/kube-testcluster
    echo "$want" > "$stamp"
  fi

  # helm: its own module (its k8s.io dependencies are not the ones above).
  stamp="$BIN/.helm.stamp"
  want="$HELM_VERSION $(fingerprint "$SRC/helm/go.mod" "$SRC/helm/go.sum")"
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ] || [ ! -x "$BIN/helm" ]; then
    clog "building helm $HELM_VERSION"
    local v=helm.sh/helm/v3/internal/version
    go_build "$SRC/helm" "-s -w -X $v.version=$HELM_VERSION -X $v.gitTreeState=clean -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=36 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=36" helm.sh/helm/v3/cmd/helm
    echo "$want" > "$stamp"
  fi
}

# --- run --------------------------------------------------------------------------------------

# pid_of FILE PATTERN: the pid in FILE when that process is alive and its command line matches
# PATTERN (a recycled pid is never taken for ours).
pid_of() {
  local pid
  pid=$(cat "$1" 2>/dev/null) || return 1
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
  local cmd
  cmd=$(tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null) || return 1
  [[ $cmd == *"$2"* ]] || return 1
  echo "$pid"
}

kubectl_() { "$BIN/kubectl" --kubeconfig "$KUBECONFIG_PATH" --request-timeout=5s "$@"; }

control_plane_healthy() {
  pid_of "$DIR/launcher.pid" kube-testcluster >/dev/null && [ -f "$DIR/cluster.json" ] &&
    [ "$(kubectl_ get --raw /readyz 2>/dev/null)" = ok ]
}

node_ready() {
  [ "$(kubectl_ get node "$NODE_NAME" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" = True ]
}

stop_pid() { # stop_pid FILE PATTERN SECONDS: SIGTERM, then SIGKILL after SECONDS
  local pid deadline
  pid=$(pid_of "$1" "$2") || { rm -f "$1"; return 0; }
  kill -TERM "$pid" 2>/dev/null || true
  deadline=$((SECONDS + $3))
  while kill -0 "$pid" 2>/dev/null; do
    if [ $SECONDS -ge $deadline ]; then kill -KILL "$pid" 2>/dev/null || true; break; fi
    sleep 0.2
  done
  rm -f "$1"
}

spawn_node_agent() { # starts the node agent unless it runs; returns at once
  [ -f "$NODE_AGENT" ] || return 0
  if ! pid_of "$DIR/node-agent.pid" node-agent >/dev/null; then
    local node="$ROOT/node_modules/.bin/node"
    [ -x "$node" ] || node=node
    mkdir -p "$DIR/node-agent" "$DIR/logs"
    setsid nohup "$node" "$NODE_AGENT" --kubeconfig "$KUBECONFIG_PATH" \
      --node-name "$NODE_NAME" --state-dir "$DIR/node-agent" > "$DIR/logs/node-agent.log" 2>&1 < /dev/null 9>&- &
    echo $! > "$DIR/node-agent.pid"
    echo "$NODE_NAME" > "$DIR/node-name"
  fi
}

start_node_agent() { # spawn_node_agent, then wait until its Node is Ready
  [ -f "$NODE_AGENT" ] || return 0
  spawn_node_agent
  local pid deadline=$((SECONDS + 30))
  pid=$(cat "$DIR/node-agent.pid")
  until node_ready; do
    if ! kill -0 "$pid" 2>/dev/null; then
      clog "the node agent exited; its log, $DIR/logs/node-agent.log:"; tail -n 30 "$DIR/logs/node-agent.log" >&2; return 1
    fi
    if [ $SECONDS -ge $deadline ]; then clog "node $NODE_NAME not Ready within 30s (log: $DIR/logs/node-agent.log)"; return 1; fi
    sleep 0.2
  done
}

up() {
  build
  mkdir -p "$DIR/logs"
  local t0=$SECONDS
  if control_plane_healthy; then
    clog "reusing the running control plane ($(sed -n 's/.*"server": "\(.*\)".*/\1/p' "$DIR/cluster.json"))"
  else
    stop_pid "$DIR/node-agent.pid" node-agent 35
    stop_pid "$DIR/launcher.pid" kube-testcluster 30
    rm -f "$DIR/cluster.json" "$DIR/apiserver-ready"
    # (9>&-: the up/down lock must not be inherited by what keeps running)
    setsid nohup "$BIN/kube-testcluster" -dir "$DIR" -bin "$BIN" > "$DIR/logs/launcher.log" 2>&1 < /dev/null 9>&- &
    local pid=$! deadline=$((SECONDS + 120))
    echo $pid > "$DIR/launcher.pid"
    until [ -f "$DIR/cluster.json" ]; do
      # The node agent needs only the apiserver: it boots while the controllers start.
      [ ! -f "$DIR/apiserver-ready" ] || spawn_node_agent
      if ! kill -0 $pid 2>/dev/null; then
        clog "the control plane did not start; $DIR/logs/launcher.log:"; tail -n 30 "$DIR/logs/launcher.log" >&2
        rm -f "$DIR/launcher.pid"; stop_pid "$DIR/node-agent.pid" node-agent 35; exit 1
      fi
      if [ $SECONDS -ge $deadline ]; then clog "the control plane was not healthy within 120s (logs: $DIR/logs)"; down; exit 1; fi
      sleep 0.2
    done
    control_plane_healthy || { clog "the control plane does not answer (logs: $DIR/logs)"; exit 1; }
  fi
  start_node_agent
  clog "healthy in $((SECONDS - t0))s; kubectl and helm are in $BIN; logs in $DIR/logs"
  echo "KUBECONFIG=$KUBECONFIG_PATH"
}

down() {
  stop_pid "$DIR/node-agent.pid" node-agent 35
  stop_pid "$DIR/launcher.pid" kube-testcluster 30
  rm -f "$DIR/cluster.json"
  clog "stopped"
}

status() {
  if control_plane_healthy; then
    cat "$DIR/cluster.json"
    if [ -f "$NODE_AGENT" ]; then
      if node_ready; then echo "node $NODE_NAME: Ready"; else echo "node $NODE_NAME: not Ready"; fi
    fi
    echo "KUBECONFIG=$KUBECONFIG_PATH"
  else
    echo "not running"; return 1
  fi
}

# up and down of this directory run one at a time (two test runs starting together share one).
lock() { mkdir -p "$DIR"; exec 9>"$DIR/.lock"; flock -w 600 9 || { clog "$DIR/.lock is held by another up/down"; exit 1; }; }

case "${1:-}" in
  build) build ;;
  up) lock; up ;;
  down) lock; down ;;
  status) status ;;
  *) echo "usage: $0 build|up|down|status" >&2; exit 2 ;;
esac
