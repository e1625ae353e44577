# shellcheck shell=bash
# The specaudit side of the local stack: build, the ingester, the demo fleet, and the
# test run. Used by `deploy/local/stack demo|demo-stop|test`.

BIN_DIR="$REPO_DIR/target/debug"
INGESTER_LOG="$LOG_DIR/ingester.log"
DEMO_LOG="$LOG_DIR/demo.log"
INGESTER_METRICS=$BIND_HOST:${SPECAUDIT_INGESTER_PORT:-9464}
ALARMER_LOG="$LOG_DIR/alarmer.log"
ALARMER_METRICS=$BIND_HOST:${SPECAUDIT_ALARMER_PORT:-9465}
REPORTER_LOG="$LOG_DIR/reporter.log"
REPORTER_ADDR=$BIND_HOST:${SPECAUDIT_REPORTER_PORT:-8080}
DEMO_SPEC="$REPO_DIR/examples/compute-service.yaml"
DEMO_RATE=${SPECAUDIT_DEMO_RATE:-20}
DEMO_SIZE=${SPECAUDIT_DEMO_SIZE:-1}
# Where the services find this stack: the example configs name the default ports.
STACK_ENV=(SPECAUDIT__KAFKA__BROKERS="$BIND_HOST:$KAFKA_PORT" SPECAUDIT__KAFKA__TOPIC_PREFIX="$TOPIC_PREFIX")
CLICKHOUSE_ENV=(SPECAUDIT__CLICKHOUSE__URL="http://$BIND_HOST:$CLICKHOUSE_HTTP_PORT")

release_lock() {
    ((LOCK_HELD)) || return 0
    exec 9>&-
    LOCK_HELD=0
}

build_specaudit() {
    need_cmd cargo "install Rust (https://rustup.rs) or put cargo on PATH"
    say "building specaudit (cargo build --bins; the first build takes a few minutes)"
    (cd "$REPO_DIR" && cargo build --bins --quiet) || die "cargo build failed"
}

ingester_start() {
    local pid
    if pid=$(our_pid ingester "$BIN_DIR/specaudit-ingester"); then
        info "ingester already running (pid $pid)"
        return 0
    fi
    say "applying clickhouse migrations"
    env "${STACK_ENV[@]}" "${CLICKHOUSE_ENV[@]}" \
        "$BIN_DIR/specaudit-ingester" --config "$REPO_DIR/deploy/ingester.toml" migrate >>"$INGESTER_LOG" 2>&1 ||
        { show_log_tail "$INGESTER_LOG"; die "migrations failed"; }
    say "starting specaudit-ingester (metrics on $INGESTER_METRICS)"
    spawn ingester "$INGESTER_LOG" env SPECAUDIT__TELEMETRY__LISTEN="$INGESTER_METRICS" "${STACK_ENV[@]}" "${CLICKHOUSE_ENV[@]}" \
        "$BIN_DIR/specaudit-ingester" --config "$REPO_DIR/deploy/ingester.toml" run
    pid=$(<"$(pid_file ingester)")
    wait_until ingester 30 "$pid" "$INGESTER_LOG" curl -fsS --max-time 2 "http://$INGESTER_METRICS/health"
}

# The alarmer with deploy/alarmer.toml, pushing to this stack's Alertmanager.
alarmer_start() {
    local pid
    if pid=$(our_pid alarmer "$BIN_DIR/specaudit-alarmer"); then
        info "alarmer already running (pid $pid)"
        return 0
    fi
    say "starting specaudit-alarmer (metrics on $ALARMER_METRICS, alerts to Alertmanager)"
    spawn alarmer "$ALARMER_LOG" env SPECAUDIT__TELEMETRY__LISTEN="$ALARMER_METRICS" "${STACK_ENV[@]}" \
        SPECAUDIT__RECEIVERS__ALERTMANAGER__URL="http://$BIND_HOST:$ALERTMANAGER_PORT" \
        "$BIN_DIR/specaudit-alarmer" --config "$REPO_DIR/deploy/alarmer.toml"
    pid=$(<"$(pid_file alarmer)")
    wait_until alarmer 60 "$pid" "$ALARMER_LOG" curl -fsS --max-time 2 "http://$ALARMER_METRICS/health"
}

