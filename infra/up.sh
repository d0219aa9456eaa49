#!/usr/bin/env bash
# Starts (or reuses) Kafka 3.9.1 (KRaft) on 127.0.0.1:9092, Redis on :6379 and MariaDB on :3306.
# Idempotent: what already answers is reused and left alone; what this script starts is recorded
# in .cache/infra so that infra/down.sh stops only that.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

redis_ok() { redis-cli -h 127.0.0.1 -p 6379 ping | grep -q PONG; }
mysql_alive() { mysqladmin --protocol=tcp -h 127.0.0.1 -P 3306 -uroot ping; } # 0 even when access is denied
mysql_ok() { mysql --protocol=tcp -h 127.0.0.1 -P 3306 -uroot -e 'SELECT 1'; }
kafka_ok() { kcat -b 127.0.0.1:9092 -L -m 3 | grep -q 'broker 1 at 127.0.0.1:9092'; }

apt_install kcat redis-tools mariadb-client

# --- Redis -------------------------------------------------------------------------------
if ! redis_ok >/dev/null 2>&1; then
  apt_install redis-server
  log "starting redis-server on 127.0.0.1:6379"
  mkdir -p "$STATE/redis"
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
    --dir "$STATE/redis" --logfile "$STATE/redis/redis.log" --pidfile "$STATE/redis.pid"
  touch "$STATE/started-redis"
  wait_for 30 redis redis_ok
fi

# --- MariaDB -----------------------------------------------------------------------------
if ! mysql_alive >/dev/null 2>&1; then
  apt_install mariadb-server
  log "starting mariadbd on 127.0.0.1:3306"
  mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld 2>/dev/null || true
  # mariadbd refuses to run as root; Debian's package does not start it (policy-rc.d says no).
  start-stop-daemon --start --oknodo --background --make-pidfile --pidfile "$STATE/mariadb.pid" \
    --exec /usr/sbin/mariadbd -- --user=mysql --bind-address=127.0.0.1 --port=3306
  touch "$STATE/started-mariadb"
  wait_for 300 mariadb mysql_alive  # first start on a loaded 2-core machine can take minutes
fi
if ! mysql_ok >/dev/null 2>&1; then
  # Debian's root@localhost signs in by unix socket only; the workers and tests connect over TCP
  # (loopback only) as root without a password, so that is allowed too, socket login kept.
  log "letting root sign in over TCP on 127.0.0.1 without a password"
  mysql -uroot -e "ALTER USER 'root'@'localhost' IDENTIFIED VIA unix_socket OR mysql_native_password USING PASSWORD('')"
  mysql_ok >/dev/null || { log "root still cannot sign in over TCP"; exit 1; }
fi

# --- Kafka -------------------------------------------------------------------------------
# The jar set is resolved even when a broker already answers: tests start throw-away brokers from it.
command -v java >/dev/null || apt_install default-jre-headless
command -v mvn >/dev/null || apt_install maven
libs="$CACHE/kafka/libs"
if ! ls "$libs"/kafka_2.13-3.9.1.jar >/dev/null 2>&1; then
  log "resolving the Kafka 3.9.1 jar set with mvn (cached in $libs)"
  mvn_quiet -f "$ROOT/infra/kafka/pom.xml" dependency:copy-dependencies \
    -DoutputDirectory="$libs" -DincludeScope=runtime
fi
if ! kafka_ok >/dev/null 2>&1; then
  if port_open 9092; then log "something else listens on 127.0.0.1:9092 and is not a Kafka broker"; exit 1; fi
  data="$STATE/kafka/data"; logs="$STATE/kafka/logs"
  rm -rf "$data"; mkdir -p "$data" "$logs"
  sed "s#@DATA_DIR@#$data#" "$ROOT/infra/kafka/server.properties" > "$STATE/kafka/server.properties"
  # The heap, JVM and GC-log options of Kafka's own bin/kafka-server-start.sh (kafka-run-class.sh):
  # G1 with a 20 ms pause goal, young pauses of 6-13 ms here against 17-29 ms with G1's default
  # 200 ms goal under the seckill benchmark's load.
  jvm=(java -Xms1g -Xmx1g -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35
       -XX:+ExplicitGCInvokesConcurrent -XX:MaxInlineLevel=15 -Djava.awt.headless=true
       "-Xlog:gc*:file=$logs/kafkaServer-gc.log:time,tags:filecount=10,filesize=100M"
       -Dkafka.logs.dir="$logs" -Dlog4j.configuration="file:$ROOT/infra/kafka/log4j.properties"
       -cp "$libs/*")
  log "formatting KRaft storage and starting Kafka 3.9.1 on 127.0.0.1:9092"
  "${jvm[@]}" kafka.tools.StorageTool format -t "$(cat /proc/sys/kernel/random/uuid | tr -d - | head -c 22)" \
    -c "$STATE/kafka/server.properties" > "$logs/format.log" 2>&1 \
    || { cat "$logs/format.log" >&2; exit 1; }
  nohup setsid "${jvm[@]}" kafka.Kafka "$STATE/kafka/server.properties" > "$logs/stdout.log" 2>&1 &
  echo $! > "$STATE/kafka.pid"
  if ! wait_for 300 kafka kafka_ok; then tail -30 "$logs/stdout.log" "$logs/server.log" >&2 || true; exit 1; fi
fi

echo "kafka: 127.0.0.1:9092"
echo "redis: redis://127.0.0.1:6379"
echo "mysql: mysql://root@127.0.0.1:3306"
