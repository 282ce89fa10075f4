/* check.h: the checking harness shared by the bad-input tests: CHECK, and EXPECT /
 * EXPECT1 / EXPECT_CODE, which hold a call to the code its header documentation names
 * and to an error object of that code with a non-empty message. Include after
 * tern.h, <stdbool.h> and <stdio.h>; one translation unit per test program. */
#ifndef TERN_TESTS_CHECK_H
#define TERN_TESTS_CHECK_H

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