reporter_start() {
    local pid
    if pid=$(our_pid reporter "$BIN_DIR/specaudit-reporter"); then
        info "reporter already running (pid $pid)"
        return 0
    fi
    say "starting specaudit-reporter (web UI on http://$REPORTER_ADDR/)"
    spawn reporter "$REPORTER_LOG" env SPECAUDIT__SERVER__LISTEN="$REPORTER_ADDR" "${STACK_ENV[@]}" "${CLICKHOUSE_ENV[@]}" \
        "$BIN_DIR/specaudit-reporter" --config "$REPO_DIR/deploy/reporter.toml" serve
    pid=$(<"$(pid_file reporter)")
    wait_until reporter 30 "$pid" "$REPORTER_LOG" curl -fsS --max-time 2 "http://$REPORTER_ADDR/health"
}

demo_fleet_start() {
    local pid
    if pid=$(our_pid demo "$BIN_DIR/specaudit-demo"); then
        info "demo fleet already running (pid $pid)"
        return 0
    fi
    say "starting the demo fleet (size $DEMO_SIZE: $((22 * DEMO_SIZE + 2)) simulated instances, $DEMO_RATE tasks/s each)"
    spawn demo "$DEMO_LOG" "$BIN_DIR/specaudit-demo" --rate "$DEMO_RATE" --size "$DEMO_SIZE" \
        --brokers "$BIND_HOST:$KAFKA_PORT" --topic-prefix "$TOPIC_PREFIX"
}

# The demo spec in two versions: version 1 from the file, then version 2, which raises the
# throttle's limit. One throttle of the fleet pins the version before the latest, so the
# version skew shows.
demo_spec_publish() {
    local -a specctl=("$BIN_DIR/specctl" --brokers "$BIND_HOST:$KAFKA_PORT" --topic-prefix "$TOPIC_PREFIX")
    if "${specctl[@]}" get compute-service --version 2 >/dev/null 2>&1; then
        info "spec compute-service already published (two versions or more)"
        return 0
    fi
    if ! "${specctl[@]}" get compute-service >/dev/null 2>&1; then
        say "publishing examples/compute-service.yaml (version 1)"
        "${specctl[@]}" apply -f "$DEMO_SPEC" --author demo -m "demo spec" --expect-version 0 ||
            die "publishing the demo spec failed"
    fi
    say "publishing version 2 of compute-service: frontend.throttle max_rps 1000 -> 1500"
    "${specctl[@]}" replace param compute-service frontend.throttle max_rps --value 1500 --author demo \
        -m "raise the throttle's limit for the launch" --expect-version 1 ||
        die "publishing version 2 of the demo spec failed"
}

services_stop() {
    stop_pid demo "$BIN_DIR/specaudit-demo" 15
    stop_pid reporter "$BIN_DIR/specaudit-reporter" 15
    stop_pid alarmer "$BIN_DIR/specaudit-alarmer" 15
    stop_pid ingester "$BIN_DIR/specaudit-ingester" 30
}

