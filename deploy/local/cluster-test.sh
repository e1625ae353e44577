#!/usr/bin/env bash
# The ingester on a ClickHouse cluster, for real: starts ZooKeeper (Debian `zookeeperd`)
# and two ClickHouse servers forming a two-shard cluster, on 127.0.0.1 with their own
# ports and data under one ignored folder, then runs the ingester's cluster tests
# (ingester/tests/cluster.rs) against them and the local stack's Kafka. Opt-in: not part
# of the default test run, which needs only the local stack.
#
#   deploy/local/cluster-test.sh          # up, test, down
#   deploy/local/cluster-test.sh up       # start ZooKeeper and both servers, print their addresses
#   deploy/local/cluster-test.sh test     # run the tests (the servers must be up)
#   deploy/local/cluster-test.sh down     # stop what `up` started
#   deploy/local/cluster-test.sh reset    # down, and wipe the folder
#
# Needs: `deploy/local/stack up` (Kafka), packages zookeeperd and clickhouse-server.
# State: ${SPECAUDIT_CLUSTER_DIR:-<repo>/.stack-cluster}. Ports (all overridable):
# ZooKeeper SPECAUDIT_CLUSTER_ZK_PORT (22181); node 1 HTTP/native/interserver
# SPECAUDIT_CLUSTER_HTTP_PORT_1 (28123), _TCP_PORT_1 (29000), _INTERSERVER_PORT_1 (29009);
# node 2 the same names ending in _2 (28124, 29001, 29010). Load: SPECAUDIT_TEST_LOAD.
set -euo pipefail

STACK_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$STACK_DIR/../.." && pwd)
STATE_DIR=${SPECAUDIT_CLUSTER_DIR:-$REPO_DIR/.stack-cluster}
# shellcheck source=lib/common.sh
source "$STACK_DIR/lib/common.sh"
# shellcheck source=lib/clickhouse.sh
source "$STACK_DIR/lib/clickhouse.sh" # clickhouse_bin

CLUSTER=specaudit_test
ZK_PORT=${SPECAUDIT_CLUSTER_ZK_PORT:-22181}
declare -A HTTP_PORT=([1]=${SPECAUDIT_CLUSTER_HTTP_PORT_1:-28123} [2]=${SPECAUDIT_CLUSTER_HTTP_PORT_2:-28124})
declare -A TCP_PORT=([1]=${SPECAUDIT_CLUSTER_TCP_PORT_1:-29000} [2]=${SPECAUDIT_CLUSTER_TCP_PORT_2:-29001})
declare -A INTERSERVER_PORT=([1]=${SPECAUDIT_CLUSTER_INTERSERVER_PORT_1:-29009} [2]=${SPECAUDIT_CLUSTER_INTERSERVER_PORT_2:-29010})
ZK_HOME="$STATE_DIR/zookeeper"
ZK_CONFIG="$ZK_HOME/zoo.cfg"

zk_classpath() {
    # the Debian package's jar names its dependencies in its manifest
    [[ -r /usr/share/java/zookeeper.jar ]] || die "ZooKeeper not found: apt-get install zookeeperd"
    printf '%s:/usr/share/java/zookeeper.jar' "$ZK_HOME"
}

zk_healthy() { [[ $( (exec 3<>"/dev/tcp/$BIND_HOST/$ZK_PORT" && printf ruok >&3 && timeout 2 cat <&3) 2>/dev/null) == imok ]]; }

zk_start() {
    local pid
    if pid=$(our_pid zookeeper "$ZK_CONFIG"); then
        info "zookeeper already running (pid $pid)"
        return 0
    fi
    need_cmd java "apt-get install openjdk-17-jre-headless"
    require_free_ports zookeeper "$ZK_PORT"
    say "starting zookeeper on $BIND_HOST:$ZK_PORT"
    mkdir -p "$ZK_HOME/data" "$LOG_DIR"
    render_template "$STACK_DIR/cluster/zoo.cfg.in" "$ZK_CONFIG" "DATA_DIR=$ZK_HOME/data" "ZK_PORT=$ZK_PORT"
    # log to the console (captured in zookeeper.out) at INFO
    printf 'log4j.rootLogger=INFO, CONSOLE\nlog4j.appender.CONSOLE=org.apache.log4j.ConsoleAppender\nlog4j.appender.CONSOLE.layout=org.apache.log4j.PatternLayout\nlog4j.appender.CONSOLE.layout.ConversionPattern=%%d{ISO8601} %%-5p %%c{1}: %%m%%n\n' >"$ZK_HOME/log4j.properties"
    spawn zookeeper "$LOG_DIR/zookeeper.out" java -Xmx256m -Dzookeeper.jmx.log4j.disable=true \
        -cp "$(zk_classpath)" org.apache.zookeeper.server.quorum.QuorumPeerMain "$ZK_CONFIG"
    pid=$(<"$(pid_file zookeeper)")
    wait_until zookeeper 60 "$pid" "$LOG_DIR/zookeeper.out" zk_healthy
    info "zookeeper up (pid $pid)"
}

