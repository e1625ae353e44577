# shellcheck shell=bash
# Debian packages of the local stack. The packages' own system services are never used:
# the stack runs the binaries itself with configs in the state folder.

# chromium and chromium-driver: the reporter's browser test (tests/tests/reporter_browser.rs)
DEB_PACKAGES=(clickhouse-server clickhouse-client prometheus-alertmanager kcat chromium chromium-driver)
# system services shipped by those packages, which would take our ports, with the user
# and command line the packages run them as (ours run as the invoking user, with
# configs in the state folder)
DEB_SERVICES=(clickhouse-server prometheus-alertmanager)
declare -A DEB_SERVICE_USER=([clickhouse-server]=clickhouse [prometheus-alertmanager]=prometheus)
declare -A DEB_SERVICE_CMD=([clickhouse-server]=/usr/sbin/clickhouse-server [prometheus-alertmanager]=/usr/bin/prometheus-alertmanager)

deb_installed() {
    [[ $(dpkg-query -W -f='${Status}' "$1" 2>/dev/null) == "install ok installed" ]]
}

packages_install() {
    local missing=() p
    for p in "${DEB_PACKAGES[@]}"; do
        deb_installed "$p" || missing+=("$p")
    done
    if ((${#missing[@]} == 0)); then
        info "Debian packages present (${DEB_PACKAGES[*]})"
        return 0
    fi
    need_cmd apt-get "this needs a Debian system (missing packages: ${missing[*]})"
    local sudo=()
    if ((EUID != 0)); then
        need_cmd sudo "run as root to install: ${missing[*]}"
        sudo=(sudo)
    fi
    say "installing Debian packages: ${missing[*]}"

    # Keep the packages' services from starting during installation: a policy-rc.d that
    # answers 101 ("action not allowed") makes invoke-rc.d skip them. Only put one in place
    # if the system has none, and remove it afterwards.
    local policy=/usr/sbin/policy-rc.d our_policy=0
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\n# temporary, from specaudit deploy/local/stack install\nexit 101\n' |
            "${sudo[@]}" tee "$policy" >/dev/null
        "${sudo[@]}" chmod 755 "$policy"
        our_policy=1
    fi
    local rc=0
    {
        "${sudo[@]}" apt-get update -q &&
            "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
                --no-install-recommends "${missing[@]}"
    } >"$STATE_DIR/apt.log" 2>&1 || rc=$?
    ((our_policy)) && "${sudo[@]}" rm -f "$policy"
    if ((rc != 0)); then
        show_log_tail "$STATE_DIR/apt.log" 30
        die "apt-get install failed (full output: $STATE_DIR/apt.log)"
    fi
    for p in "${missing[@]}"; do
        deb_installed "$p" || die "package $p is still not installed after apt-get (see $STATE_DIR/apt.log)"
    done
    packages_disable_services
}

# Stop and disable the system services the packages brought, in case they were started
# anyway (e.g. by systemd when no policy-rc.d applied): ours use the same ports.
packages_disable_services() {
    local svc sudo=()
    ((EUID == 0)) || sudo=(sudo)
    for svc in "${DEB_SERVICES[@]}"; do
        if [[ -d /run/systemd/system ]]; then
            "${sudo[@]}" systemctl disable --now "$svc" >/dev/null 2>&1 || true
        else
            # No systemd (a container): the policy-rc.d above kept the services from
            # starting. If one runs anyway, stop exactly that process: the init scripts'
            # own `stop` would also kill every other clickhouse-server, ours included.
            local pid
            for pid in $(pgrep -u "${DEB_SERVICE_USER[$svc]}" -f "^${DEB_SERVICE_CMD[$svc]}( |\$)" 2>/dev/null); do
                "${sudo[@]}" kill -TERM "$pid" 2>/dev/null || true
            done
            # and remove the boot-time links (systemctl disable works offline)
            if command -v systemctl >/dev/null 2>&1; then
                "${sudo[@]}" systemctl disable "$svc" >/dev/null 2>&1 || true
            fi
        fi
    done
    info "system services ${DEB_SERVICES[*]} left stopped and disabled"
}
