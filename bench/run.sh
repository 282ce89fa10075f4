#!/usr/bin/env bash
# The benchmark: tern (from C, two ways) against libcurl (two drivers) and a plain
# hyper-util client, on loopback against nginx. One command, from a clean clone, as root
# on Debian (it installs nginx, the nginx echo module, libcurl's development package and
# wrk when missing):
#
#   bench/run.sh                  full run: 5 rounds, about 12 minutes on 2 cores (builds included)
#   bench/run.sh --smoke          1 round, a few hundred requests per workload; exits
#                                 non-zero if any client fails (CI runs this)
#
# Options:
#   --rounds N          rounds (default 5; smoke 1)
#   --workloads a,b     only these workloads (names as in the table: hello-1, bulk, ...)
#   --clients a,b       only these clients (tern_cb, tern_queued, curl_epoll, curl_poll,
#                       hyper, wrk)
#   --profile P         tern and hyper-client build profile: release (default) or
#                       debug (the default with --smoke)
#   --no-build          use the binaries already built
#
# Each round runs every workload, and for each workload every client in turn (the order
# rotated by one each round), so slow drifts of the machine hit every client alike.
# nginx runs with its own configuration (bench/nginx/) on 127.0.0.1:19080-19089, one
# worker, with a private CA made at start; it is stopped by pid at the end. The raw
# results go to target/bench/raw-<date>.txt, the report (markdown tables of medians
# with min-max, ratios to hyper and to libcurl round by round, targets met or missed)
# to target/bench/results-<date>.md and stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
log() { printf 'bench: %s\n' "$*" >&2; }
die() { printf 'bench: ERROR: %s\n' "$*" >&2; exit 1; }
t_start=$(date +%s)

# --- options -------------------------------------------------------------------------
smoke=0
rounds=
only_workloads=
only_clients=
profile=
build=1
while (($#)); do
    case $1 in
        --smoke) smoke=1 ;;
        --rounds) rounds=${2:?}; shift ;;
        --workloads) only_workloads=${2:?}; shift ;;
        --clients) only_clients=${2:?}; shift ;;
        --profile) profile=${2:?}; shift ;;
        --no-build) build=0 ;;
        -h | --help) sed -n '2,/^set -euo/p' "$root/bench/run.sh" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown option $1 (see --help)" ;;
    esac
    shift
done
# Smoke checks that everything still works, not speed: it uses the debug builds that
# scripts/test.sh has just made, unless told otherwise.
[[ -n $profile ]] || profile=$([[ $smoke == 1 ]] && echo debug || echo release)
[[ $profile == release || $profile == debug ]] || die "--profile: release or debug"
[[ -n $rounds ]] || rounds=$((smoke ? 1 : 5))

BENCH=$root/target/bench
DIR=$BENCH/run            # nginx config, PKI, files, logs
mkdir -p "$BENCH" "$DIR"
stamp=$(date -u +%Y%m%d-%H%M%S)
((smoke)) && stamp=$stamp-smoke
RAW=$BENCH/raw-$stamp.txt
REPORT=$BENCH/results-$stamp.md
LOGS=$DIR/logs
mkdir -p "$LOGS"
: >"$RAW"

PORT_HTTP=19080
PORT_TLS=19443
PORT_H2=19444
PORT_STATUS=19089
ECHO_MODULE_SO=/usr/lib/nginx/modules/ngx_http_echo_module.so

