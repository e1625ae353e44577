# shellcheck shell=bash
# ClickHouse server from the Debian package (18.16 on Debian 12), run with its own config in
# the state folder, never as the system service.

CLICKHOUSE_HOME="$STATE_DIR/clickhouse"
CLICKHOUSE_DATA="$CLICKHOUSE_HOME/data"
CLICKHOUSE_CONFIG="$CLICKHOUSE_HOME/config.xml"
CLICKHOUSE_OUT="$LOG_DIR/clickhouse.out"             # stdout/stderr of the process
CLICKHOUSE_LOG="$LOG_DIR/clickhouse-server.log"      # the server's own log
CLICKHOUSE_ERRLOG="$LOG_DIR/clickhouse-server.err.log"

clickhouse_bin() {
    # the Debian package ships a separate clickhouse-server binary; newer packages a
    # single `clickhouse` multi-tool
    if command -v clickhouse-server >/dev/null 2>&1; then
        command -v clickhouse-server
    elif [[ -x /usr/sbin/clickhouse-server ]]; then
        printf '/usr/sbin/clickhouse-server'
    elif command -v clickhouse >/dev/null 2>&1; then
        printf '%s server' "$(command -v clickhouse)"
    else
        return 1
    fi
}

clickhouse_pid() { our_pid clickhouse "$CLICKHOUSE_CONFIG"; }

clickhouse_healthy() {
    [[ $(curl -fsS --max-time 2 "http://$BIND_HOST:$CLICKHOUSE_HTTP_PORT/ping" 2>/dev/null) == "Ok." ]]
}

clickhouse_start() {
    local pid bin
    if pid=$(clickhouse_pid); then
        info "clickhouse already running (pid $pid)"
        # it may still be starting (another `up` in progress): return once it answers
        wait_until clickhouse "${SPECAUDIT_CLICKHOUSE_START_TIMEOUT:-60}" "$pid" "$CLICKHOUSE_OUT:$CLICKHOUSE_ERRLOG" clickhouse_healthy
        return 0
    fi
    bin=$(clickhouse_bin) || die "clickhouse-server not found: run deploy/local/stack install"
    need_cmd curl "apt-get install curl"
    require_free_ports clickhouse "$CLICKHOUSE_HTTP_PORT" "$CLICKHOUSE_TCP_PORT"
    say "starting clickhouse on $BIND_HOST:$CLICKHOUSE_HTTP_PORT (http) and :$CLICKHOUSE_TCP_PORT (native)"
    mkdir -p "$CLICKHOUSE_DATA"/{tmp,user_files,format_schemas} "$LOG_DIR"
    render_template "$STACK_DIR/clickhouse/config.xml.in" "$CLICKHOUSE_CONFIG" \
        "LOG_DIR=$LOG_DIR" "DATA_DIR=$CLICKHOUSE_DATA" "CONF_DIR=$CLICKHOUSE_HOME" \
        "HTTP_PORT=$CLICKHOUSE_HTTP_PORT" "TCP_PORT=$CLICKHOUSE_TCP_PORT"
    cp "$STACK_DIR/clickhouse/users.xml" "$CLICKHOUSE_HOME/users.xml"
    # run from the data folder: 18.16 writes *-preprocessed.xml files and a status file
    # relative to its config and data paths, all inside the state folder
    # shellcheck disable=SC2086  # $bin may be "clickhouse server"
    (cd "$CLICKHOUSE_HOME" && spawn clickhouse "$CLICKHOUSE_OUT" $bin --config-file="$CLICKHOUSE_CONFIG")
    pid=$(<"$(pid_file clickhouse)")
    wait_until clickhouse "${SPECAUDIT_CLICKHOUSE_START_TIMEOUT:-60}" "$pid" "$CLICKHOUSE_OUT:$CLICKHOUSE_ERRLOG" clickhouse_healthy
    info "clickhouse up (pid $pid)"
}

clickhouse_stop() {
    stop_pid clickhouse "$CLICKHOUSE_CONFIG" "${SPECAUDIT_CLICKHOUSE_STOP_TIMEOUT:-30}"
}

clickhouse_version() {
    local v
    if v=$(curl -fsS --max-time 2 "http://$BIND_HOST:$CLICKHOUSE_HTTP_PORT/?query=SELECT%20version()" 2>/dev/null); then
        printf '%s' "$v"
    else
        dpkg-query -W -f='${Version}' clickhouse-server 2>/dev/null || printf '?'
    fi
}

clickhouse_status() {
    local pid state=stopped version
    pid=$(clickhouse_pid) && { state=running; clickhouse_healthy || state=unhealthy; }
    if [[ $state == running ]]; then version=$(clickhouse_version); else
        version=$(dpkg-query -W -f='${Version}' clickhouse-server 2>/dev/null || printf 'not installed')
        version=${version%%+*} # 18.16.1+ds-7.3+b2 -> 18.16.1, as the server reports it
    fi
    status_line clickhouse "$state" "${pid:--}" "$CLICKHOUSE_HTTP_PORT,$CLICKHOUSE_TCP_PORT" "$version"
    [[ $state == running ]]
}
