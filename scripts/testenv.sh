#!/usr/bin/env bash
# Local test environment for tern: real servers on loopback high ports.
#
#   scripts/testenv.sh start   install missing packages (apt; the WebSocket peer's
#                              `websockets` with pip into $DIR/venv), generate a test
#                              PKI and content, (re)start nginx, the proxies, the DNS
#                              and WebSocket servers below, wait until every one answers
#                              a real request, write $TERN_TESTENV_DIR/env.sh
#                              and print its path on stdout.
#   scripts/testenv.sh stop    stop everything by pid (TERM, up to 5 s, then KILL);
#                              files stay.
#   scripts/testenv.sh status  report each server; exit 0 if all are running.
#
# Servers (all on 127.0.0.1; nginx also on [::1] for the plain HTTP port):
#   nginx       18080 http, 18081 h2c, 18443-18448 https variants
#   squid       13128 HTTP proxy with basic auth (tern / "p@ss word"),
#               13129 without auth; CONNECT to 127.0.0.1:1024-65535; resolves
#               proxy-only.test (a name only squid knows) to 127.0.0.1
#   tinyproxy   13130 HTTP proxy, no auth
#   microsocks  11080 SOCKS5 with auth (tern / s0cks), 11081 without
#   socat       13443 HTTPS proxy: TLS (testenv leaf cert) in front of squid 13129
#   dnsmasq     15353 UDP+TCP DNS: {v4,v6,dual,app}.tern.test, TTL 2 s
#   ws-echo     WebSocket peer (scripts/ws_echo_server.py, Python's `websockets`
#               in a venv at $DIR/venv): 18082 ws, 18449 wss (testenv leaf),
#               18450 wss requiring a client certificate from the client CA
# Each has a pid file $DIR/<name>.pid and logs in $DIR/logs.
#
# Environment:
#   TERN_TESTENV_DIR   state directory (default: <repo>/target/testenv)
#   TERN_TESTENV_IPV6  auto (default) | 1 | 0 : also listen on [::1]:18080
#   TERN_TESTENV_ECHO  auto (default) | module | fallback : how /echo is served
#   TERN_NGINX         nginx binary (default: nginx from PATH or /usr/sbin/nginx)
#
# Usage from a test shell:   . "$(scripts/testenv.sh start)"
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
REPO_DIR=$(cd "$SCRIPT_DIR/.." && pwd -P)
DIR=${TERN_TESTENV_DIR:-$REPO_DIR/target/testenv}

PORT_HTTP=18080
PORT_H2C=18081
PORT_HTTPS=18443
PORT_HTTPS_H1=18444
PORT_EXPIRED=18445
PORT_WRONGHOST=18446
PORT_SELFSIGNED=18447
PORT_CLIENTCERT=18448

PORT_SQUID=13128          # HTTP proxy, basic auth
PORT_SQUID_NOAUTH=13129   # HTTP proxy, no auth
PORT_TINYPROXY=13130      # HTTP proxy, no auth
PORT_HTTPS_PROXY=13443    # TLS -> squid 13129
PORT_SOCKS=11080          # SOCKS5, user/password
PORT_SOCKS_NOAUTH=11081   # SOCKS5, no auth
PORT_DNS=15353            # UDP and TCP
PORT_WS=18082             # WebSocket, plain
PORT_WSS=18449            # WebSocket over TLS
PORT_WSS_MTLS=18450       # WebSocket over TLS, client certificate required

PROXY_USER=tern
PROXY_PASS='p@ss word'
SOCKS_USER=tern
SOCKS_PASS=s0cks
PROXY_ONLY_HOST=proxy-only.test   # known to squid's hosts_file only

# Started after nginx, in this order; stopped before it.
SERVICES=(dnsmasq squid tinyproxy microsocks microsocks-noauth https-proxy ws-echo)

READY_TIMEOUT=30   # seconds for all ports to answer
STOP_TIMEOUT=5     # seconds between TERM and KILL

ECHO_MODULE_SO=/usr/lib/nginx/modules/ngx_http_echo_module.so

# The WebSocket peer's library, from PyPI into $DIR/venv (the asyncio server API
# with process_request/process_response it needs exists since websockets 13).
WS_PIP_SPEC='websockets>=15,<18'

