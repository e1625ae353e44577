# shellcheck shell=bash
# Apache Kafka (KRaft, one node that is both broker and controller), run from the jars that
# `stack install` copies from Maven Central, plus the topics of schemas/kafka-topics.conf.

KAFKA_POM="$STACK_DIR/kafka/pom.xml"
KAFKA_HOME="$STATE_DIR/kafka"
KAFKA_LIBS="$KAFKA_HOME/libs"
KAFKA_DATA="$KAFKA_HOME/data"
KAFKA_CONFIG="$KAFKA_HOME/server.properties"
KAFKA_CLUSTER_ID_FILE="$KAFKA_HOME/cluster.id"
KAFKA_OUT="$LOG_DIR/kafka.out"          # JVM stdout/stderr (GC warnings, crashes)
KAFKA_LOG="$LOG_DIR/kafka-server.log"   # the broker's own log (log4j2)
KAFKA_HEAP=${SPECAUDIT_KAFKA_HEAP:-768m}
TOPICS_CONF="$REPO_DIR/schemas/kafka-topics.conf"

# The broker: a capped heap and G1 with short pauses, as Kafka's own start script does.
kafka_broker_jvm_opts() {
    printf '%s\n' "-Xms256m" "-Xmx$KAFKA_HEAP" \
        -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 \
        -XX:+ExplicitGCInvokesConcurrent -XX:+ExitOnOutOfMemoryError \
        -Djava.awt.headless=true -Djava.net.preferIPv4Stack=true \
        "-Dkafka.logs.dir=$LOG_DIR" \
        "-Dlog4j2.configurationFile=$STACK_DIR/kafka/log4j2.xml"
}

# Short-lived tools (storage format, topic creation): start fast, small heap, log warnings only.
kafka_tool() {
    java -Xmx256m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC -Xshare:auto \
        "-Dlog4j2.configurationFile=$STACK_DIR/kafka/tools-log4j2.xml" \
        -cp "$KAFKA_LIBS/*" "$@"
}

# The Kafka version the pom asks for (the one property <kafka.version>).
kafka_version() {
    sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$KAFKA_POM" | head -n1
}

kafka_installed() {
    [[ -f $KAFKA_LIBS/.pom.sha256 ]] &&
        [[ $(<"$KAFKA_LIBS/.pom.sha256") == "$(sha256sum <"$KAFKA_POM" | cut -d' ' -f1)" ]]
}

