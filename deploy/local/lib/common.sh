# shellcheck shell=bash
# Shared helpers for deploy/local/stack: messages, state paths, pid files, ports, waiting.
# Sourced by the stack script after STACK_DIR, REPO_DIR and STATE_DIR are set.

# ---- layout of the state folder (everything the stack writes lives here) ----
RUN_DIR="$STATE_DIR/run"     # <component>.pid
LOG_DIR="$STATE_DIR/logs"    # <component>.out (stdout/stderr) and the components' own logs

# ---- ports (all bound to 127.0.0.1) ----
BIND_HOST=127.0.0.1
KAFKA_PORT=${SPECAUDIT_KAFKA_PORT:-9092}
KAFKA_CONTROLLER_PORT=${SPECAUDIT_KAFKA_CONTROLLER_PORT:-9094}
CLICKHOUSE_HTTP_PORT=${SPECAUDIT_CLICKHOUSE_HTTP_PORT:-8123}
CLICKHOUSE_TCP_PORT=${SPECAUDIT_CLICKHOUSE_TCP_PORT:-9000}
ALERTMANAGER_PORT=${SPECAUDIT_ALERTMANAGER_PORT:-9093}
TOPIC_PREFIX=${SPECAUDIT_TOPIC_PREFIX:-specaudit.}

# ---- messages ----
say()  { printf '==> %s\n' "$*"; }
info() { printf '    %s\n' "$*"; }
warn() { printf 'warning: %s\n' "$*" >&2; }
die()  { printf 'error: %s\n' "$*" >&2; exit 1; }

# Print the last lines of a log file to stderr (used when a component fails to start).
show_log_tail() {
    local file=$1 n=${2:-30}
    if [[ -s $file ]]; then
        printf -- '--- last %s lines of %s ---\n' "$n" "$file" >&2
        tail -n "$n" "$file" >&2
        printf -- '---\n' >&2
    fi
}

show_log_tails() {
    local f
    local -a files
    IFS=: read -ra files <<<"$1"
    for f in "${files[@]}"; do show_log_tail "$f" 25; done
}

# Fill a template: @NAME@ placeholders are replaced by the values given as NAME=value args.
# Values are paths and numbers; '|' and '&' must not occur in them.
render_template() {
    local src=$1 dst=$2; shift 2
    local args=() kv
    for kv in "$@"; do
        args+=(-e "s|@${kv%%=*}@|${kv#*=}|g")
    done
    sed "${args[@]}" "$src" >"$dst.tmp"
    if grep -q '@[A-Z_]*@' "$dst.tmp"; then
        die "template $src has unfilled placeholders: $(grep -o '@[A-Z_]*@' "$dst.tmp" | sort -u | tr '\n' ' ')"
    fi
    mv "$dst.tmp" "$dst"
}

# ---- pid files ----
# A pid file is only trusted if the process still runs and its command line contains
# a marker unique to this state folder (its config path), so a recycled pid or another
# copy of the same program is never taken for ours.
pid_file() { printf '%s/%s.pid' "$RUN_DIR" "$1"; }

# our_pid COMPONENT MARKER -> prints the pid and returns 0 if our process is running
our_pid() {
    local file pid
    file=$(pid_file "$1")
    [[ -f $file ]] || return 1
    pid=$(<"$file")
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    [[ -r /proc/$pid/cmdline ]] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$2" || return 1
    printf '%s' "$pid"
}

# stop_pid COMPONENT MARKER TIMEOUT: SIGTERM, wait up to TIMEOUT s, then SIGKILL.
stop_pid() {
    local name=$1 marker=$2 timeout=${3:-30} pid i
    if ! pid=$(our_pid "$name" "$marker"); then
        info "$name is not running"
        rm -f "$(pid_file "$name")"
        return 0
    fi
    say "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < timeout * 10; i++)); do
        [[ -d /proc/$pid ]] || break
        # a zombie (reaped by nobody yet) counts as gone
        [[ $(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) == Z ]] && break
        sleep 0.1
    done
    if [[ -d /proc/$pid ]] && [[ $(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) != Z ]]; then
        warn "$name did not stop within ${timeout}s, sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        sleep 0.5
    fi
    rm -f "$(pid_file "$name")"
}

# Start a command in the background, detached from this shell (own session, no stdin,
# output to a log file), and record its pid. setsid execs in place (the child is not a
# process group leader), so $! is the component's own pid.
spawn() {
    local name=$1 out=$2; shift 2
    mkdir -p "$RUN_DIR" "$LOG_DIR"
    printf '\n=== %s starting %s\n' "$(date -Is)" "$name" >>"$out"
    # 9>&-: do not pass on the lock fd of take_lock, or the lock would live as long as this process
    setsid nohup "$@" >>"$out" 2>&1 </dev/null 9>&- &
    printf '%s\n' "$!" >"$(pid_file "$name")"
}

# ---- ports ----
# Is anything listening on PORT (any address)?
port_in_use() {
    [[ -n $(ss -Hltn "sport = :$1" 2>/dev/null) ]]
}

# Fail clearly if one of the ports is already taken (by something that is not us:
# callers check "already running" first).
require_free_ports() {
    local name=$1 port; shift
    for port in "$@"; do
        if port_in_use "$port"; then
            printf 'error: cannot start %s: port %s is already in use:\n' "$name" "$port" >&2
            ss -Hltnp "sport = :$port" >&2 || true
            printf 'stop whatever holds it, or pick another port (see deploy/local/stack help)\n' >&2
            exit 1
        fi
    done
}

# Can we connect to 127.0.0.1:PORT?
port_open() {
    (exec 3<>"/dev/tcp/$BIND_HOST/$1") 2>/dev/null
}

# wait_until NAME TIMEOUT PID LOGS CHECK...: poll CHECK until it succeeds; fail (showing the
# tails of LOGS, a ':'-separated list of files) if the process dies or the timeout passes.
wait_until() {
    local name=$1 timeout=$2 pid=$3 logs=$4; shift 4
    local deadline=$((SECONDS + timeout))
    while ! "$@" >/dev/null 2>&1; do
        if [[ ! -d /proc/$pid ]] || [[ $(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) == Z ]]; then
            printf 'error: %s exited during start-up\n' "$name" >&2
            show_log_tails "$logs"
            rm -f "$(pid_file "$name")"
            exit 1
        fi
        if ((SECONDS >= deadline)); then
            printf 'error: %s did not become healthy within %ss (pid %s still running)\n' "$name" "$timeout" "$pid" >&2
            show_log_tails "$logs"
            exit 1
        fi
        sleep 0.25
    done
}

# need_cmd CMD HINT: fail with a hint if a command is missing.
need_cmd() {
    command -v "$1" >/dev/null 2>&1 || die "$1 not found: $2"
}
