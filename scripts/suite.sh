# shellcheck shell=bash
# The harness shared by the test suites that end with one "N passed, M failed" line
# (tests/c, tests/cpp, tests/packaging). Source it after setting SUITE (the name in log
# lines) and root (the repository); it defines:
#   log MSG...                    a line on stderr
#   now, elapsed T0               seconds, and seconds since T0 (one decimal)
#   record NAME STATUS SECS [LOG] counts one test (STATUS 0 = pass) and prints its line;
#                                 on failure the last 40 lines of LOG follow
#   finish                        prints the failed names and the count line, exits
#   ensure_servers                the test servers answer (the running ones, the ones in
#                                 target/testenv/env.sh, or started now and stopped at exit)

passed=0
failed=0
failed_names=()
t_all=$(date +%s.%N)

log() { printf '%s: %s\n' "$SUITE" "$*" >&2; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

record() {
    local name=$1 status=$2 secs=$3 logf=${4:-}
    if [[ $status == 0 ]]; then
        passed=$((passed + 1))
        printf 'PASS  %-50s %6.1fs\n' "$name" "$secs"
    else
        failed=$((failed + 1))
        failed_names+=("$name")
        [[ $status =~ ^[0-9]+$ ]] && status="exit $status"
        printf 'FAIL  %-50s %6.1fs  (%s)\n' "$name" "$secs" "$status"
        if [[ -n $logf && -s $logf ]]; then
            tail -n 40 "$logf" | sed 's/^/      | /'
        fi
    fi
}

finish() {
    log "took $(elapsed "$t_all")s"
    if ((failed > 0)); then echo "failed: ${failed_names[*]}"; fi
    echo "$passed passed, $failed failed"
    ((failed == 0))
    exit $?
}

server_answers() {
    [[ -n ${TERN_TEST_HTTP:-} ]] &&
        curl -fsS --noproxy '*' --max-time 3 -o /dev/null "$TERN_TEST_HTTP/hello" 2>/dev/null
}

ensure_servers() {
    local env_file
    server_answers && return 0
    env_file=${TERN_TESTENV_DIR:-$root/target/testenv}/env.sh
    if [[ -r $env_file ]]; then
        # shellcheck disable=SC1090
        . "$env_file"
    fi
    server_answers && return 0
    log "starting the test servers (scripts/testenv.sh start)"
    if ! env_file=$("$root/scripts/testenv.sh" start); then
        record "test servers" "scripts/testenv.sh start failed" 0
        finish
    fi
    trap '"$root/scripts/testenv.sh" stop >/dev/null 2>&1 || true' EXIT
    # shellcheck disable=SC1090
    . "$env_file"
}
