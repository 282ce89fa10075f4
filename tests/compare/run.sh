#!/usr/bin/env bash
# tern against the curl CLI, option by option, on the same test servers
# (scripts/testenv.sh): for each case both clients run with the equivalent options,
# and their outcomes are compared as "ok <HTTP status>" or "fail" (with curl's exit
# code and tern's error code beside). A case either has the same outcome in both, or
# is a difference this project makes on purpose, named in the table with its reason;
# any other result fails the suite. Prints the table (markdown), then
# "N passed, M failed" for scripts/test.sh.
#
#   tests/compare/run.sh        (after scripts/testenv.sh start and cargo build)
set -uo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
# shellcheck source=/dev/null
source "$root/target/testenv/env.sh" || { echo "compare: run scripts/testenv.sh start first" >&2; exit 1; }
if ! command -v curl >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq curl >/dev/null ||
        { echo "compare: cannot install curl" >&2; exit 1; }
fi

out=$root/target/compare
mkdir -p "$out"
lib=$root/target/debug
cc -std=c11 -Wall -Wextra -Werror -O1 -I"${TERN_INCLUDE:-$root/include}" examples-c/options.c \
    -o "$out/options" -L"$lib" -ltern -Wl,-rpath,"$lib" -pthread || exit 1
[[ -e $lib/libtern.so.0 ]] || ln -sf libtern.so "$lib/libtern.so.0"

CA=$TERN_TEST_CA
P_USER=$TERN_TEST_PROXY_USER
P_PASS=$TERN_TEST_PROXY_PASS
H=$TERN_TEST_HTTP
S=$TERN_TEST_HTTPS
ONLY=http://$TERN_TEST_PROXY_ONLY_HOST:18080/hello
failures=0
cases=0

curl_outcome() { # curl ARGS... -> "ok 200" | "fail (exit N)"
    local code rc
    code=$(env ${CASE_ENV:-} curl -s -o /dev/null -w '%{http_code}' --max-time 10 "$@")
    rc=$?
    if ((rc == 0)); then echo "ok $code"; else echo "fail (exit $rc)"; fi
}
tern_outcome() { # options ARGS... -> "ok 200" | "fail (CODE)"
    local line rc
    line=$(env ${CASE_ENV:-} timeout 20 "$out/options" --timeout 10000 "$@" 2>&1 | tail -n 1)
    rc=${PIPESTATUS[0]}
    case $rc in
        0) echo "ok $(awk '{print $2}' <<<"$line")" ;;
        1) echo "fail ($(sed -E 's/^[^:]*: ([A-Z_0-9]+).*/\1/; s/^([A-Z_0-9]+) .*/\1/' <<<"$line"))" ;;
        *) echo "error (exit $rc: $line)" ;;
    esac
}
class() { sed -E 's/ \(.*//' <<<"$1"; }

echo "| case | curl | tern | |"
echo "|---|---|---|---|"
# case NAME EXPECTED-DIFFERENCE(or -) -- CURL-ARGS -- TERN-ARGS
case_() {
    local name=$1 why=$2
    shift 2
    [[ $1 == -- ]] || { echo "bad case $name" >&2; exit 2; }
    shift
    local cargs=() targs=()
    while [[ $1 != -- ]]; do cargs+=("$1"); shift; done
    shift
    targs=("$@")
    local c t
    c=$(curl_outcome "${cargs[@]}")
    t=$(tern_outcome "${targs[@]}")
    local verdict
    cases=$((cases + 1))
    if [[ $why == - ]]; then
        if [[ $(class "$c") == "$(class "$t")" ]]; then verdict=same; else verdict="**differs (unexpected)**"; failures=$((failures + 1)); fi
    else
        if [[ $(class "$c") != "$(class "$t")" ]]; then verdict="differs: $why"; else verdict="**same, but a difference was expected: $why**"; failures=$((failures + 1)); fi
    fi
    echo "| $name | $c | $t | $verdict |"
}

case_ "HTTPS, the test CA given" - -- --cacert "$CA" "$S/hello" -- --ca "$CA" "$S/hello"
case_ "HTTPS, system roots only" - -- "$S/hello" -- "$S/hello"
case_ "expired certificate" - -- --cacert "$CA" "$TERN_TEST_HTTPS_EXPIRED/hello" -- --ca "$CA" "$TERN_TEST_HTTPS_EXPIRED/hello"
case_ "another host's certificate" - -- --cacert "$CA" "$TERN_TEST_HTTPS_WRONGHOST/hello" -- --ca "$CA" "$TERN_TEST_HTTPS_WRONGHOST/hello"
case_ "another host's certificate, insecure" - -- -k "$TERN_TEST_HTTPS_WRONGHOST/hello" -- --insecure "$TERN_TEST_HTTPS_WRONGHOST/hello"
case_ "self-signed, insecure" - -- -k "$TERN_TEST_HTTPS_SELFSIGNED/hello" -- --insecure "$TERN_TEST_HTTPS_SELFSIGNED/hello"
case_ "client certificate required, none given" - -- --cacert "$CA" "$TERN_TEST_HTTPS_CLIENTCERT/hello" -- --ca "$CA" "$TERN_TEST_HTTPS_CLIENTCERT/hello"
case_ "client certificate given" - -- --cacert "$CA" --cert "$TERN_TEST_CLIENT_CERT" --key "$TERN_TEST_CLIENT_KEY" "$TERN_TEST_HTTPS_CLIENTCERT/hello" \
    -- --ca "$CA" --cert "$TERN_TEST_CLIENT_CERT" --key "$TERN_TEST_CLIENT_KEY" "$TERN_TEST_HTTPS_CLIENTCERT/hello"