# Copy the jars listed by deploy/local/kafka/pom.xml (with dependencies) into the state
# folder. Done again only when the pom changes; mvn caches downloads in ~/.m2.
kafka_install() {
    if kafka_installed; then
        info "kafka $(kafka_version) jars present ($KAFKA_LIBS)"
        return 0
    fi
    # replacing jars under a running broker could crash it
    if kafka_pid >/dev/null; then
        die "the Kafka jars need (re)fetching but kafka is running: deploy/local/stack down kafka, then install"
    fi
    need_cmd java "install a Java 17+ runtime (Debian: apt-get install openjdk-17-jre-headless)"
    need_cmd mvn "install Maven (Debian: apt-get install maven)"
    local major
    major=$(java -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p')
    [[ ${major%%.*} -ge 17 ]] 2>/dev/null || die "Kafka 4 needs Java 17 or newer; java here is '${major:-unknown}'"
    say "fetching Kafka $(kafka_version) jars from Maven Central (mvn)"
    local tmp="$KAFKA_HOME/libs.tmp"
    rm -rf "$tmp"
    mkdir -p "$KAFKA_HOME"
    if ! mvn -q -B -f "$KAFKA_POM" dependency:copy-dependencies -DoutputDirectory="$tmp" \
        >"$KAFKA_HOME/mvn.log" 2>&1; then
        show_log_tail "$KAFKA_HOME/mvn.log" 40
        rm -rf "$tmp"
        die "downloading the Kafka jars with mvn failed (full output: $KAFKA_HOME/mvn.log)"
    fi
    [[ -f $tmp/kafka_2.13-$(kafka_version).jar ]] || die "mvn ran but kafka_2.13-$(kafka_version).jar is missing in $tmp"
    sha256sum <"$KAFKA_POM" | cut -d' ' -f1 >"$tmp/.pom.sha256"
    rm -rf "$KAFKA_LIBS"
    mv "$tmp" "$KAFKA_LIBS"
    info "$(find "$KAFKA_LIBS" -name '*.jar' | wc -l) jars in $KAFKA_LIBS"
}

# A cluster id as `kafka-storage random-uuid` prints it (16 random bytes, URL-safe base64
# without padding, not starting with '-'), without starting a JVM for it.
kafka_new_cluster_id() {
    local id=-
    while [[ $id == -* ]]; do
        id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')
    done
    printf '%s\n' "$id"
}

kafka_pid() { our_pid kafka "$KAFKA_CONFIG"; }

# Does the broker answer a metadata request?
kafka_healthy() {
    kcat -L -b "$BIND_HOST:$KAFKA_PORT" -m 3 -t __no_such_topic_probe >/dev/null 2>&1
}

kafka_start() {
    local pid
    if pid=$(kafka_pid); then
        info "kafka already running (pid $pid)"
        # it may still be starting (another `up` in progress): return once it answers
        wait_until kafka "${SPECAUDIT_KAFKA_START_TIMEOUT:-60}" "$pid" "$KAFKA_OUT:$KAFKA_LOG" kafka_healthy
        return 0
    fi
    kafka_installed || die "Kafka jars missing or outdated: run deploy/local/stack install"
    need_cmd kcat "run deploy/local/stack install"
    require_free_ports kafka "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT"
    say "starting kafka $(kafka_version) on $BIND_HOST:$KAFKA_PORT (controller :$KAFKA_CONTROLLER_PORT)"
    mkdir -p "$KAFKA_DATA" "$LOG_DIR"
    render_template "$STACK_DIR/kafka/server.properties.in" "$KAFKA_CONFIG" \
        "PORT=$KAFKA_PORT" "CONTROLLER_PORT=$KAFKA_CONTROLLER_PORT" "DATA_DIR=$KAFKA_DATA"

    # Format the KRaft storage once. The cluster id is kept in the state folder, and
    # --ignore-formatted makes a second format a no-op rather than an error or a wipe.
    if [[ ! -f $KAFKA_DATA/meta.properties ]]; then
        [[ -s $KAFKA_CLUSTER_ID_FILE ]] || kafka_new_cluster_id >"$KAFKA_CLUSTER_ID_FILE"
        info "formatting storage (cluster id $(<"$KAFKA_CLUSTER_ID_FILE"))"
        kafka_tool kafka.tools.StorageTool format --ignore-formatted \
            -t "$(<"$KAFKA_CLUSTER_ID_FILE")" -c "$KAFKA_CONFIG" >>"$KAFKA_OUT" 2>&1 ||
            { show_log_tail "$KAFKA_OUT"; die "formatting Kafka storage failed"; }
    fi

    local opts
    mapfile -t opts < <(kafka_broker_jvm_opts)
    spawn kafka "$KAFKA_OUT" java "${opts[@]}" -cp "$KAFKA_LIBS/*" kafka.Kafka "$KAFKA_CONFIG"
    pid=$(<"$(pid_file kafka)")
    wait_until kafka "${SPECAUDIT_KAFKA_START_TIMEOUT:-90}" "$pid" "$KAFKA_OUT:$KAFKA_LOG" kafka_healthy
    info "kafka up (pid $pid)"
}

kafka_stop() {
    # a clean shutdown of a single KRaft node takes a few seconds; give it time before SIGKILL
    stop_pid kafka "$KAFKA_CONFIG" "${SPECAUDIT_KAFKA_STOP_TIMEOUT:-60}"
}

kafka_status() {
    local pid state=stopped
    pid=$(kafka_pid) && { state=running; kafka_healthy || state=unhealthy; }
    status_line kafka "$state" "${pid:--}" "$KAFKA_PORT,$KAFKA_CONTROLLER_PORT" "$(kafka_version)"
    [[ $state == running ]]
}

# ---- topics ----

# Topics that exist now (full names), one per line.
kafka_existing_topics() {
    kcat -L -b "$BIND_HOST:$KAFKA_PORT" -m 10 2>/dev/null |
        sed -n 's/^ *topic "\([^"]*\)" with .*/\1/p'
}

# Java's source launcher (java File.java) needs the jdk.compiler module, i.e. a JDK.
java_has_compiler() {
    java --list-modules 2>/dev/null | grep -q '^jdk.compiler@'
}

# Create every topic of schemas/kafka-topics.conf that does not exist yet. Existing topics
# are left alone (partitions and configs unchanged). JVM start-up dominates the cost, so the
# missing topics are created in one JVM (kafka/CreateTopics.java, about 2 s for all) when a
# JDK is there, else with Kafka's TopicCommand, one JVM per topic, in parallel (about 7 s).
topics_ensure() {
    [[ -f $TOPICS_CONF ]] || die "$TOPICS_CONF not found"
    local existing name partitions configs rest n=0
    existing=$(kafka_existing_topics) || existing=
    local -a triples=() names=()
    while read -r name partitions configs rest; do
        [[ -z $name || $name == \#* ]] && continue
        [[ $partitions =~ ^[1-9][0-9]*$ && -n $configs && -z $rest ]] ||
            die "$TOPICS_CONF: expected 'NAME PARTITIONS CONFIGS', got: $name $partitions $configs $rest"
        n=$((n + 1))
        grep -qxF -- "$TOPIC_PREFIX$name" <<<"$existing" && continue
        triples+=("$TOPIC_PREFIX$name" "$partitions" "$configs")
        names+=("$TOPIC_PREFIX$name")
    done <"$TOPICS_CONF"
    if ((${#names[@]} == 0)); then
        info "all $n topics exist"
        return 0
    fi
    say "creating topics: ${names[*]}"
    local out
    out=$(mktemp)
    if java_has_compiler; then
        kafka_tool "$STACK_DIR/kafka/CreateTopics.java" "$BIND_HOST:$KAFKA_PORT" "${triples[@]}" >"$out" 2>&1 ||
            { cat "$out" >&2; rm -f "$out"; die "topic creation failed"; }
    else
        topics_create_with_topiccommand "$out" "${triples[@]}"
    fi
    rm -f "$out"
    info "$n topics ready (prefix '$TOPIC_PREFIX')"
}

# Fallback without a JDK: TopicCommand per topic, in parallel. Args: OUTFILE (NAME PARTITIONS CONFIGS)...
topics_create_with_topiccommand() {
    local out=$1 i=0 failed=0 kv; shift
    local -a pids=() names=()
    while (($# >= 3)); do
        local args=(--bootstrap-server "$BIND_HOST:$KAFKA_PORT" --create --if-not-exists
            --topic "$1" --partitions "$2" --replication-factor 1)
        if [[ $3 != - ]]; then
            IFS=, read -ra kvs <<<"$3"
            for kv in "${kvs[@]}"; do args+=(--config "$kv"); done
        fi
        kafka_tool org.apache.kafka.tools.TopicCommand "${args[@]}" >"$out.$i" 2>&1 &
        pids+=($!)
        names+=("$1")
        i=$((i + 1))
        shift 3
    done
    for i in "${!pids[@]}"; do
        if ! wait "${pids[$i]}"; then
            printf 'error: creating topic %s failed:\n' "${names[$i]}" >&2
            cat "$out.$i" >&2
            failed=1
        fi
        rm -f "$out.$i"
    done
    ((failed == 0)) || die "topic creation failed"
}