cmd_demo() {
    cmd_install
    cmd_up
    build_specaudit
    ingester_start
    demo_spec_publish
    # The fleet before the alarmer: a restarted alarmer replays the last minutes and would
    # otherwise find every component silent until the fleet is back.
    demo_fleet_start
    alarmer_start
    reporter_start
    say "letting the fleet report for 15 s"
    sleep 15
    say "compliance report (specaudit-reporter report --spec compute-service --since 1h)"
    env "${CLICKHOUSE_ENV[@]}" "$BIN_DIR/specaudit-reporter" --config "$REPO_DIR/deploy/reporter.toml" \
        report --spec compute-service --since 1h || warn "the report failed; see $INGESTER_LOG"
    cat <<EOF

==> specaudit is running. Where to look:
    web UI (reports, the colour-coded spec, agents, alarms, history; read-only without auth.tokens):
                                      http://$REPORTER_ADDR/   (JSON: http://$REPORTER_ADDR/api/v1/report?spec=compute-service&since=1h)
    report (markdown|json|csv|html):  SPECAUDIT__CLICKHOUSE__URL=http://$BIND_HOST:$CLICKHOUSE_HTTP_PORT \\
                                        target/debug/specaudit-reporter report --since 1h --format html > report.html
    the spec:                         target/debug/specctl --brokers $BIND_HOST:$KAFKA_PORT get compute-service
    ClickHouse (SQL over HTTP):       curl 'http://$BIND_HOST:$CLICKHOUSE_HTTP_PORT/?database=specaudit' --data-binary \\
                                        "SELECT requirement, outcome, sum(count) FROM assertions GROUP BY requirement, outcome"
    ingester metrics / health:        http://$INGESTER_METRICS/metrics   http://$INGESTER_METRICS/health
    alarmer metrics / health:         http://$ALARMER_METRICS/metrics   http://$ALARMER_METRICS/health
    Alertmanager (alarmer alerts):    http://$BIND_HOST:$ALERTMANAGER_PORT/
    raw assertions on Kafka:          kcat -C -b $BIND_HOST:$KAFKA_PORT -t ${TOPIC_PREFIX}assertions -o -5 -e
    logs:                             $LOG_DIR/
    stop the services / everything:   deploy/local/stack demo-stop   /   deploy/local/stack down

==> What the demo fleet shows (examples/compute-service.yaml; producer/src/bin/specaudit-demo/fleet.rs):
    failing (red):     fe-2 accepts TLS 1.0 now and then (frontend/tls-min-version, critical);
                       the schedulers over-commit ~8% of placements (resource/within-capacity);
                       host-4-dom0 dips below its memory reserve (compute.host.dom0/memory-reserved)
    error (amber):     host-3 cannot always read its hypervisor's patch level (compute.host/hypervisor-patched)
    unknown (grey):    health.recovery: rec-1 hangs at start, then stops (a silent agent after 2 min)
    version skew:      th-$((2 * DEMO_SIZE + 1)) (frontend.throttle) runs the spec version before the latest
    alarms (deploy/alarmer.toml; Alertmanager, alarmer log, kcat -C -b $BIND_HOST:$KAFKA_PORT -t ${TOPIC_PREFIX}alarms -e):
      at once          critical-requirement-failed, spec/compute-service/0 (frontend/tls-min-version),
                       repeated-failures (frontend), outlier-instances (fe-2 of the front ends,
                       host-4-dom0 of the dom0s)
      after ~1 min     requirement-failing (resource/within-capacity above 5% for 1m),
                       component-silent (health.recovery, 1m after the spec was published),
                       stale-spec-version (th-$((2 * DEMO_SIZE + 1)), 1m after the newer version landed)
EOF
}

cmd_demo_stop() {
    take_lock
    services_stop
}

# Runs the whole test suite against the stack; stops the stack afterwards if it was not
# running before.
cmd_test() {
    local was_running=1 rc=0
    cmd_status >/dev/null 2>&1 || was_running=0
    cmd_install
    cmd_up
    # The tests stop and start components themselves (fault tests): they need the lock.
    release_lock
    need_cmd cargo "install Rust (https://rustup.rs) or put cargo on PATH"
    # Where the end-to-end tests find this stack (tests/src/lib.rs).
    export SPECAUDIT_TEST_BROKERS="$BIND_HOST:$KAFKA_PORT"
    export SPECAUDIT_TEST_CLICKHOUSE="http://$BIND_HOST:$CLICKHOUSE_HTTP_PORT"
    export SPECAUDIT_TEST_ALERTMANAGER="http://$BIND_HOST:$ALERTMANAGER_PORT"
    say "running the tests (cargo test --workspace $*)"
    (cd "$REPO_DIR" && cargo test --workspace "$@") || rc=$?
    # A short fuzzing run of every target (decoders, spec parser, check compilation).
    if ((rc == 0)) && [ "$#" -eq 0 ]; then
        say "fuzzing smoke run (fuzz/smoke.sh ${SPECAUDIT_FUZZ_SECONDS:-15} s per target)"
        "$REPO_DIR/fuzz/smoke.sh" "${SPECAUDIT_FUZZ_SECONDS:-15}" || rc=$?
    fi
    if ((!was_running)); then
        cmd_down
    fi
    return "$rc"
}
