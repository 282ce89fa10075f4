#!/usr/bin/env bash
# Local test environment for tern: real nginx servers on loopback high ports.
#
#   scripts/testenv.sh start   install missing packages (apt), generate a test
#                              PKI and content, (re)start nginx, wait until every
#                              port answers, write $TERN_TESTENV_DIR/env.sh and
#                              print its path on stdout.
#   scripts/testenv.sh stop    stop nginx (TERM, up to 5 s, then KILL); files stay.
#   scripts/testenv.sh status  exit 0 if nginx is running, 1 if not.
#
# Environment:
#   TERN_TESTENV_DIR   state directory (default: <repo>/target/testenv)
#   TERN_TESTENV_IPV6  auto (default) | 1 | 0 : also listen on [::1]:18080
#   TERN_TESTENV_ECHO  auto (default) | module | fallback : how /echo is served
#   TERN_NGINX         nginx binary (default: nginx from PATH or /usr/sbin/nginx)
#
# Everything binds to 127.0.0.1 (and [::1] for the plain HTTP port) only.
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

READY_TIMEOUT=20   # seconds for all ports to answer
STOP_TIMEOUT=5     # seconds between TERM and KILL

ECHO_MODULE_SO=/usr/lib/nginx/modules/ngx_http_echo_module.so

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

# Prints the pid of our nginx master if it is alive, else nothing (exit 1).
# Checks the command line so that a recycled pid is never mistaken for ours.
running_pid() {
    local pidfile=$DIR/nginx.pid pid cmdline
    [[ -r $pidfile ]] || return 1
    read -r pid <"$pidfile" || return 1
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    alive "$pid" || return 1
    cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
    [[ $cmdline == *nginx* && $cmdline == *"$DIR/nginx.conf"* ]] || return 1
    printf '%s\n' "$pid"
}

# Direct children of a pid (the nginx workers), read from /proc (no procps needed).
children_of() {
    local parent=$1 status ppid
    for status in /proc/[0-9]*/status; do
        ppid=$(awk '/^PPid:/ { print $2; exit }' "$status" 2>/dev/null) || continue
        if [[ $ppid == "$parent" ]]; then
            status=${status#/proc/}
            printf '%s\n' "${status%/status}"
        fi
    done
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

ensure_packages() {
    local -a missing=()
    [[ -x $(nginx_bin) ]] || missing+=(nginx)
    command -v openssl >/dev/null 2>&1 || missing+=(openssl)
    command -v curl >/dev/null 2>&1 || missing+=(curl)
    [[ -s /etc/ssl/certs/ca-certificates.crt ]] || missing+=(ca-certificates)
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

    # Keep the distribution's nginx service from starting (it would bind :80)
    # while the package is installed: a temporary policy-rc.d, only if none exists.
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
    local -a pkgs=("${missing[@]}")
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
    SHA_1M=$(sha256sum "$www/bytes/1m" | awk '{ print $1 }')
    SHA_16M=$(sha256sum "$www/bytes/16m" | awk '{ print $1 }')
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

# ------------------------------------------------------------- start/stop ---

# wait_url DEADLINE DESCRIPTION CURL_ARGS... : poll until curl gets a 200.
wait_url() {
    local deadline=$1 what=$2 code
    shift 2
    while :; do
        code=$(curl -sS -g --noproxy '*' -o /dev/null -w '%{http_code}' \
            --connect-timeout 1 --max-time 2 "$@" 2>/dev/null) || code=000
        [[ $code == 200 ]] && return 0
        if ((SECONDS >= deadline)); then
            log "$what did not answer 200 within ${READY_TIMEOUT}s (last status: $code)"
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
    } >"$tmp"
    mv -f "$tmp" "$DIR/env.sh"
}

cmd_stop() {
    local pid
    if ! pid=$(running_pid); then
        log "nginx is not running"
        rm -f "$DIR/nginx.pid"
        return 0
    fi
    local -a workers
    mapfile -t workers < <(children_of "$pid")
    log "stopping nginx (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    local tries=$((STOP_TIMEOUT * 10))
    while ! all_dead "$pid" "${workers[@]}"; do
        if (((tries -= 1) < 0)); then
            log "nginx did not exit within ${STOP_TIMEOUT}s, sending KILL"
            kill -KILL "$pid" "${workers[@]}" 2>/dev/null || true
            sleep 0.2
            break
        fi
        sleep 0.1
    done
    all_dead "$pid" "${workers[@]}" || die "nginx processes still alive: $pid ${workers[*]}"
    rm -f "$DIR/nginx.pid"
}

cmd_start() {
    local t0
    t0=$(date +%s%N)
    ensure_packages
    if running_pid >/dev/null; then
        log "already running, restarting"
        cmd_stop
    fi
    rm -f "$DIR/env.sh"

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
    if ! "$(nginx_bin)" -p "$DIR" -c "$DIR/nginx.conf" -e "$DIR/logs/error.log"; then
        die "nginx failed to start (config: $DIR/nginx.conf)"
    fi
    if ! wait_ready; then
        tail -n 20 "$DIR/logs/error.log" >&2 || true
        cmd_stop || true
        die "test servers did not come up"
    fi
    write_env
    local ms=$((($(date +%s%N) - t0) / 1000000))
    log "ready in $((ms / 1000)).$(printf '%03d' $((ms % 1000)))s; source $DIR/env.sh"
    printf '%s\n' "$DIR/env.sh"
}

cmd_status() {
    local pid
    if pid=$(running_pid); then
        log "nginx running (pid $pid), env: $DIR/env.sh"
        return 0
    fi
    log "nginx not running"
    return 1
}

main() {
    if [[ ${1:-} == start ]]; then mkdir -p "$DIR"; fi
    if [[ -d $DIR ]]; then DIR=$(cd "$DIR" && pwd -P); fi
    case ${1:-} in
        start) cmd_start ;;
        stop) cmd_stop ;;
        status) cmd_status ;;
        *)
            printf 'usage: %s start|stop|status\n' "${0##*/}" >&2
            exit 2
            ;;
    esac
}

main "$@"
