/* check.h: the harness shared by the C tests: CHECK, and EXPECT / EXPECT1 /
 * EXPECT_CODE, which hold a call to the code its header documentation names and to an
 * error object of that code with a non-empty message; need_env, sleep_ms, wait_for,
 * and a listener that never accepts (hold_start). Define TEST_NAME (the program's name
 * in messages) and include it after tern.h; one translation unit per test program. */
#ifndef TERN_TESTS_CHECK_H
#define TERN_TESTS_CHECK_H

#ifndef TEST_NAME
#error "define TEST_NAME before including check.h"
#endif

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

/* The value of a test-environment variable (target/testenv/env.sh); exits if unset. */
static inline const char *need_env(const char *name) {
    const char *v = getenv(name);
    if (v == NULL || v[0] == '\0') {
        fprintf(stderr, TEST_NAME ": %s is not set (source target/testenv/env.sh)\n", name);
        exit(2);
    }
    return v;
}

static inline void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Waits (up to 60 s: valgrind is slow) until *counter reaches want. */
static inline bool wait_for(atomic_int *counter, int want) {
    for (int i = 0; i < 6000; i++) {
        if (atomic_load(counter) >= want) return true;
        sleep_ms(10);
    }
    return atomic_load(counter) >= want;
}

/* A listener that never accepts: a request to `url` connects and then waits forever
 * (until the test closes `fd`). */
struct hold {
    int fd;
    char url[64];
};

static inline struct hold hold_start(void) {
    struct hold h;
    h.fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (h.fd < 0 || bind(h.fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        listen(h.fd, 128) != 0 || getsockname(h.fd, (struct sockaddr *)&a, &len) != 0) {
        perror(TEST_NAME ": hold server");
        exit(1);
    }
    snprintf(h.url, sizeof h.url, "http://127.0.0.1:%u/hold", (unsigned)ntohs(a.sin_port));
    return h;
}

static int checks, failures;

#define CHECK(cond)                                                                    \
    do {                                                                               \
        checks++;                                                                      \
        if (!(cond)) {                                                                 \
            failures++;                                                                \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);   \
        }                                                                              \
    } while (0)

/* Checks a call's code and its error object: on failure an error with the same code
 * and a non-empty message, on success none. Frees the error. */
static inline void check_result(const char *file, int line, const char *expr, tern_code got,
                         tern_error *err, bool err_wanted, tern_code want) {
    checks++;
    if (got != want) {
        failures++;
        fprintf(stderr, "%s:%d: %s\n    returned %s (%u), want %s (%u)%s%s\n", file, line, expr,
                tern_code_name(got), (unsigned)got, tern_code_name(want), (unsigned)want,
                err ? ": " : "", err ? tern_error_message(err) : "");
    } else if (want != TERN_CODE_OK && err_wanted) {
        const char *msg = tern_error_message(err);
        if (err == NULL) {
            failures++;
            fprintf(stderr, "%s:%d: %s\n    returned %s but wrote no error\n", file, line, expr,
                    tern_code_name(got));
        } else if (tern_error_code(err) != want) {
            failures++;
            fprintf(stderr, "%s:%d: %s\n    error code %s, returned %s\n", file, line, expr,
                    tern_code_name(tern_error_code(err)), tern_code_name(got));
        } else if (msg == NULL || msg[0] == '\0') {
            failures++;
            fprintf(stderr, "%s:%d: %s\n    error message is empty\n", file, line, expr);
        }
    } else if (want == TERN_CODE_OK && err != NULL) {
        failures++;
        fprintf(stderr, "%s:%d: %s\n    succeeded but wrote an error: %s\n", file, line, expr,
                tern_error_message(err));
    }
    tern_error_free(err);
}

/* EXPECT(want, call): `call` is made twice, once with E = &an error variable and once
 * with E = NULL (the caller may always pass NULL for `err`). Only for calls that do
 * not consume anything. */
#define EXPECT(want, call)                                                             \
    do {                                                                               \
        for (int pass_ = 0; pass_ < 2; pass_++) {                                      \
            tern_error *err_ = NULL;                                                   \
            tern_error **E = pass_ == 0 ? &err_ : NULL;                                \
            tern_code got_ = (call);                                                   \
            check_result(__FILE__, __LINE__, #call, got_, err_, pass_ == 0, (want));   \
        }                                                                              \
    } while (0)

/* EXPECT1(want, call): made once, with E = &an error variable (for consuming calls). */
#define EXPECT1(want, call)                                                            \
    do {                                                                               \
        tern_error *err_ = NULL;                                                       \
        tern_error **E = &err_;                                                        \
        tern_code got_ = (call);                                                       \
        check_result(__FILE__, __LINE__, #call, got_, err_, true, (want));             \
    } while (0)

/* For functions without `err`: the code only. */
#define EXPECT_CODE(want, call)                                                        \
    check_result(__FILE__, __LINE__, #call, (call), NULL, false, (want))

#endif
