/* The checks shared by the C++ test programs (tern_test.cpp, ws_test.cpp): CHECK
 * macros callable from any thread (callbacks check too), a printer for what failed,
 * the test environment's variables, and a wait with a deadline. Each program is one
 * translation unit that includes this once. */
#pragma once

#include "tern.hpp"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <type_traits>

using namespace std::chrono_literals;
using tern::Code;

static std::atomic<int> g_checks{0};
static std::atomic<int> g_failed_checks{0};
static std::mutex g_print_lock;

static void report(const char *file, int line, const std::string &what) {
    g_failed_checks++;
    std::lock_guard<std::mutex> guard(g_print_lock);
    std::fprintf(stderr, "    %s:%d: %s\n", file, line, what.c_str());
}

template <class T>
static std::string show(const T &v) {
    std::ostringstream os;
    if constexpr (std::is_same_v<T, Code>) {
        os << tern::code_name(v);
    } else if constexpr (std::is_enum_v<T>) {
        os << static_cast<std::underlying_type_t<T>>(v);
    } else if constexpr (std::is_convertible_v<const T &, std::string_view>) {
        std::string_view s = v;
        os << '"' << (s.size() > 80 ? std::string(s.substr(0, 80)) + "..." : std::string(s)) << '"';
    } else if constexpr (std::is_same_v<T, std::optional<std::string_view>> ||
                         std::is_same_v<T, std::optional<std::string>>) {
        os << (v ? show(*v) : std::string("nullopt"));
    } else {
        os << v;
    }
    return os.str();
}

#define CHECK(cond)                                                                                          \
    do {                                                                                                     \
        g_checks++;                                                                                          \
        if (!(cond)) report(__FILE__, __LINE__, "CHECK(" #cond ")");                                         \
    } while (0)

#define CHECK_EQ(a, b)                                                                                       \
    do {                                                                                                     \
        g_checks++;                                                                                          \
        const auto &a_ = (a);                                                                                \
        const auto &b_ = (b);                                                                                \
        if (!(a_ == b_)) report(__FILE__, __LINE__, #a " == " #b ": " + show(a_) + " vs " + show(b_));       \
    } while (0)

/* A Result that must be OK: on an error, reports it (code and message). */
#define CHECK_OK(result)                                                                                     \
    do {                                                                                                     \
        g_checks++;                                                                                          \
        const auto &r_ = (result);                                                                           \
        if (!r_.ok()) report(__FILE__, __LINE__, #result " failed: " + r_.error().to_string());              \
    } while (0)

/* A Result that must be an error of `want`, with a message. */
#define CHECK_ERR(result, want)                                                                              \
    do {                                                                                                     \
        g_checks++;                                                                                          \
        const auto &r_ = (result);                                                                           \
        if (r_.ok()) {                                                                                       \
            report(__FILE__, __LINE__, #result " succeeded, want " + show(want));                            \
        } else if (r_.error().code() != (want) || r_.error().message().empty()) {                            \
            report(__FILE__, __LINE__, #result ": " + r_.error().to_string() + ", want " + show(want));      \
        }                                                                                                    \
    } while (0)

// ---------------------------------------------------------------------------------
// Test environment and helpers

static std::string env(const char *name) {
    const char *v = std::getenv(name);
    return v != nullptr ? v : "";
}

/* Polls `cond` until true or the deadline. */
template <class F>
static bool eventually(F cond, std::chrono::milliseconds limit = 20s) {
    auto end = std::chrono::steady_clock::now() + limit;
    while (!cond()) {
        if (std::chrono::steady_clock::now() > end) return false;
        std::this_thread::sleep_for(2ms);
    }
    return true;
}

/* One named test of a program. */
struct Test {
    const char *name;
    void (*fn)();
};

/* Runs the tests whose names contain one of `argv[1..]` (all without arguments), one
 * line each, then "<program> (<exceptions?>): N checks; P passed, F failed". Returns
 * main's exit status. */
template <std::size_t N>
static int run_tests(const char *program, const Test (&tests)[N], int argc, char **argv) {
    int passed = 0, failed = 0;
    for (const Test &t : tests) {
        if (argc > 1) {
            bool wanted = false;
            for (int i = 1; i < argc; i++) wanted = wanted || std::strstr(t.name, argv[i]) != nullptr;
            if (!wanted) continue;
        }
        int before = g_failed_checks.load();
        auto t0 = std::chrono::steady_clock::now();
        t.fn();
        double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        bool ok = g_failed_checks.load() == before;
        (ok ? passed : failed)++;
        std::lock_guard<std::mutex> g(g_print_lock);
        std::printf("%s  %-24s %6.2fs\n", ok ? "PASS" : "FAIL", t.name, secs);
        std::fflush(stdout);
    }
    std::printf("%s (%s): %d checks; %d passed, %d failed\n", program,
                TERN_HPP_EXCEPTIONS ? "exceptions" : "no exceptions", g_checks.load(), passed, failed);
    return failed == 0 ? 0 : 1;
}