node_config() { printf '%s/ch%s/config.xml' "$STATE_DIR" "$1"; }
node_url() { printf 'http://%s:%s' "$BIND_HOST" "${HTTP_PORT[$1]}"; }
node_healthy() { [[ $(curl -fsS --max-time 2 "$(node_url "$1")/ping" 2>/dev/null) == "Ok." ]]; }

node_start() {
    local n=$1 pid bin home="$STATE_DIR/ch$1"
    if pid=$(our_pid "ch$n" "$(node_config "$n")"); then
        info "clickhouse node $n already running (pid $pid)"
        return 0
    fi
    bin=$(clickhouse_bin) || die "clickhouse-server not found: run deploy/local/stack install"
    require_free_ports "clickhouse node $n" "${HTTP_PORT[$n]}" "${TCP_PORT[$n]}" "${INTERSERVER_PORT[$n]}"
    say "starting clickhouse node $n (shard $n) on $BIND_HOST:${HTTP_PORT[$n]} (http), :${TCP_PORT[$n]} (native)"
    mkdir -p "$home/data"/{tmp,user_files,format_schemas} "$LOG_DIR"
    cp "$STACK_DIR/clickhouse/users.xml" "$home/users.xml"
    render_template "$STACK_DIR/cluster/clickhouse.xml.in" "$(node_config "$n")" \
        "LOG_DIR=$LOG_DIR" "DATA_DIR=$home/data" "USERS_XML=$home/users.xml" "NODE=ch$n" "SHARD=0$n" \
        "HTTP_PORT=${HTTP_PORT[$n]}" "TCP_PORT=${TCP_PORT[$n]}" "INTERSERVER_PORT=${INTERSERVER_PORT[$n]}" \
        "TCP_PORT_1=${TCP_PORT[1]}" "TCP_PORT_2=${TCP_PORT[2]}" "ZK_PORT=$ZK_PORT" "CLUSTER=$CLUSTER"
    # shellcheck disable=SC2086  # $bin may be "clickhouse server"
    (cd "$home" && spawn "ch$n" "$LOG_DIR/ch$n.out" $bin --config-file="$(node_config "$n")")
    pid=$(<"$(pid_file "ch$n")")
    wait_until "clickhouse node $n" 90 "$pid" "$LOG_DIR/ch$n.out:$LOG_DIR/ch$n.err.log" node_healthy "$n"
    info "clickhouse node $n up (pid $pid)"
}

cmd_up() {
    zk_start
    node_start 1
    node_start 2
    say "cluster $CLUSTER up: $(node_url 1), $(node_url 2); ZooKeeper $BIND_HOST:$ZK_PORT"
}

cmd_down() {
    stop_pid ch2 "$(node_config 2)" 30
    stop_pid ch1 "$(node_config 1)" 30
    stop_pid zookeeper "$ZK_CONFIG" 30
}

cmd_test() {
    node_healthy 1 && node_healthy 2 || die "the cluster is not up: deploy/local/cluster-test.sh up"
    say "running the ingester's cluster tests"
    (cd "$REPO_DIR" &&
        SPECAUDIT_TEST_CLICKHOUSE="$(node_url 1)" \
        SPECAUDIT_TEST_CLICKHOUSE_2="$(node_url 2)" \
        SPECAUDIT_TEST_CLUSTER="$CLUSTER" \
        cargo test -p specaudit-ingester --test cluster -- --ignored --test-threads 1)
}

case ${1:-all} in
    up) cmd_up ;;
    down) cmd_down ;;
    test) cmd_test ;;
    reset) cmd_down; rm -rf "$STATE_DIR"; info "removed $STATE_DIR" ;;
    all)
        cmd_up
        rc=0
        cmd_test || rc=$?
        cmd_down
        exit "$rc"
        ;;
    *) die "unknown command ${1}: up | test | down | reset (none: up, test, down)" ;;
esac
