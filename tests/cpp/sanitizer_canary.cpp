/* sanitizer_canary: proves that the sanitizers tests/cpp/run.sh relies on are live in
 * this build and environment, so that a clean tern_test run means something (LSan, for
 * one, silently does nothing under ptrace or in some containers). Each mode must FAIL:
 *
 *   sanitizer_canary leak    leaks tern::Request objects, each owning a tern_request
 *                            allocated inside libtern (Rust): LeakSanitizer must see
 *                            both the C++ and the Rust allocations
 *   sanitizer_canary uaf     reads a body view after its tern::Response was destroyed:
 *                            AddressSanitizer must report a heap-use-after-free in
 *                            memory libtern allocated
 *   sanitizer_canary ubsan   a signed overflow: UndefinedBehaviorSanitizer must stop it
 *
 * Needs TERN_TEST_HTTP for `uaf`.
 */
#include "tern.hpp"

#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

__attribute__((noinline)) static void leak() {
    for (int i = 0; i < 8; i++) {
        (void)new tern::Request(tern::Request::get("http://127.0.0.1/"));
    }
}

__attribute__((noinline)) static int overflow(int x) { return x + INT_MAX; }

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "";
    if (std::strcmp(mode, "leak") == 0) {
        leak();
        std::puts("leaked 8 requests");
        return 0;
    }
    if (std::strcmp(mode, "uaf") == 0) {
        const char *http = std::getenv("TERN_TEST_HTTP");
        if (http == nullptr) return 2;
        auto rt = tern::Runtime::create().value();
        auto session = tern::Session::create(rt).value();
        std::string_view body;
        {
            tern::Response resp = session.perform(tern::Request::get(std::string(http) + "/hello")).value();
            body = resp.body();
        } // resp freed: `body` dangles
        std::printf("read %d\n", body[0]);
        return 0;
    }
    if (std::strcmp(mode, "ubsan") == 0) {
        std::printf("%d\n", overflow(argc));
        return 0;
    }
    std::fprintf(stderr, "usage: %s leak|uaf|ubsan\n", argv[0]);
    return 2;
}
