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
#   run NAME WANT [--grep P]... -- COMMAND...
#                                 one program run as a test (see below)

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

# run NAME EXPECTED_EXIT [--grep PATTERN | --grep-v PATTERN]... -- COMMAND...: one
# program run as a test, its output in $RUN_LOGS/$RUN_LOG_PREFIX<name>.log, with a time
# limit of $RUN_TIMEOUT seconds; it passes when COMMAND exits EXPECTED_EXIT, every
# --grep PATTERN appears in its output and no --grep-v PATTERN does. Unless NAME starts with "native", COMMAND runs under the RUN_UNDER array
# (valgrind, when a suite sets it).
RUN_LOGS=${RUN_LOGS:-}
RUN_LOG_PREFIX=${RUN_LOG_PREFIX:-}
RUN_TIMEOUT=${RUN_TIMEOUT:-120}
RUN_UNDER=()
run() {
    local name=$1 want=$2
    shift 2
    local -a greps=() nots=()
    while [[ $1 == --grep || $1 == --grep-v ]]; do
        if [[ $1 == --grep ]]; then greps+=("$2"); else nots+=("$2"); fi
        shift 2
    done
    [[ $1 == -- ]] && shift
    local logf=$RUN_LOGS/$RUN_LOG_PREFIX${name//[^A-Za-z0-9_.-]/_}.log t0 rc status=0
    if [[ $1 == */* && ! -x $1 ]]; then
        record "$name" "not built" 0
        return
    fi
    local -a cmd=("$@")
    if [[ $name != native* && ${#RUN_UNDER[@]} -gt 0 ]]; then cmd=("${RUN_UNDER[@]}" "$@"); fi
    t0=$(now)
    timeout "$RUN_TIMEOUT" "${cmd[@]}" >"$logf" 2>&1
    rc=$?
    if [[ $rc != "$want" ]]; then
        status="exit $rc, wanted $want"
        if ((rc > 128 && rc < 160)); then
            echo "killed by signal $((rc - 128)) ($(kill -l "$((rc - 128))" 2>/dev/null))" >>"$logf"
        fi
        echo "exit status $rc, wanted $want" >>"$logf"
    fi
    for g in "${greps[@]}"; do
        if ! grep -qE -- "$g" "$logf"; then
            echo "output lacks: $g" >>"$logf"
            [[ $status == 0 ]] && status="output lacks: $g"
        fi
    done
    for g in "${nots[@]}"; do
        if grep -qE -- "$g" "$logf"; then
            echo "output has what it must not: $g" >>"$logf"
            [[ $status == 0 ]] && status="output has: $g"
        fi
    done
    record "$name" "$status" "$(elapsed "$t0")" "$logf"
}