# --- what it needs from the system ---------------------------------------------------
t_install=$(date +%s)
missing=()
[[ -x /usr/sbin/nginx ]] || command -v nginx >/dev/null 2>&1 || missing+=(nginx)
[[ -e $ECHO_MODULE_SO ]] || missing+=(libnginx-mod-http-echo)
[[ -e /usr/include/curl/curl.h || -e /usr/include/x86_64-linux-gnu/curl/curl.h ]] \
    || pkg-config --exists libcurl 2>/dev/null || missing+=(libcurl4-openssl-dev)
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
for pair in curl:curl openssl:openssl gcc:gcc make:make pkg-config:pkg-config; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
done
if ((${#missing[@]})); then
    ((EUID == 0)) || die "missing ${missing[*]}: run as root, or apt-get install them"
    # Keep Debian's nginx service from starting on port 80 during the install.
    own_policy=0
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        own_policy=1
    fi
    log "installing ${missing[*]} (apt log: $DIR/apt.log)"
    export DEBIAN_FRONTEND=noninteractive
    if ! { apt-get update -q && apt-get install -y -q --no-install-recommends "${missing[@]}"; } \
        >"$DIR/apt.log" 2>&1; then
        ((own_policy)) && rm -f /usr/sbin/policy-rc.d
        tail -n 20 "$DIR/apt.log" >&2
        die "apt-get install ${missing[*]} failed"
    fi
    ((own_policy)) && rm -f /usr/sbin/policy-rc.d
fi
NGINX=$(command -v nginx 2>/dev/null || echo /usr/sbin/nginx)
t_install=$(($(date +%s) - t_install))

# --- build ---------------------------------------------------------------------------
t_build=$(date +%s)
cargo_flag=()
[[ $profile == release ]] && cargo_flag=(--release)
CLIENTS_DIR=$BENCH/clients/$profile
HYPER_TARGET=$BENCH/hyper-client
HYPER_BIN=$HYPER_TARGET/$profile/hyper_client
if ((build)); then
    log "cargo build ${cargo_flag[*]} (libtern)"
    cargo build --quiet "${cargo_flag[@]}"
    log "cargo build ${cargo_flag[*]} (bench/hyper-client)"
    cargo build --quiet "${cargo_flag[@]}" --manifest-path bench/hyper-client/Cargo.toml \
        --target-dir "$HYPER_TARGET"
    log "make -C bench/clients PROFILE=$profile"
    make --quiet -C bench/clients PROFILE="$profile" BUILD_DIR="$CLIENTS_DIR" >/dev/null
fi
t_build=$(($(date +%s) - t_build))
for b in "$CLIENTS_DIR"/{tern_cb,tern_queued,curl_epoll,curl_poll} "$HYPER_BIN"; do
    [[ -x $b ]] || die "$b not built"
done

# --- workloads -----------------------------------------------------------------------
# name | scheme+port | path | requests (full) | requests (smoke) | concurrency (full)
#      | concurrency (smoke) | flags | metric | body bytes | title
H=http://127.0.0.1:$PORT_HTTP
S=https://127.0.0.1:$PORT_TLS
S2=https://127.0.0.1:$PORT_H2
MIB=1048576
WORKLOADS=(
    "hello-1|$H/hello|20000|300|1|1||rps|13|HTTP/1.1 /hello, concurrency 1"
    "hello-16|$H/hello|100000|400|16|16||rps|13|HTTP/1.1 /hello, concurrency 16"
    "hello-256|$H/hello|100000|512|256|256||rps|13|HTTP/1.1 /hello, concurrency 256"
    "bulk|$H/bulk|8|2|1|1||mibps|$((256 * MIB))|HTTP/1.1 /bulk (256 MiB), concurrency 1, body kept in memory"
    "https-16|$S/hello|60000|400|16|16||rps|13|HTTPS (TLS 1.3, ALPN http/1.1) /hello, concurrency 16, connections reused"
    "https-new-16|$S/hello|3000|200|16|16|--no-reuse|rps|13|HTTPS /hello, concurrency 16, a new connection per request (full handshakes/s)"
    "h2-256|$S2/hello|100000|512|256|256|--http2|rps|13|HTTP/2 over TLS /hello, 256 streams on one connection"
    "inflight-10k|$H/sleep|10000|1000|10000|1000||mem|6|10,000 requests in flight at once (1,000 in smoke), each held 1 s by the server"
    "stream-1g|$H/big|1|1|1|1|--stream|mibps|$((1024 * MIB))|1 GiB streamed download (64 MiB in smoke), body counted and dropped"
)
CLIENTS=(tern_cb tern_queued curl_epoll curl_poll hyper)
WRK_WORKLOADS=" hello-1 hello-16 hello-256 https-16 "

selected() { # selected LIST NAME
    [[ -z $1 ]] || [[ ",$1," == *",$2,"* ]]
}

# --- nginx ---------------------------------------------------------------------------
NGINX_PID=
stop_nginx() {
    [[ -n $NGINX_PID ]] || return 0
    if kill -0 "$NGINX_PID" 2>/dev/null; then
        kill -TERM "$NGINX_PID" 2>/dev/null || true
        for _ in $(seq 50); do
            kill -0 "$NGINX_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -0 "$NGINX_PID" 2>/dev/null && kill -KILL "$NGINX_PID" 2>/dev/null
    fi
    NGINX_PID=
}
trap stop_nginx EXIT
trap 'exit 130' INT TERM

# Hold 10,000 connections on each side.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
NOFILE=$(ulimit -n)
[[ $NOFILE == unlimited ]] && NOFILE=65536
((NOFILE > 65536)) && NOFILE=65536
((NOFILE >= 20000)) || log "open-files limit is $NOFILE (< 20000): the 10k workload may fail"

make_pki() {
    local pki=$DIR/pki
    rm -rf "$pki"
    mkdir -p "$pki"
    (
        cd "$pki"
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
            -keyout ca-key.pem -out ca.pem -days 30 -subj "/CN=tern bench CA" \
            -addext "basicConstraints=critical,CA:TRUE" \
            -addext "keyUsage=critical,keyCertSign,cRLSign"
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
            -keyout server-key.pem -out server.csr -subj "/CN=localhost"
        printf '%s\n' "basicConstraints=critical,CA:FALSE" \
            "keyUsage=critical,digitalSignature" "extendedKeyUsage=serverAuth" \
            "subjectAltName=DNS:localhost,IP:127.0.0.1" >server-ext.cnf
        openssl x509 -req -in server.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial \
            -days 30 -extfile server-ext.cnf -out server.pem
        cp server.pem server-chain.pem
        openssl verify -CAfile ca.pem server.pem
    ) >"$LOGS/pki.log" 2>&1 || { cat "$LOGS/pki.log" >&2; die "making the CA failed"; }
}

make_files() {
    local www=$DIR/www
    mkdir -p "$www"
    # Sparse files of zeros: no disk, served from the page cache.
    rm -f "$www/bulk" "$www/big" "$www/mid"
    truncate -s 256M "$www/bulk"
    truncate -s 1G "$www/big"
    truncate -s 64M "$www/mid"
}

write_nginx_conf() {
    local user_line="" h2_listen=" http2" h2_on="" v
    ((EUID == 0)) && user_line="user root;"
    v=$("$NGINX" -v 2>&1)
    v=${v##*nginx/}
    v=${v%% *}
    # nginx 1.25.1 moved HTTP/2 from a listen parameter to "http2 on".
    if [[ $(printf '%s\n%s\n' 1.25.1 "$v" | sort -V | head -n 1) == 1.25.1 ]]; then
        h2_listen=""
        h2_on="http2 on;"
    fi
    mkdir -p "$DIR/tmp"
    cp bench/nginx/locations.conf "$DIR/locations.conf"
    sed -e "s|@DIR@|$DIR|g" -e "s|@PORT_HTTP@|$PORT_HTTP|g" -e "s|@PORT_TLS@|$PORT_TLS|g" \
        -e "s|@PORT_H2@|$PORT_H2|g" -e "s|@PORT_STATUS@|$PORT_STATUS|g" \
        -e "s|@NOFILE@|$NOFILE|g" -e "s|@BACKLOG@|4096|g" \
        -e "s|@LOAD_ECHO@|load_module $ECHO_MODULE_SO;|" -e "s|@USER_LINE@|$user_line|" \
        -e "s|@H2_LISTEN@|$h2_listen|" -e "s|@H2_ON@|$h2_on|" \
        bench/nginx/nginx.conf.in >"$DIR/nginx.conf"
}

start_nginx() {
    # A leftover of an interrupted run (its master's command line names our config).
    local old
    if [[ -s $DIR/nginx.pid ]] && read -r old <"$DIR/nginx.pid" && [[ $old =~ ^[0-9]+$ ]] \
        && tr '\0' ' ' <"/proc/$old/cmdline" 2>/dev/null | grep -qF -- "$DIR/nginx.conf"; then
        log "stopping the nginx left by an earlier run (pid $old)"
        NGINX_PID=$old
        stop_nginx
    fi
    rm -f "$DIR/nginx.pid"
    "$NGINX" -t -q -c "$DIR/nginx.conf" -p "$DIR" 2>"$LOGS/nginx-t.log" \
        || { cat "$LOGS/nginx-t.log" >&2; die "nginx rejected $DIR/nginx.conf"; }
    "$NGINX" -c "$DIR/nginx.conf" -p "$DIR" 2>>"$LOGS/nginx-start.log" \
        || { cat "$LOGS/nginx-start.log" >&2; die "nginx did not start (ports 19080-19089 busy?)"; }
    for _ in $(seq 100); do
        [[ -s $DIR/nginx.pid ]] && break
        sleep 0.05
    done
    read -r NGINX_PID <"$DIR/nginx.pid" || die "nginx wrote no pid"
    for _ in $(seq 100); do
        curl -sf -o /dev/null "http://127.0.0.1:$PORT_STATUS/status" && break
        sleep 0.05
    done
    curl -sf -o /dev/null "$H/hello" || die "nginx does not answer on $PORT_HTTP"
    [[ $(curl -sf --cacert "$DIR/pki/ca.pem" "$S/hello") == "Hello, world!" ]] \
        || die "nginx does not answer on $PORT_TLS with the private CA"
}

# Connections nginx has accepted so far (stub_status "accepts").
accepts() {
    curl -sf "http://127.0.0.1:$PORT_STATUS/status" | awk 'NR == 3 { print $1 }'
}

# --- the machine ---------------------------------------------------------------------
curl_version=$("$CLIENTS_DIR/curl_epoll" --version)
tern_version=$("$CLIENTS_DIR/tern_cb" --version)
nginx_version=$("$NGINX" -v 2>&1 | sed 's/^nginx version: //')
wrk_version=$(wrk --version 2>&1 | head -n 1 | awk '{ print $1, $2 }' || true)
cpu_model=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
{
    echo "META date=\"$(date -u '+%Y-%m-%d %H:%M UTC')\" mode=$([[ $smoke == 1 ]] && echo smoke || echo full) rounds=$rounds profile=$profile"
    echo "META nproc=$(nproc) cpu=\"$cpu_model\" kernel=\"$(uname -r)\" mem=\"$(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)\""
    echo "META tern=\"$tern_version\" curl=\"$curl_version\" nginx=\"$nginx_version\" wrk=\"$wrk_version\" rustc=\"$(rustc -V 2>/dev/null)\""
    echo "META load_start=\"$(cut -d' ' -f1-3 /proc/loadavg)\""
    echo "META tern_lib=\"$root/target/$profile/libtern.so\" curl_bin=\"$CLIENTS_DIR/curl_epoll\""
} >>"$RAW"

# --- run -----------------------------------------------------------------------------
make_pki
make_files
write_nginx_conf
start_nginx
log "nginx $nginx_version on 127.0.0.1:$PORT_HTTP (http), $PORT_TLS (https, h1), $PORT_H2 (https, h2); pid $NGINX_PID"
log "$curl_version"

failures=0
t_bench=$(date +%s)
run_timeout=$((smoke ? 120 : 300))
for ((round = 1; round <= rounds; round++)); do
    log "round $round of $rounds"
    for spec in "${WORKLOADS[@]}"; do
        IFS='|' read -r name url n_full n_smoke c_full c_smoke flags metric body title <<<"$spec"
        selected "$only_workloads" "$name" || continue
        n=$n_full c=$c_full
        if ((smoke)); then
            n=$n_smoke c=$c_smoke
            [[ $name == stream-1g ]] && { url=$H/mid; body=$((64 * MIB)); }
        fi
        ((round == 1)) && echo "WORKLOAD name=$name requests=$n concurrency=$c metric=$metric body=$body flags=\"$flags\" title=\"$title\"" >>"$RAW"
        cacert=()
        [[ $url == https* ]] && cacert=(--cacert "$DIR/pki/ca.pem")
        # This round's order: rotated by one each round.
        order=()
        for ((i = 0; i < ${#CLIENTS[@]}; i++)); do
            order+=("${CLIENTS[$(((i + round - 1) % ${#CLIENTS[@]}))]}")
        done
        for client in "${order[@]}"; do
            selected "$only_clients" "$client" || continue
            if [[ $client == hyper ]]; then bin=$HYPER_BIN; else bin=$CLIENTS_DIR/$client; fi
            # shellcheck disable=SC2206 # flags are words
            args=(--url "$url" --requests "$n" --concurrency "$c" "${cacert[@]}" $flags)
            before=$(accepts)
            set +e
            timeout "$run_timeout" "$bin" "${args[@]}" >"$LOGS/$name-$client.out" \
                2>"$LOGS/$name-$client.err"
            rc=$?
            set -e
            line=$(grep -m 1 '^RESULT ' "$LOGS/$name-$client.out" || true)
            after=$(accepts)
            conns=$((after - before - 1))
            [[ -n $line ]] || line="RESULT client=$client requests=$n ok=0 failed=$n"
            echo "RUN round=$round workload=$name rc=$rc conns=$conns ${line#RESULT }" >>"$RAW"
            if [[ $rc != 0 ]]; then
                failures=$((failures + 1))
                log "FAILED: $client on $name (exit $rc): ${line#RESULT }"
                tail -n 5 "$LOGS/$name-$client.err" >&2 || true
            fi
        done
        # wrk: the server's ceiling on the /hello workloads.
        if [[ $WRK_WORKLOADS == *" $name "* ]] && selected "$only_clients" wrk; then
            threads=$((c < 2 ? 1 : 2))
            secs=$((smoke ? 1 : 2))
            set +e
            out=$(wrk -t "$threads" -c "$c" -d "${secs}s" "$url" 2>&1)
            rc=$?
            set -e
            rps=$(awk '/^Requests\/sec:/ { print $2 }' <<<"$out")
            errs=$(awk '/Non-2xx|Socket errors/ { print }' <<<"$out" | tr '\n' ' ')
            echo "RUN round=$round workload=$name rc=$rc conns=$c client=wrk rps=${rps:-0} seconds=$secs wrk_errors=\"$errs\"" >>"$RAW"
            [[ -n $rps && $rc == 0 ]] || log "wrk failed on $name: $out"
        fi
    done
done
t_bench=$(($(date +%s) - t_bench))
stop_nginx

{
    echo "META load_end=\"$(cut -d' ' -f1-3 /proc/loadavg)\""
    echo "META time_install=$t_install time_build=$t_build time_bench=$t_bench time_total=$(($(date +%s) - t_start))"
} >>"$RAW"

check=()
((smoke)) && check=(--check)
set +e
python3 bench/report.py "${check[@]}" "$RAW" >"$REPORT"
report_rc=$?
set -e
cat "$REPORT"
log "report: $REPORT (raw: $RAW)"
if ((failures)) || ((report_rc)); then
    log "$failures client run(s) failed; report check exit $report_rc"
    exit 1
fi
