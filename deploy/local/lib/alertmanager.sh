# shellcheck shell=bash
# Alertmanager from the Debian package prometheus-alertmanager, with its config from
# deploy/local/alertmanager/ and its storage in the state folder; clustering off.

ALERTMANAGER_HOME="$STATE_DIR/alertmanager"
ALERTMANAGER_CONFIG="$ALERTMANAGER_HOME/alertmanager.yml"
ALERTMANAGER_OUT="$LOG_DIR/alertmanager.log"   # Alertmanager logs to stderr only

alertmanager_pid() { our_pid alertmanager "$ALERTMANAGER_CONFIG"; }

alertmanager_healthy() {
    curl -fsS --max-time 2 "http://$BIND_HOST:$ALERTMANAGER_PORT/-/ready" >/dev/null 2>&1
}

alertmanager_start() {
    local pid
    if pid=$(alertmanager_pid); then
        info "alertmanager already running (pid $pid)"
        # it may still be starting (another `up` in progress): return once it answers
        wait_until alertmanager "${SPECAUDIT_ALERTMANAGER_START_TIMEOUT:-60}" "$pid" "$ALERTMANAGER_OUT" alertmanager_healthy
        return 0
    fi
    need_cmd prometheus-alertmanager "run deploy/local/stack install"
    need_cmd curl "apt-get install curl"
    require_free_ports alertmanager "$ALERTMANAGER_PORT"
    say "starting alertmanager on $BIND_HOST:$ALERTMANAGER_PORT"
    mkdir -p "$ALERTMANAGER_HOME/data" "$LOG_DIR"
    # a copy in the state folder: its path marks the process as ours
    cp "$STACK_DIR/alertmanager/alertmanager.yml" "$ALERTMANAGER_CONFIG"
    # --cluster.listen-address= (empty) turns gossip off; otherwise it binds 0.0.0.0:9094,
    # which is also the Kafka controller port here
    spawn alertmanager "$ALERTMANAGER_OUT" prometheus-alertmanager \
        --config.file="$ALERTMANAGER_CONFIG" \
        --storage.path="$ALERTMANAGER_HOME/data" \
        --web.listen-address="$BIND_HOST:$ALERTMANAGER_PORT" \
        --web.external-url="http://$BIND_HOST:$ALERTMANAGER_PORT/" \
        --cluster.listen-address=
    pid=$(<"$(pid_file alertmanager)")
    wait_until alertmanager "${SPECAUDIT_ALERTMANAGER_START_TIMEOUT:-30}" "$pid" "$ALERTMANAGER_OUT" alertmanager_healthy
    info "alertmanager up (pid $pid)"
}

alertmanager_stop() {
    stop_pid alertmanager "$ALERTMANAGER_CONFIG" "${SPECAUDIT_ALERTMANAGER_STOP_TIMEOUT:-20}"
}

alertmanager_version() {
    prometheus-alertmanager --version 2>&1 | sed -n 's/^alertmanager, version \([^ ]*\).*/\1/p' | head -n1
}

alertmanager_status() {
    local pid state=stopped
    pid=$(alertmanager_pid) && { state=running; alertmanager_healthy || state=unhealthy; }
    status_line alertmanager "$state" "${pid:--}" "$ALERTMANAGER_PORT" "$(alertmanager_version || printf '?')"
    [[ $state == running ]]
}
