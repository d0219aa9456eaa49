# Shared helpers for the infra scripts. Sourced, not run.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="$ROOT/.cache"
STATE="$CACHE/infra"
mkdir -p "$STATE"

log() { printf '[infra] %s\n' "$*" >&2; }

apt_updated=""
apt_install() {
  # Installs Debian packages that are missing; `apt-get update` once per script run.
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing ${missing[*]} from Debian's packages"
  if [ -z "$apt_updated" ]; then apt-get update -qq >/dev/null; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_for() { # wait_for SECONDS DESCRIPTION COMMAND...
  local secs=$1 what=$2; shift 2
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    if [ $SECONDS -ge $deadline ]; then log "$what did not answer within ${secs}s"; return 1; fi
    sleep 0.5
  done
}

mvn_quiet() { # Maven's output only when it fails (even -q prints terminal codes).
  local out; out=$(mktemp)
  if ! mvn -B -q "$@" > "$out" 2>&1; then cat "$out" >&2; rm -f "$out"; return 1; fi
  rm -f "$out"
}
