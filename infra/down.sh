#!/usr/bin/env bash
# Stops only what infra/up.sh started (recorded in .cache/infra); reused servers are left alone.
set -uo pipefail
source "$(dirname "$0")/lib.sh"

stop_pid() { # stop_pid NAME PIDFILE
  local pid; pid=$(cat "$2" 2>/dev/null) || return 0
  if kill -0 "$pid" 2>/dev/null; then
    log "stopping $1 (pid $pid)"; kill "$pid"
    for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$2"
}

stop_pid kafka "$STATE/kafka.pid"
[ -f "$STATE/started-redis" ] && { stop_pid redis "$STATE/redis.pid"; rm -f "$STATE/started-redis"; }
[ -f "$STATE/started-mariadb" ] && { stop_pid mariadb "$STATE/mariadb.pid"; rm -f "$STATE/started-mariadb"; }
exit 0