case_ "squid with basic auth, a name only squid resolves" - -- -x "$TERN_TEST_SQUID" -U "$P_USER:$P_PASS" "$ONLY" \
    -- --proxy "$TERN_TEST_SQUID" --proxy-user "$P_USER:$P_PASS" "$ONLY"
case_ "squid, credentials missing" "tern reports PROXY_AUTH for a 407 from the proxy (the response is kept); curl returns the 407 as the answer" \
    -- -x "$TERN_TEST_SQUID" "$ONLY" -- --proxy "$TERN_TEST_SQUID" "$ONLY"
case_ "HTTPS through squid (CONNECT)" - -- -x "$TERN_TEST_SQUID" -U "$P_USER:$P_PASS" --cacert "$CA" "$S/hello" \
    -- --proxy "$TERN_TEST_SQUID" --proxy-user "$P_USER:$P_PASS" --ca "$CA" "$S/hello"
case_ "tinyproxy, a name only the proxy resolves" - -- -x "$TERN_TEST_TINYPROXY" "http://localhost:18080/hello" -- --proxy "$TERN_TEST_TINYPROXY" "http://localhost:18080/hello"
case_ "SOCKS5 with user and password, name resolved by the proxy" - -- -x "socks5h://$TERN_TEST_SOCKS_USER:$TERN_TEST_SOCKS_PASS@$TERN_TEST_SOCKS" "$H/hello" \
    -- --proxy "socks5h://$TERN_TEST_SOCKS_USER:$TERN_TEST_SOCKS_PASS@$TERN_TEST_SOCKS" "$H/hello"
case_ "SOCKS5, wrong password" - -- -x "socks5h://$TERN_TEST_SOCKS_USER:wrong@$TERN_TEST_SOCKS" "$H/hello" \
    -- --proxy "socks5h://$TERN_TEST_SOCKS_USER:wrong@$TERN_TEST_SOCKS" "$H/hello"
CASE_ENV="http_proxy=$TERN_TEST_SQUID_NOAUTH" case_ "http_proxy from the environment (lower case)" - -- "$ONLY" -- --env-proxy "$ONLY"
case_ "no-proxy list bypasses a proxy that does not exist" - -- -x http://127.0.0.1:1 --noproxy 127.0.0.1 "$H/hello" \
    -- --proxy http://127.0.0.1:1 --no-proxy 127.0.0.1 "$H/hello"
case_ "static address override (--resolve)" - -- --resolve "app.tern.test:18080:127.0.0.1" "http://app.tern.test:18080/hello" \
    -- --resolve "app.tern.test:18080:127.0.0.1" "http://app.tern.test:18080/hello"
case_ "a name only the test nameserver knows" "curl's --dns-servers needs a c-ares build (Debian's curl uses the system resolver); tern asks the nameserver itself" \
    -- --dns-servers "$TERN_TEST_DNS" "http://v4.tern.test:18080/hello" -- --dns "$TERN_TEST_DNS" "http://v4.tern.test:18080/hello"
case_ "IPv6 only (-6) to [::1]" - -- -6 "$TERN_TEST_HTTP6/hello" -- -6 "$TERN_TEST_HTTP6/hello"
# curl answers "localhost" itself (127.0.0.1 and ::1, RFC 6761); tern asks the system
# resolver, so the two differ where /etc/hosts has no ::1 for localhost.
if getent ahostsv6 localhost 2>/dev/null | grep -q '^::1 '; then
    why_localhost=-
else
    why_localhost="curl answers localhost itself with ::1 too (RFC 6761); tern asks the system resolver, which has only 127.0.0.1 for it here"
fi
case_ "IPv6 only (-6) to localhost" "$why_localhost" -- -6 "http://localhost:18080/hello" -- -6 "http://localhost:18080/hello"
# A server that accepts and never answers, stopped by pid at exit.
python3 -c 'import socket,time
s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 18099)); s.listen(64); c=[]
while True: c.append(s.accept())' &
mute_pid=$!
trap 'kill $mute_pid 2>/dev/null' EXIT
for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/18099) 2>/dev/null && break; sleep 0.1; done
case_ "total time-out, the server never answers" - -- --max-time 0.5 "http://127.0.0.1:18099/" -- --timeout 500 "http://127.0.0.1:18099/"
case_ "connection refused" - -- "http://127.0.0.1:1/" -- "http://127.0.0.1:1/"
CASE_ENV="HTTP_PROXY=$TERN_TEST_SQUID_NOAUTH" case_ "HTTP_PROXY from the environment (upper case) for an http:// URL" \
    "curl ignores upper-case HTTP_PROXY (only http_proxy, against the CGI 'httpoxy' problem); tern reads both, as reqwest" \
    -- "$ONLY" -- --env-proxy "$ONLY"
echo
echo "$((cases - failures)) passed, $failures failed"
((failures == 0))