log() { printf 'testenv: %s\n' "$*" >&2; }
die() { printf 'testenv: ERROR: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------- helpers ---

nginx_bin() {
    if [[ -n ${TERN_NGINX:-} ]]; then
        printf '%s\n' "$TERN_NGINX"
    elif command -v nginx >/dev/null 2>&1; then
        command -v nginx
    else
        printf '%s\n' /usr/sbin/nginx
    fi
}

# find_bin NAME : path of a program, also from /usr/sbin and /usr/bin when they
# are not in PATH (non-root shells); nothing and exit 1 if not installed.
find_bin() {
    local p
    if p=$(command -v "$1" 2>/dev/null) && [[ $p == /* ]]; then
        printf '%s\n' "$p"
        return 0
    fi
    for p in /usr/sbin/"$1" /usr/bin/"$1" /sbin/"$1"; do
        if [[ -x $p ]]; then
            printf '%s\n' "$p"
            return 0
        fi
    done
    return 1
}

# Squid's basic auth helper (its directory differs between distributions).
squid_auth_helper() {
    local p
    for p in /usr/lib/squid/basic_ncsa_auth /usr/lib64/squid/basic_ncsa_auth \
        /usr/libexec/squid/basic_ncsa_auth /usr/lib/squid3/basic_ncsa_auth; do
        if [[ -x $p ]]; then
            printf '%s\n' "$p"
            return 0
        fi
    done
    return 1
}

# pid_file_check FILE PATTERN... : prints the pid recorded in FILE if that
# process is alive and its command line matches every glob PATTERN, so that a
# recycled pid is never mistaken for ours.
pid_file_check() {
    local pidfile=$1 pid cmdline pat
    shift
    [[ -r $pidfile ]] || return 1
    read -r pid <"$pidfile" || return 1
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    alive "$pid" || return 1
    cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
    for pat in "$@"; do
        # shellcheck disable=SC2053 # glob match intended
        [[ $cmdline == $pat ]] || return 1
    done
    printf '%s\n' "$pid"
}

# Prints the pid of our nginx master if it is alive, else nothing (exit 1).
running_pid() {
    service_pid nginx
}

# The command-line patterns that identify each service started by cmd_start.
# (microsocks blanks its -u/-P arguments, so it is recognised by its port.)
service_patterns() {
    local d # $DIR with glob characters escaped
    d=$(printf '%s\n' "$DIR" | sed 's/[][*?\\]/\\&/g')
    case $1 in
        nginx) printf '%s\n' "*nginx*" "*$d/nginx.conf*" ;;
        squid) printf '%s\n' "*squid*" "*-f $d/conf/squid.conf*" ;;
        tinyproxy) printf '%s\n' "*tinyproxy*" "*-c $d/conf/tinyproxy.conf*" ;;
        microsocks) printf '%s\n' "*microsocks*" "* -i 127.0.0.1 -p $PORT_SOCKS *" ;;
        microsocks-noauth) printf '%s\n' "*microsocks*" "* -i 127.0.0.1 -p $PORT_SOCKS_NOAUTH *" ;;
        https-proxy) printf '%s\n' "*socat*" "*OPENSSL-LISTEN:$PORT_HTTPS_PROXY,*$d/pki/*" ;;
        dnsmasq) printf '%s\n' "*dnsmasq*" "*--pid-file=$d/dnsmasq.pid*" ;;
        ws-echo) printf '%s\n' "*$d/venv/bin/python *ws_echo_server.py*" "*--port $PORT_WS *" ;;
        *) die "unknown service $1" ;;
    esac
}

# service_pid NAME : pid of our running NAME (from $DIR/NAME.pid), or exit 1.
service_pid() {
    local -a pats
    mapfile -t pats < <(service_patterns "$1")
    pid_file_check "$DIR/$1.pid" "${pats[@]}"
}

# All descendants of a pid (nginx workers, squid helpers, socat's forks), from
# one read of /proc.
descendants_of() {
    # shellcheck disable=SC2002 # cat skips processes that vanish meanwhile
    cat /proc/[0-9]*/status 2>/dev/null | awk -v root="$1" '
        /^Pid:/ { pid = $2 }
        /^PPid:/ { kids[$2] = kids[$2] " " pid }
        END {
            n = split(kids[root], queue, " ")
            for (i = 1; i <= n; i++) {
                print queue[i]
                m = split(kids[queue[i]], more, " ")
                for (j = 1; j <= m; j++) queue[++n] = more[j]
            }
        }'
}

# A zombie counts as dead: it holds no sockets, and its reaping is up to
# whatever runs as pid 1 (which in some containers only does so every second).
alive() {
    local stat
    kill -0 "$1" 2>/dev/null || return 1
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    [[ ${stat:0:1} != Z ]]
}

all_dead() {
    local p
    for p in "$@"; do
        if alive "$p"; then return 1; fi
    done
    return 0
}

# ---------------------------------------------------------------- install ---

# True if the nginx binary has the echo module compiled in (not Debian's way).
echo_builtin() {
    local v
    [[ -x $(nginx_bin) ]] || return 1
    v=$("$(nginx_bin)" -V 2>&1) || return 1
    [[ $v =~ --add-module=[^\ ]*echo ]]
}

pkg_available() {
    local cand
    cand=$(apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ { print $2 }')
    [[ -n $cand && $cand != "(none)" ]]
}

# Debian packages of the servers besides nginx, and the tools the readiness
# checks use: "package:program" (program checked by find_bin).
SERVICE_PACKAGES=(squid:squid tinyproxy:tinyproxy microsocks:microsocks socat:socat
    dnsmasq-base:dnsmasq bind9-dnsutils:dig)

ensure_packages() {
    local -a missing=()
    [[ -x $(nginx_bin) ]] || missing+=(nginx)
    command -v openssl >/dev/null 2>&1 || missing+=(openssl)
    command -v curl >/dev/null 2>&1 || missing+=(curl)
    [[ -s /etc/ssl/certs/ca-certificates.crt ]] || missing+=(ca-certificates)
    local entry
    for entry in "${SERVICE_PACKAGES[@]}"; do
        find_bin "${entry#*:}" >/dev/null || missing+=("${entry%%:*}")
    done
    if [[ ! " ${missing[*]} " =~ " squid " ]] && ! squid_auth_helper >/dev/null; then
        missing+=(squid) # the helper is part of the squid package
    fi
    # The WebSocket peer's venv: python3 with venv and ensurepip (Debian splits
    # ensurepip into python3-venv).
    if [[ ! -x $DIR/venv/bin/python ]] && ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
        missing+=(python3-venv)
    fi
    local want_echo=0
    if [[ ${TERN_TESTENV_ECHO:-auto} != fallback && ! -e $ECHO_MODULE_SO ]] \
        && [[ -z ${TERN_NGINX:-} ]] && ! echo_builtin; then
        want_echo=1
    fi
    if ((${#missing[@]} == 0 && want_echo == 0)); then
        return 0
    fi
    if ((EUID != 0)); then
        if ((${#missing[@]} > 0)); then
            die "missing packages: ${missing[*]} (run as root, or: apt-get install ${missing[*]} libnginx-mod-http-echo)"
        fi
        log "nginx echo module not installed (apt-get install libnginx-mod-http-echo); using the fallback /echo"
        return 0
    fi
    command -v apt-get >/dev/null 2>&1 || die "missing: ${missing[*]} echo-module; apt-get not found"

    # Keep the distributions' services (nginx on :80, squid on :3128, tinyproxy
    # on :8888) from starting while the packages are installed: a temporary
    # policy-rc.d, only if none exists.
    local policy=/usr/sbin/policy-rc.d own_policy=0
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod 755 "$policy"
        own_policy=1
        trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    fi

    local apt_log=$DIR/apt.log
    log "apt-get update (output: $apt_log)"
    apt-get update -q >"$apt_log" 2>&1 || { tail -n 20 "$apt_log" >&2; die "apt-get update failed"; }
    local -a pkgs=() unavailable=()
    local pkg
    for pkg in "${missing[@]}"; do
        if [[ $pkg == bind9-dnsutils ]] && ! pkg_available "$pkg" && pkg_available dnsutils; then
            pkg=dnsutils # older releases
        fi
        if pkg_available "$pkg"; then
            pkgs+=("$pkg")
        else
            unavailable+=("$pkg")
        fi
    done
    if ((${#unavailable[@]} > 0)); then
        die "package(s) not installable (no candidate in the apt repositories): ${unavailable[*]}"
    fi
    if ((want_echo)); then
        if pkg_available libnginx-mod-http-echo; then
            pkgs+=(libnginx-mod-http-echo)
        else
            log "libnginx-mod-http-echo is not in the apt repositories; using the fallback /echo"
        fi
    fi
    if ((${#pkgs[@]} > 0)); then
        log "apt-get install ${pkgs[*]}"
        if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
            "${pkgs[@]}" >>"$apt_log" 2>&1; then
            tail -n 20 "$apt_log" >&2
            die "apt-get install ${pkgs[*]} failed"
        fi
    fi

    if ((own_policy)); then
        rm -f "$policy"
        trap - EXIT
    fi
    [[ -x $(nginx_bin) ]] || die "nginx still not found after install"
    if [[ " ${pkgs[*]} " =~ " python3-venv " ]]; then
        python3 -c 'import venv, ensurepip' >/dev/null 2>&1 \
            || die "python3 -m venv still not usable after installing python3-venv"
    fi
    for entry in "${SERVICE_PACKAGES[@]}"; do
        find_bin "${entry#*:}" >/dev/null \
            || die "${entry#*:} still not found after installing ${entry%%:*}"
    done
    squid_auth_helper >/dev/null || die "squid's basic_ncsa_auth helper not found after install"
}

# The WebSocket peer's Python environment: $DIR/venv with `websockets` from PyPI,
# made (again) unless it already imports it.
ensure_ws_venv() {
    local venv=$DIR/venv pip_log=$DIR/pip.log
    if "$venv/bin/python" -c 'import websockets.asyncio.server' >/dev/null 2>&1; then
        return 0
    fi
    log "python3 -m venv $venv; pip install $WS_PIP_SPEC (output: $pip_log)"
    if ! python3 -m venv --clear "$venv" >"$pip_log" 2>&1; then
        tail -n 20 "$pip_log" >&2
        die "python3 -m venv $venv failed (Debian: apt-get install python3-venv)"
    fi
    if ! "$venv/bin/python" -m pip install -q --disable-pip-version-check "$WS_PIP_SPEC" \
        >>"$pip_log" 2>&1; then
        tail -n 20 "$pip_log" >&2
        die "pip install $WS_PIP_SPEC into $venv failed"
    fi
    "$venv/bin/python" -c 'import websockets.asyncio.server' >>"$pip_log" 2>&1 \
        || die "websockets still not importable from $venv/bin/python"
}

# -------------------------------------------------------------------- PKI ---

# openssl invocations log here; the log is shown if one fails.
PKI_LOG=
ossl() {
    if ! openssl "$@" >>"$PKI_LOG" 2>&1; then
        cat "$PKI_LOG" >&2
        die "openssl $1 failed (see above)"
    fi
}

# GeneralizedTime N days from now (negative for the past).
days_from_now() {
    date -u -d "@$(($(date +%s) + $1 * 86400))" +%Y%m%d%H%M%SZ
}

write_openssl_cnf() {
    local pki=$1
    cat >"$pki/openssl.cnf" <<EOF
# Generated by scripts/testenv.sh
[ca]
default_ca = tern_ca

[tern_ca]
dir             = $pki/db
database        = \$dir/index.txt
new_certs_dir   = \$dir/new
rand_serial     = yes
default_md      = sha256
policy          = tern_policy
unique_subject  = no
copy_extensions = none
email_in_dn     = no
name_opt        = ca_default
cert_opt        = ca_default

[tern_policy]
organizationName = optional
commonName       = supplied

[req]
distinguished_name = req_dn
prompt             = no

[req_dn]
CN = unused

[ext_root]
basicConstraints       = critical, CA:TRUE
keyUsage               = critical, keyCertSign, cRLSign
subjectKeyIdentifier   = hash

[ext_intermediate]
basicConstraints       = critical, CA:TRUE, pathlen:0
keyUsage               = critical, keyCertSign, cRLSign
extendedKeyUsage       = serverAuth, clientAuth
subjectKeyIdentifier   = hash
authorityKeyIdentifier = keyid:always

[ext_leaf]
basicConstraints       = critical, CA:FALSE
keyUsage               = critical, digitalSignature
extendedKeyUsage       = serverAuth
subjectKeyIdentifier   = hash
authorityKeyIdentifier = keyid:always
subjectAltName         = DNS:localhost, DNS:app.test, IP:127.0.0.1, IP:::1

[ext_leaf_selfsigned]
basicConstraints       = critical, CA:FALSE
keyUsage               = critical, digitalSignature
extendedKeyUsage       = serverAuth
subjectKeyIdentifier   = hash
subjectAltName         = DNS:localhost, DNS:app.test, IP:127.0.0.1, IP:::1

[ext_leaf_wronghost]
basicConstraints       = critical, CA:FALSE
keyUsage               = critical, digitalSignature
extendedKeyUsage       = serverAuth
subjectKeyIdentifier   = hash
authorityKeyIdentifier = keyid:always
subjectAltName         = DNS:other.test

[ext_client]
basicConstraints       = critical, CA:FALSE
keyUsage               = critical, digitalSignature
extendedKeyUsage       = clientAuth
subjectKeyIdentifier   = hash
authorityKeyIdentifier = keyid:always
EOF
}

# new_key NAME [rsa]  ->  NAME-key.pem (PKCS#8, EC P-256 unless rsa)
new_key() {
    if [[ ${2:-ec} == rsa ]]; then
        ossl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$1-key.pem"
    else
        ossl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1-key.pem"
    fi
}

# issue NAME SUBJECT EXT_SECTION START END [ISSUER]
#   ISSUER empty -> self-signed. Uses `openssl ca`, which (unlike `openssl
#   x509 -req` before OpenSSL 3.4) can set arbitrary notBefore/notAfter dates.
issue() {
    local name=$1 subj=$2 ext=$3 start=$4 end=$5 issuer=${6:-}
    ossl req -new -config openssl.cnf -key "$name-key.pem" -subj "$subj" -out "$name.csr"
    local -a signer
    if [[ -z $issuer ]]; then
        signer=(-selfsign -keyfile "$name-key.pem")
    else
        signer=(-cert "$issuer.pem" -keyfile "$issuer-key.pem")
    fi
    ossl ca -batch -notext -config openssl.cnf -extensions "$ext" \
        -startdate "$start" -enddate "$end" "${signer[@]}" \
        -in "$name.csr" -out "$name.pem"
    rm -f "$name.csr"
}

generate_pki() {
    local pki=$DIR/pki
    rm -rf "$pki"
    mkdir -p "$pki/db/new"
    : >"$pki/db/index.txt"
    PKI_LOG=$pki/openssl.log
    : >"$PKI_LOG"
    write_openssl_cnf "$pki"

    local ca_from ca_to leaf_from leaf_to old_from old_to
    ca_from=$(days_from_now -730)   # CAs are back-dated so the expired leaf
    ca_to=$(days_from_now 3650)     # lies inside its issuer's validity
    leaf_from=$(days_from_now -1)
    leaf_to=$(days_from_now 365)
    old_from=$(days_from_now -400)
    old_to=$(days_from_now -30)

    (
        cd "$pki"
        # Server-side hierarchy: root (RSA 2048) -> intermediate (P-256) -> leaves.
        new_key ca rsa
        issue ca "/O=tern test/CN=tern test root CA" ext_root "$ca_from" "$ca_to"
        new_key intermediate
        issue intermediate "/O=tern test/CN=tern test intermediate CA" ext_intermediate \
            "$ca_from" "$ca_to" ca

        new_key leaf
        issue leaf "/O=tern test/CN=localhost" ext_leaf "$leaf_from" "$leaf_to" intermediate
        cat leaf.pem intermediate.pem >leaf-chain.pem

        new_key expired
        issue expired "/O=tern test/CN=localhost" ext_leaf "$old_from" "$old_to" intermediate
        cat expired.pem intermediate.pem >expired-chain.pem

        new_key wronghost
        issue wronghost "/O=tern test/CN=other.test" ext_leaf_wronghost \
            "$leaf_from" "$leaf_to" intermediate
        cat wronghost.pem intermediate.pem >wronghost-chain.pem

        new_key selfsigned
        issue selfsigned "/O=tern test/CN=localhost" ext_leaf_selfsigned "$leaf_from" "$leaf_to"

        # Client authentication: its own root and one client certificate.
        new_key client-ca
        issue client-ca "/O=tern test/CN=tern test client CA" ext_root "$ca_from" "$ca_to"
        new_key client
        issue client "/O=tern test/CN=tern test client" ext_client \
            "$leaf_from" "$leaf_to" client-ca

        # An unrelated root for negative tests.
        new_key other-ca
        issue other-ca "/O=tern test/CN=tern test other CA" ext_root "$ca_from" "$ca_to"

        # Sanity: the chains must verify (or not) as intended.
        ossl verify -CAfile ca.pem -untrusted intermediate.pem leaf.pem
        ossl verify -CAfile client-ca.pem client.pem
        if openssl verify -CAfile ca.pem -untrusted intermediate.pem expired.pem \
            >>"$PKI_LOG" 2>&1; then
            die "expired leaf unexpectedly verifies"
        fi
        chmod 600 ./*-key.pem
    )
}

# ---------------------------------------------------------------- content ---

generate_content() {
    local www=$DIR/www
    rm -rf "$www"
    mkdir -p "$www/bytes" "$www/gzip"
    head -c 1048576 /dev/urandom >"$www/bytes/1m"
    head -c 16777216 /dev/urandom >"$www/bytes/16m"
    # ~100 KiB of compressible text.
    awk 'BEGIN {
        for (i = 1; i <= 1600; i++)
            printf "%05d the quick brown fox jumps over the lazy dog; tern gzip test\n", i
    }' >"$www/gzip/text"
    cp "$www/gzip/text" "$www/gzip/static"
    gzip -9 -n -c "$www/gzip/static" >"$www/gzip/static.gz"
    # 1 GiB for streaming tests, sparse (no disk needed beyond 4 MiB): zeros with the
    # random MiB at four offsets, so that order and content are both checked.
    truncate -s 1G "$www/bytes/1g"
    local off
    for off in 0 256 512 1023; do
        dd if="$www/bytes/1m" of="$www/bytes/1g" bs=1M seek="$off" conv=notrunc status=none
    done
    SHA_1M=$(sha256sum "$www/bytes/1m" | awk '{ print $1 }')
    SHA_16M=$(sha256sum "$www/bytes/16m" | awk '{ print $1 }')
    SHA_1G=$(sha256sum "$www/bytes/1g" | awk '{ print $1 }')
}

# ------------------------------------------------------------ nginx config ---

nginx_version() {
    local v
    v=$("$(nginx_bin)" -v 2>&1) || die "cannot run $(nginx_bin) -v"
    v=${v##*nginx/}
    printf '%s\n' "${v%% *}"
}

version_ge() { # version_ge A B : A >= B
    local lowest
    lowest=$(printf '%s\n%s\n' "$2" "$1" | sort -V)
    [[ ${lowest%%$'\n'*} == "$2" ]]
}

ipv6_enabled() {
    case ${TERN_TESTENV_IPV6:-auto} in
        1 | yes | on) return 0 ;;
        0 | no | off) return 1 ;;
    esac
    [[ -r /proc/net/if_inet6 ]] && grep -q '^0\{31\}1 ' /proc/net/if_inet6
}

# Decides USE_ECHO_MODULE=1 (nginx echo module) or 0 (nginx-only fallback).
decide_echo() {
    local mode=${TERN_TESTENV_ECHO:-auto}
    USE_ECHO_MODULE=0
    ECHO_LOAD=
    case $mode in
        fallback) return 0 ;;
        auto | module) ;;
        *) die "TERN_TESTENV_ECHO must be auto, module or fallback" ;;
    esac
    if echo_builtin; then
        USE_ECHO_MODULE=1 # compiled in
    elif [[ -e $ECHO_MODULE_SO ]]; then
        USE_ECHO_MODULE=1
        ECHO_LOAD="load_module $ECHO_MODULE_SO;"
    elif [[ $mode == module ]]; then
        die "TERN_TESTENV_ECHO=module but $ECHO_MODULE_SO does not exist"
    fi
}

# listen_lines ADDR OPTS H2 -> listen lines (HTTP/2 style of the installed nginx)
listen_lines() {
    local addr=$1 opts=$2 h2=$3
    if ((h2)) && ((HTTP2_DIRECTIVE)); then
        printf '        listen %s%s;\n        http2 on;\n' "$addr" "$opts"
    elif ((h2)); then
        printf '        listen %s%s http2;\n' "$addr" "$opts"
    else
        printf '        listen %s%s;\n' "$addr" "$opts"
    fi
}

tls_server() { # PORT CERT KEY H2 [extra lines]
    local port=$1 cert=$2 key=$3 h2=$4 extra=${5:-}
    printf '    server {\n'
    listen_lines "127.0.0.1:$port" " ssl" "$h2"
    printf '        server_name localhost;\n'
    printf '        ssl_certificate     %s;\n' "$DIR/pki/$cert"
    printf '        ssl_certificate_key %s;\n' "$DIR/pki/$key"
    [[ -n $extra ]] && printf '%s\n' "$extra"
    printf '        include %s;\n' "$DIR/conf/locations.conf"
    printf '    }\n'
}

write_big_header_conf() {
    # X-Big: 65536 bytes, "abcdefghijklmnopqrstuvwxyz012345" repeated 2048 times.
    # nginx limits one config token to 4 KiB, so it is assembled from 32
    # variables of 2048 bytes each.
    local unit=abcdefghijklmnopqrstuvwxyz012345 chunk="" refs="" i
    for ((i = 0; i < 64; i++)); do chunk+=$unit; done
    {
        printf '# Generated by scripts/testenv.sh\n'
        for ((i = 0; i < 32; i++)); do
            # shellcheck disable=SC2016 # literal nginx variable
            printf 'set $tern_big%d "%s";\n' "$i" "$chunk"
            refs+="\$tern_big$i"
        done
        printf 'add_header X-Big "%s";\n' "$refs"
    } >"$DIR/conf/big-header.conf"
}

write_locations_conf() {
    local f=$DIR/conf/locations.conf n code
    {
        cat <<'EOF'
# Generated by scripts/testenv.sh -- shared by every server.
location = /hello {
    return 200 "Hello, world!";
}

location /bytes/ {
    types { }
    default_type application/octet-stream;
}

location = /gzip/text {
    gzip on;
    gzip_types text/plain;
    gzip_min_length 1;
    gzip_proxied any;
    gzip_vary on;
}

location = /gzip/static {
    gzip_static on;
    gzip_vary on;
}

location = /headers {
    return 200 "method=$request_method\nauthorization=$http_authorization\ncookie=$http_cookie\nuser-agent=$http_user_agent\naccept-encoding=$http_accept_encoding\nx-test=$http_x_test\nhost=$host\n";
}

# Cookies (tests/all/cookies.rs): set, expire, set on a redirect, Secure, and an
# echo of the Cookie header under /cookies.
location = /cookies/set {
    add_header Set-Cookie "a=1; Path=/";
    add_header Set-Cookie "b=2; Path=/cookies";
    return 200 "set\n";
}

location = /cookies/echo {
    return 200 "cookie=$http_cookie\n";
}

location = /cookies/expire {
    add_header Set-Cookie "a=0; Path=/; Max-Age=0";
    return 200 "expired\n";
}

location = /cookies/redirect {
    add_header Set-Cookie "r=3; Path=/";
    return 302 /headers;
}

location = /cookies/redirect-localhost {
    add_header Set-Cookie "h=4; Path=/";
    return 302 http://localhost:$server_port/headers;
}

location = /cookies/secure {
    add_header Set-Cookie "s=5; Path=/; Secure";
    return 200 "secure\n";
}

location = /redirect-abs {
    return 302 http://127.0.0.1:18080/hello;
}

location = /redirect-loop {
    return 302 /redirect-loop;
}

EOF
        for code in 301 302 303 307 308; do
            printf 'location = /r%s {\n    return %s /echo;\n}\n\n' "$code" "$code"
        done
        # /redirect/N -> /redirect/N-1 ... /redirect/1 -> /hello (N up to 30).
        printf 'location = /redirect/1 {\n    return 302 /hello;\n}\n\n'
        for ((n = 2; n <= 30; n++)); do
            printf 'location = /redirect/%d {\n    return 302 /redirect/%d;\n}\n\n' "$n" "$((n - 1))"
        done
        for code in 200 201 400 401 403 404 429 500 502 503; do
            printf 'location = /status/%s {\n    return %s "status %s";\n}\n\n' "$code" "$code" "$code"
        done
        printf 'location = /status/204 {\n    return 204;\n}\n\n'
        printf 'location = /big-header {\n    include %s;\n    return 200 "big header";\n}\n\n' \
            "$DIR/conf/big-header.conf"
        if ((USE_ECHO_MODULE)); then
            cat <<'EOF'
# /echo: "method=<METHOD>\n" followed by the request body (echo module).
location = /echo {
    echo_read_request_body;
    echo "method=$request_method";
    echo_request_body;
}
EOF
        else
            cat <<EOF
# /echo: "method=<METHOD>\\n" followed by the request body. No echo module:
# proxy_pass reads the body into memory (\$request_body), then fails at once on
# a socket that does not exist, and the 502 is turned into a return of it.
location = /echo {
    error_log $DIR/logs/error.log emerg;
    proxy_pass http://unix:$DIR/no-such.sock:;
    proxy_intercept_errors on;
    error_page 502 = @tern_echo;
}
location @tern_echo {
    return 200 "method=\$request_method\\n\$request_body";
}
EOF
        fi
    } >"$f"
}

write_nginx_conf() {
    mkdir -p "$DIR/conf" "$DIR/logs" "$DIR/tmp"
    write_big_header_conf
    write_locations_conf

    local user_line="" v6_listen="" nofile=65536
    ((EUID == 0)) && user_line="user root;"
    # nginx can only raise RLIMIT_NOFILE up to the hard limit (without
    # CAP_SYS_RESOURCE, as in many containers); ask for no more than that.
    if ! (ulimit -Hn "$nofile") 2>/dev/null; then
        nofile=$(ulimit -Hn)
        log "hard open-files limit is $nofile; worker_rlimit_nofile $nofile"
    fi
    if ((IPV6)); then
        v6_listen=$(listen_lines "[::1]:$PORT_HTTP" "" 0)
    fi

    {
        cat <<EOF
# Generated by scripts/testenv.sh -- do not edit.
$ECHO_LOAD
$user_line
daemon on;
master_process on;
worker_processes 1;
worker_rlimit_nofile $nofile;
pid $DIR/nginx.pid;
error_log $DIR/logs/error.log warn;

events {
    worker_connections 20000;
}

http {
    access_log off;
    default_type text/plain;
    root $DIR/www;
    sendfile on;
    tcp_nopush on;
    server_tokens off;
    absolute_redirect off;

    keepalive_requests 1000000;
    keepalive_timeout 75s;

    client_max_body_size 256m;
    client_body_buffer_size 32m;
    large_client_header_buffers 8 64k;

    client_body_temp_path $DIR/tmp/client_body;
    proxy_temp_path       $DIR/tmp/proxy;
    fastcgi_temp_path     $DIR/tmp/fastcgi;
    uwsgi_temp_path       $DIR/tmp/uwsgi;
    scgi_temp_path        $DIR/tmp/scgi;

    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_cache shared:tern_ssl:1m;

    # HTTP/1.1 plain
    server {
$(listen_lines "127.0.0.1:$PORT_HTTP" "" 0)
$v6_listen
        server_name localhost;
        include $DIR/conf/locations.conf;
    }

    # h2c, prior knowledge
    server {
$(listen_lines "127.0.0.1:$PORT_H2C" "" 1)
        server_name localhost;
        include $DIR/conf/locations.conf;
    }

EOF
        printf '    # HTTPS, ALPN h2 + http/1.1, valid chain\n'
        tls_server "$PORT_HTTPS" leaf-chain.pem leaf-key.pem 1
        printf '\n    # HTTPS, http/1.1 only\n'
        tls_server "$PORT_HTTPS_H1" leaf-chain.pem leaf-key.pem 0
        printf '\n    # HTTPS, expired leaf\n'
        tls_server "$PORT_EXPIRED" expired-chain.pem expired-key.pem 1
        printf '\n    # HTTPS, leaf for other.test only\n'
        tls_server "$PORT_WRONGHOST" wronghost-chain.pem wronghost-key.pem 1
        printf '\n    # HTTPS, self-signed leaf\n'
        tls_server "$PORT_SELFSIGNED" selfsigned.pem selfsigned-key.pem 1
        printf '\n    # HTTPS, client certificate required\n'
        tls_server "$PORT_CLIENTCERT" leaf-chain.pem leaf-key.pem 1 \
            "        ssl_verify_client on;
        ssl_verify_depth 2;
        ssl_client_certificate $DIR/pki/client-ca.pem;"
        printf '}\n'
    } >"$DIR/nginx.conf"
}

# -------------------------------------------------------- proxies and DNS ---

# The unprivileged user that root-started squid/tinyproxy/dnsmasq switch to
# (squid refuses to run as root).
DAEMON_USER=
DAEMON_GROUP=
pick_daemon_user() {
    DAEMON_USER=
    DAEMON_GROUP=
    ((EUID == 0)) || return 0
    if getent passwd proxy >/dev/null 2>&1; then
        DAEMON_USER=proxy
    else
        DAEMON_USER=nobody
    fi
    DAEMON_GROUP=$(id -gn "$DAEMON_USER")
}

write_squid_conf() {
    local conf=$DIR/conf helper hash logs=$DIR/logs
    helper=$(squid_auth_helper) || die "squid's basic_ncsa_auth helper not found"
    hash=$(openssl passwd -apr1 "$PROXY_PASS") || die "openssl passwd -apr1 failed"
    printf '%s:%s\n' "$PROXY_USER" "$hash" >"$conf/squid-passwd"
    # squid's own hosts file replaces /etc/hosts for squid only.
    printf '127.0.0.1 localhost %s\n' "$PROXY_ONLY_HOST" >"$conf/squid-hosts"
    chmod 644 "$conf/squid-passwd" "$conf/squid-hosts"
    mkdir -p "$DIR/tmp/squid"
    : >"$logs/squid-cache.log"
    : >"$logs/squid-access.log"
    if [[ -n $DAEMON_USER ]]; then
        chown "$DAEMON_USER:$DAEMON_GROUP" "$DIR/tmp/squid" "$logs/squid-cache.log" \
            "$logs/squid-access.log"
    fi
    {
        cat <<EOF
# Generated by scripts/testenv.sh -- do not edit.
http_port 127.0.0.1:$PORT_SQUID name=auth
http_port 127.0.0.1:$PORT_SQUID_NOAUTH name=noauth
${DAEMON_USER:+cache_effective_user $DAEMON_USER}
visible_hostname tern-testenv
pid_filename none
cache_log $logs/squid-cache.log
access_log stdio:$logs/squid-access.log
cache_store_log none
coredump_dir $DIR/tmp/squid
cache deny all
cache_mem 8 MB
pinger_enable off
netdb_filename none
shutdown_lifetime 0 seconds

# Names: only this hosts file; anything else goes to a DNS server on
# 127.0.0.1:53 that does not exist and fails after dns_timeout (no queries
# leave the machine).
hosts_file $conf/squid-hosts
dns_nameservers 127.0.0.1
dns_timeout 2 seconds
dns_retransmit_interval 1 second
udp_incoming_address 127.0.0.1
negative_dns_ttl 1 second

auth_param basic program $helper $conf/squid-passwd
auth_param basic children 2 startup=1 idle=1
auth_param basic realm tern test proxy
auth_param basic credentialsttl 1 minute

acl auth_port myportname auth
acl noauth_port myportname noauth
acl tern_dst dst 127.0.0.1 ::1
acl tern_ports port 1024-65535
acl CONNECT method CONNECT
acl tern_user proxy_auth REQUIRED

http_access deny !tern_dst
http_access deny CONNECT !tern_ports
http_access allow noauth_port
http_access allow auth_port tern_user
http_access deny all
EOF
    } >"$conf/squid.conf"
}

write_tinyproxy_conf() {
    {
        printf '# Generated by scripts/testenv.sh -- do not edit.\n'
        if [[ -n $DAEMON_USER ]]; then
            printf 'User %s\nGroup %s\n' "$DAEMON_USER" "$DAEMON_GROUP"
        fi
        # No ConnectPort line: CONNECT is allowed to every port.
        cat <<EOF
Port $PORT_TINYPROXY
Listen 127.0.0.1
Timeout 600
Allow 127.0.0.1
MaxClients 200
LogLevel Info
EOF
    } >"$DIR/conf/tinyproxy.conf"
}

# spawn NAME CMD... : run CMD in the background in a session of its own, with
# stdin closed and output to $DIR/logs/NAME.log, and record its pid in
# $DIR/NAME.pid (setsid does not fork here: a background job of a
# non-interactive shell is no process-group leader).
spawn() {
    local name=$1
    shift
    setsid "$@" </dev/null >"$DIR/logs/$name.log" 2>&1 9>&- &
    printf '%s\n' "$!" >"$DIR/$name.pid"
}

start_services() {
    local pki=$DIR/pki
    pick_daemon_user
    write_squid_conf
    write_tinyproxy_conf

    local -a dns_user=()
    [[ -n $DAEMON_USER ]] && dns_user=(--user="$DAEMON_USER" --group="$DAEMON_GROUP")
    spawn dnsmasq "$(find_bin dnsmasq)" --keep-in-foreground --conf-file=/dev/null \
        --no-resolv --no-hosts --no-poll --bind-interfaces --listen-address=127.0.0.1 \
        --port="$PORT_DNS" --pid-file="$DIR/dnsmasq.pid" --log-facility=- \
        "${dns_user[@]}" --local-ttl=2 --local=/tern.test/ \
        --host-record=v4.tern.test,127.0.0.1 \
        --host-record=v6.tern.test,::1 \
        --host-record=dual.tern.test,127.0.0.1,::1 \
        --host-record=app.tern.test,127.0.0.1
    spawn squid "$(find_bin squid)" -N -f "$DIR/conf/squid.conf"
    spawn tinyproxy "$(find_bin tinyproxy)" -d -c "$DIR/conf/tinyproxy.conf"
    spawn microsocks "$(find_bin microsocks)" -i 127.0.0.1 -p "$PORT_SOCKS" \
        -u "$SOCKS_USER" -P "$SOCKS_PASS"
    spawn microsocks-noauth "$(find_bin microsocks)" -i 127.0.0.1 -p "$PORT_SOCKS_NOAUTH"
    spawn https-proxy "$(find_bin socat)" \
        "OPENSSL-LISTEN:$PORT_HTTPS_PROXY,bind=127.0.0.1,reuseaddr,fork,verify=0,cert=$pki/leaf-chain.pem,key=$pki/leaf-key.pem" \
        "TCP:127.0.0.1:$PORT_SQUID_NOAUTH"
    spawn ws-echo "$DIR/venv/bin/python" "$SCRIPT_DIR/ws_echo_server.py" --port "$PORT_WS" \
        --tls-port "$PORT_WSS" --mtls-port "$PORT_WSS_MTLS" --cert "$pki/leaf-chain.pem" \
        --key "$pki/leaf-key.pem" --client-ca "$pki/client-ca.pem"
}

# Fail early, and clearly, if something else already listens on one of our
# TCP ports (a readiness check could otherwise pass against it).
check_ports_free() {
    local port
    for port in "$PORT_HTTP" "$PORT_H2C" "$PORT_HTTPS" "$PORT_HTTPS_H1" "$PORT_EXPIRED" \
        "$PORT_WRONGHOST" "$PORT_SELFSIGNED" "$PORT_CLIENTCERT" "$PORT_SQUID" \
        "$PORT_SQUID_NOAUTH" "$PORT_TINYPROXY" "$PORT_HTTPS_PROXY" "$PORT_SOCKS" \
        "$PORT_SOCKS_NOAUTH" "$PORT_DNS" "$PORT_WS" "$PORT_WSS" "$PORT_WSS_MTLS"; do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            die "127.0.0.1:$port is already in use by a process this script did not start (or whose pid file is gone); stop it first"
        fi
    done
}

# ------------------------------------------------------------- start/stop ---

# wait_url DEADLINE DESCRIPTION CURL_ARGS... : poll until curl gets a 200
# (directly: any proxy from the environment is ignored).
wait_url() {
    local deadline=$1 what=$2
    shift 2
    wait_curl "$deadline" "$what" "" --noproxy '*' "$@"
}

# wait_curl DEADLINE DESCRIPTION SERVICES CURL_ARGS... : as wait_url, for
# requests through a proxy given in CURL_ARGS (--noproxy '' so NO_PROXY cannot
# bypass it); gives up at once when one of the SERVICES (names, space
# separated) has exited.
wait_curl() {
    local deadline=$1 what=$2 services=$3 code
    shift 3
    while :; do
        code=$(curl -sS -g -o /dev/null -w '%{http_code}' \
            --connect-timeout 1 --max-time 3 "$@" 2>/dev/null) || code=000
        [[ $code == 200 ]] && return 0
        exited "$what" "$services" && return 1
        if ((SECONDS >= deadline)); then
            log "$what did not answer 200 within ${READY_TIMEOUT}s (last status: $code)"
            return 1
        fi
        sleep 0.1
    done
}

# exited DESCRIPTION SERVICES : true (with a message) if one of SERVICES is no
# longer running.
exited() {
    local name
    for name in $2; do
        if ! service_pid "$name" >/dev/null; then
            log "$1: $name exited (logs in $DIR/logs)"
            return 0
        fi
    done
    return 1
}

# wait_dns DEADLINE [+tcp] NAME TYPE EXPECTED : poll dnsmasq until it answers.
wait_dns() {
    local deadline=$1 answer
    shift
    local -a opts=()
    if [[ $1 == +tcp ]]; then
        opts=(+tcp)
        shift
    fi
    local name=$1 type=$2 expected=$3 dig
    dig=$(find_bin dig) || die "dig not found"
    while :; do
        answer=$("$dig" +short +time=1 +tries=1 "${opts[@]}" -p "$PORT_DNS" @127.0.0.1 \
            "$name" "$type" 2>/dev/null | sort | tr '\n' ' ') || answer=
        [[ $answer == "$expected " ]] && return 0
        exited "dnsmasq :$PORT_DNS" dnsmasq && return 1
        if ((SECONDS >= deadline)); then
            log "dnsmasq :$PORT_DNS ${opts[*]} did not answer $name $type = $expected within ${READY_TIMEOUT}s (got: ${answer:-nothing})"
            return 1
        fi
        sleep 0.1
    done
}

wait_ready() {
    local deadline=$((SECONDS + READY_TIMEOUT)) pki=$DIR/pki ok=1
    local -a tls=(--cacert "$pki/ca.pem")
    wait_url "$deadline" ":$PORT_HTTP" "http://127.0.0.1:$PORT_HTTP/hello" || ok=0
    if ((IPV6)); then
        wait_url "$deadline" "[::1]:$PORT_HTTP" "http://[::1]:$PORT_HTTP/hello" || ok=0
    fi
    wait_url "$deadline" ":$PORT_H2C" --http2-prior-knowledge \
        "http://127.0.0.1:$PORT_H2C/hello" || ok=0
    wait_url "$deadline" ":$PORT_HTTPS" "${tls[@]}" "https://localhost:$PORT_HTTPS/hello" || ok=0
    wait_url "$deadline" ":$PORT_HTTPS_H1" "${tls[@]}" "https://localhost:$PORT_HTTPS_H1/hello" || ok=0
    wait_url "$deadline" ":$PORT_EXPIRED" -k "https://localhost:$PORT_EXPIRED/hello" || ok=0
    wait_url "$deadline" ":$PORT_WRONGHOST" -k "https://localhost:$PORT_WRONGHOST/hello" || ok=0
    wait_url "$deadline" ":$PORT_SELFSIGNED" -k "https://localhost:$PORT_SELFSIGNED/hello" || ok=0
    wait_url "$deadline" ":$PORT_CLIENTCERT" "${tls[@]}" --cert "$pki/client.pem" \
        --key "$pki/client-key.pem" "https://localhost:$PORT_CLIENTCERT/hello" || ok=0

    # Every proxy: a real request through it to the plain HTTP server.
    local target=http://127.0.0.1:$PORT_HTTP/hello
    local -a via=(--noproxy '')
    wait_curl "$deadline" "squid :$PORT_SQUID" squid "${via[@]}" --proxy "http://127.0.0.1:$PORT_SQUID" \
        --proxy-user "$PROXY_USER:$PROXY_PASS" "$target" || ok=0
    wait_curl "$deadline" "squid :$PORT_SQUID_NOAUTH" squid "${via[@]}" \
        --proxy "http://127.0.0.1:$PORT_SQUID_NOAUTH" "$target" || ok=0
    wait_curl "$deadline" "tinyproxy :$PORT_TINYPROXY" tinyproxy "${via[@]}" \
        --proxy "http://127.0.0.1:$PORT_TINYPROXY" "$target" || ok=0
    wait_curl "$deadline" "microsocks :$PORT_SOCKS" microsocks "${via[@]}" \
        --socks5-hostname "127.0.0.1:$PORT_SOCKS" --proxy-user "$SOCKS_USER:$SOCKS_PASS" \
        "$target" || ok=0
    wait_curl "$deadline" "microsocks :$PORT_SOCKS_NOAUTH" microsocks-noauth "${via[@]}" \
        --socks5-hostname "127.0.0.1:$PORT_SOCKS_NOAUTH" "$target" || ok=0
    wait_curl "$deadline" "https proxy :$PORT_HTTPS_PROXY" "https-proxy squid" "${via[@]}" \
        --proxy "https://127.0.0.1:$PORT_HTTPS_PROXY" --proxy-cacert "$pki/ca.pem" \
        "$target" || ok=0
    wait_dns "$deadline" v4.tern.test A 127.0.0.1 || ok=0
    wait_dns "$deadline" +tcp dual.tern.test AAAA ::1 || ok=0

    # The WebSocket peer: its plain-HTTP /health on each port, and through squid's
    # CONNECT (curl -p tunnels) to the ws and wss ports, as WebSocket clients go.
    wait_curl "$deadline" "ws-echo :$PORT_WS" ws-echo --noproxy '*' \
        "http://127.0.0.1:$PORT_WS/health" || ok=0
    wait_curl "$deadline" "ws-echo :$PORT_WSS" ws-echo --noproxy '*' "${tls[@]}" \
        "https://localhost:$PORT_WSS/health" || ok=0
    wait_curl "$deadline" "ws-echo :$PORT_WSS_MTLS" ws-echo --noproxy '*' "${tls[@]}" \
        --cert "$pki/client.pem" --key "$pki/client-key.pem" \
        "https://localhost:$PORT_WSS_MTLS/health" || ok=0
    wait_curl "$deadline" "ws-echo :$PORT_WS via squid CONNECT" "squid ws-echo" "${via[@]}" \
        -p --proxy "http://127.0.0.1:$PORT_SQUID_NOAUTH" "http://127.0.0.1:$PORT_WS/health" || ok=0
    wait_curl "$deadline" "ws-echo :$PORT_WSS via squid CONNECT" "squid ws-echo" "${via[@]}" \
        -p --proxy "http://127.0.0.1:$PORT_SQUID_NOAUTH" "${tls[@]}" \
        "https://localhost:$PORT_WSS/health" || ok=0

    # What answered must be what we started (not a leftover holding the port).
    local name
    for name in "${SERVICES[@]}"; do
        service_pid "$name" >/dev/null || { log "$name (pid file $DIR/$name.pid) is not running"; ok=0; }
    done
    ((ok))
}

# Shell-quote a value only when it needs it, so simple lines stay `export VAR=value`.
env_line() {
    local name=$1 value=$2
    if [[ $value =~ ^[A-Za-z0-9_./:@%+=,-]+$ ]]; then
        printf 'export %s=%s\n' "$name" "$value"
    else
        printf "export %s='%s'\n" "$name" "${value//\'/\'\\\'\'}"
    fi
}

write_env() {
    local pki=$DIR/pki tmp=$DIR/env.sh.tmp
    {
        printf '# Generated by scripts/testenv.sh start -- source this file.\n'
        env_line TERN_TESTENV_DIR "$DIR"
        env_line TERN_TEST_HTTP "http://127.0.0.1:$PORT_HTTP"
        if ((IPV6)); then env_line TERN_TEST_HTTP6 "http://[::1]:$PORT_HTTP"; fi
        env_line TERN_TEST_H2C "http://127.0.0.1:$PORT_H2C"
        env_line TERN_TEST_HTTPS "https://localhost:$PORT_HTTPS"
        env_line TERN_TEST_HTTPS_H1 "https://localhost:$PORT_HTTPS_H1"
        env_line TERN_TEST_HTTPS_EXPIRED "https://localhost:$PORT_EXPIRED"
        env_line TERN_TEST_HTTPS_WRONGHOST "https://localhost:$PORT_WRONGHOST"
        env_line TERN_TEST_HTTPS_SELFSIGNED "https://localhost:$PORT_SELFSIGNED"
        env_line TERN_TEST_HTTPS_CLIENTCERT "https://localhost:$PORT_CLIENTCERT"
        env_line TERN_TEST_CA "$pki/ca.pem"
        env_line TERN_TEST_OTHER_CA "$pki/other-ca.pem"
        env_line TERN_TEST_CLIENT_CERT "$pki/client.pem"
        env_line TERN_TEST_CLIENT_KEY "$pki/client-key.pem"
        env_line TERN_TEST_SHA256_1M "$SHA_1M"
        env_line TERN_TEST_SHA256_16M "$SHA_16M"
        env_line TERN_TEST_SHA256_1G "$SHA_1G"
        env_line TERN_TEST_SQUID "http://127.0.0.1:$PORT_SQUID"
        env_line TERN_TEST_SQUID_NOAUTH "http://127.0.0.1:$PORT_SQUID_NOAUTH"
        env_line TERN_TEST_PROXY_USER "$PROXY_USER"
        env_line TERN_TEST_PROXY_PASS "$PROXY_PASS"
        env_line TERN_TEST_PROXY_ONLY_HOST "$PROXY_ONLY_HOST"
        env_line TERN_TEST_TINYPROXY "http://127.0.0.1:$PORT_TINYPROXY"
        env_line TERN_TEST_HTTPS_PROXY "https://127.0.0.1:$PORT_HTTPS_PROXY"
        env_line TERN_TEST_SOCKS "127.0.0.1:$PORT_SOCKS"
        env_line TERN_TEST_SOCKS_NOAUTH "127.0.0.1:$PORT_SOCKS_NOAUTH"
        env_line TERN_TEST_SOCKS_USER "$SOCKS_USER"
        env_line TERN_TEST_SOCKS_PASS "$SOCKS_PASS"
        env_line TERN_TEST_DNS "127.0.0.1:$PORT_DNS"
        env_line TERN_TEST_WS "ws://127.0.0.1:$PORT_WS"
        env_line TERN_TEST_WSS "wss://localhost:$PORT_WSS"
        env_line TERN_TEST_WSS_MTLS "wss://localhost:$PORT_WSS_MTLS"
    } >"$tmp"
    mv -f "$tmp" "$DIR/env.sh"
}

# stop_service NAME : TERM our NAME (if running) and wait for it and all its
# descendants to exit; KILL what is left after STOP_TIMEOUT. Returns 1 if
# something survived even that.
stop_service() {
    local name=$1 pid
    if ! pid=$(service_pid "$name"); then
        rm -f "$DIR/$name.pid"
        return 0
    fi
    local -a kids
    mapfile -t kids < <(descendants_of "$pid")
    log "stopping $name (pid $pid${kids[*]:+, children ${kids[*]}})"
    kill -TERM "$pid" 2>/dev/null || true
    local tries=$((STOP_TIMEOUT * 10)) orphans_told=0
    while ! all_dead "$pid" "${kids[@]}"; do
        if ((!orphans_told)) && ! alive "$pid"; then
            # Orphans of an exited parent (socat's per-connection forks).
            kill -TERM "${kids[@]}" 2>/dev/null || true
            orphans_told=1
        fi
        if (((tries -= 1) < 0)); then
            log "$name did not exit within ${STOP_TIMEOUT}s, sending KILL"
            kill -KILL "$pid" "${kids[@]}" 2>/dev/null || true
            sleep 0.2
            break
        fi
        sleep 0.1
    done
    if ! all_dead "$pid" "${kids[@]}"; then
        log "$name processes still alive: $pid ${kids[*]}"
        return 1
    fi
    rm -f "$DIR/$name.pid"
}

# The proxies and dnsmasq are stopped in parallel (squid alone takes over a
# second to exit), then nginx.
cmd_stop() {
    local i failed=() any=0 name
    local -a jobs=()
    for ((i = 0; i < ${#SERVICES[@]}; i++)); do
        name=${SERVICES[i]}
        service_pid "$name" >/dev/null && any=1
        stop_service "$name" &
        jobs[i]=$!
    done
    for ((i = 0; i < ${#SERVICES[@]}; i++)); do
        wait "${jobs[i]}" || failed+=("${SERVICES[i]}")
    done
    running_pid >/dev/null && any=1
    stop_service nginx || failed+=(nginx)
    ((any)) || log "nothing was running"
    ((${#failed[@]} == 0)) || die "could not stop: ${failed[*]}"
}

any_running() {
    local name
    for name in nginx "${SERVICES[@]}"; do
        if service_pid "$name" >/dev/null; then return 0; fi
    done
    return 1
}

show_logs() {
    local f
    for f in error.log squid-cache.log squid.log tinyproxy.log microsocks.log \
        microsocks-noauth.log https-proxy.log dnsmasq.log ws-echo.log; do
        [[ -s $DIR/logs/$f ]] || continue
        printf -- '--- %s (last lines)\n' "$DIR/logs/$f" >&2
        tail -n 8 "$DIR/logs/$f" >&2 || true
    done
}

cmd_start() {
    local t0
    t0=$(date +%s%N)
    ensure_packages
    ensure_ws_venv
    if any_running; then
        log "already running, restarting"
        cmd_stop
    fi
    rm -f "$DIR/env.sh"
    check_ports_free

    local version
    version=$(nginx_version)
    HTTP2_DIRECTIVE=0
    version_ge "$version" 1.25.1 && HTTP2_DIRECTIVE=1
    IPV6=0
    ipv6_enabled && IPV6=1
    decide_echo

    log "generating PKI in $DIR/pki"
    generate_pki
    log "generating content in $DIR/www"
    generate_content
    write_nginx_conf

    log "starting nginx $version (ipv6=$IPV6, echo module=$USE_ECHO_MODULE)"
    : >"$DIR/logs/error.log"
    if ! "$(nginx_bin)" -p "$DIR" -c "$DIR/nginx.conf" -e "$DIR/logs/error.log" 9>&-; then
        die "nginx failed to start (config: $DIR/nginx.conf)"
    fi
    log "starting ${SERVICES[*]}"
    start_services
    if ! wait_ready; then
        show_logs
        (cmd_stop) || true
        die "test servers did not come up"
    fi
    write_env
    local ms=$((($(date +%s%N) - t0) / 1000000))
    log "ready in $((ms / 1000)).$(printf '%03d' $((ms % 1000)))s; source $DIR/env.sh"
    printf '%s\n' "$DIR/env.sh"
}

cmd_status() {
    local name pid down=0
    for name in nginx "${SERVICES[@]}"; do
        if pid=$(service_pid "$name"); then
            log "$name running (pid $pid)"
        else
            log "$name not running"
            down=1
        fi
    done
    if ((down)); then
        return 1
    fi
    log "env: $DIR/env.sh"
}

# One start/stop at a time per state directory (fd 9; closed for the servers).
lock() {
    exec 9>"$DIR/.lock"
    flock -w 300 9 || die "another testenv.sh start/stop holds $DIR/.lock"
}

main() {
    if [[ ${1:-} == start ]]; then mkdir -p "$DIR"; fi
    if [[ -d $DIR ]]; then DIR=$(cd "$DIR" && pwd -P); fi
    case ${1:-} in
        start) lock && cmd_start ;;
        stop) if [[ -d $DIR ]]; then lock; fi && cmd_stop ;;
        status) cmd_status ;;
        *)
            printf 'usage: %s start|stop|status\n' "${0##*/}" >&2
            exit 2
            ;;
    esac
}

main "$@"
