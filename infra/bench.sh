#!/usr/bin/env bash
# Set-up for the benchmarks (seckill, timeouts, operator), then the benchmark itself:
#   bash infra/bench.sh test/bench/seckill.ts [its flags...]   (npm run bench:seckill -- [flags])
# On a fresh machine `npm run bench:seckill` stopped at "taskset: failed to execute wrk" (wrk came
# only with infra/tools.sh, i.e. with `npm test`). Now a benchmark, like the README's two commands,
# does its own set-up: wrk from Debian's packages, Kafka, Redis and MariaDB started when they do not
# answer (infra/up.sh, which reuses what runs and leaves it running). bench:operator starts its
# control plane itself (test/support/cluster.ts), building it on a machine's first run.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

apt_install wrk
bash "$ROOT/infra/up.sh" >&2
exec node "$@"
