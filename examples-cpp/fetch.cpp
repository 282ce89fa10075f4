// fetch: tern from C++ (include/tern.hpp). One URL is fetched blocking, and its
// status, headers, body size and timings printed; several URLs are fetched at once,
// with a lambda per request, and one line printed per URL.
//
//   fetch [-c CA_FILE] [-H 'Name: value']... URL...
//
// Build, after `cargo build` (the rpath finds libtern.so.0, the link next to
// libtern.so that examples-c/Makefile makes; tests/cpp/run.sh builds it too):
//   c++ -std=c++17 -Iinclude examples-cpp/fetch.cpp -Ltarget/debug -ltern
//       -Wl,-rpath,$PWD/target/debug -pthread -o fetch
//
// Exit status: 0 when every exchange completed (any HTTP status), 1 when one failed
// (DNS, TLS, time-out...), 2 on bad usage.
#include "tern.hpp"

#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

namespace {

int usage(const char *argv0) {
    std::fprintf(stderr, "usage: %s [-c CA_FILE] [-H 'Name: value']... URL...\n", argv0);
    return 2;
}

// The blocking way: perform() returns when the response is complete.
int fetch_one(const tern::Session &session, tern::Request request) {
    tern::Result<tern::Response> result = session.perform(std::move(request));
    if (!result) { // refused: a bad URL, header, ...
        std::fprintf(stderr, "fetch: %s\n", result.error().to_string().c_str());
        return 1;
    }
    const tern::Response &resp = *result;
    if (!resp.ok()) { // accepted, but the exchange failed
        std::fprintf(stderr, "fetch: %s: %.*s\n", tern::code_name(resp.code()),
                     static_cast<int>(resp.message().size()), resp.message().data());
        return 1;
    }
    std::string_view url = resp.effective_url(), from = resp.remote_addr();
    std::printf("HTTP/%u.%u %u  (%.*s, %u redirects, from %.*s)\n", resp.version() / 10, resp.version() % 10,
                static_cast<unsigned>(resp.status()), static_cast<int>(url.size()), url.data(),
                resp.redirect_count(), static_cast<int>(from.size()), from.data());
    for (auto [name, value] : resp.headers()) {
        std::printf("%.*s: %.*s\n", static_cast<int>(name.size()), name.data(),
                    static_cast<int>(value.size()), value.data());
    }
    std::printf("\nbody: %zu bytes\n", resp.body().size());
    std::printf("timings (us): dns %lld, connect %lld, tls %lld, first byte %lld, total %lld\n",
                static_cast<long long>(resp.timing(tern::Timing::Dns).count()),
                static_cast<long long>(resp.timing(tern::Timing::Connect).count()),
                static_cast<long long>(resp.timing(tern::Timing::Tls).count()),
                static_cast<long long>(resp.timing(tern::Timing::Ttfb).count()),
                static_cast<long long>(resp.timing(tern::Timing::Total).count()));
    return 0;
}

// The concurrent way: send() returns at once; each lambda runs on a tern thread.
int fetch_many(const tern::Session &session, const std::vector<std::string> &urls,
               const std::vector<std::pair<std::string, std::string>> &headers) {
    std::mutex lock;
    std::condition_variable changed;
    std::vector<std::string> lines(urls.size());
    std::size_t pending = 0;
    int status = 0;

    for (std::size_t i = 0; i < urls.size(); i++) {
        tern::Request request = tern::Request::get(urls[i]);
        for (const auto &[name, value] : headers) request.header(name, value);
        {
            std::lock_guard<std::mutex> guard(lock);
            pending++; // before send: the lambda may run before send returns to us
        }
        auto sent = session.send(std::move(request), [&, i](tern::Response resp) {
            char line[256];
            if (resp.ok()) {
                std::snprintf(line, sizeof line, "%u, HTTP/%u.%u, %zu bytes, %.1f ms",
                              static_cast<unsigned>(resp.status()), resp.version() / 10, resp.version() % 10,
                              resp.body().size(),
                              static_cast<double>(resp.timing(tern::Timing::Total).count()) / 1000.0);
            } else {
                std::snprintf(line, sizeof line, "%s: %.*s", tern::code_name(resp.code()),
                              static_cast<int>(resp.message().size()), resp.message().data());
            }
            std::lock_guard<std::mutex> guard(lock);
            lines[i] = line;
            if (!resp.ok()) status = 1;
            pending--;
            changed.notify_all();
        });
        if (!sent) { // refused: the lambda was destroyed without running
            std::lock_guard<std::mutex> guard(lock);
            lines[i] = sent.error().to_string();
            status = 1;
            pending--;
        }
    }
    std::unique_lock<std::mutex> guard(lock);
    changed.wait(guard, [&] { return pending == 0; });
    for (std::size_t i = 0; i < urls.size(); i++) std::printf("%s: %s\n", urls[i].c_str(), lines[i].c_str());
    return status;
}

} // namespace

int main(int argc, char **argv) {
    std::string ca_file;
    std::vector<std::pair<std::string, std::string>> headers;
    std::vector<std::string> urls;
    for (int i = 1; i < argc; i++) {
        if (std::strcmp(argv[i], "-c") == 0 && i + 1 < argc) {
            ca_file = argv[++i];
        } else if (std::strcmp(argv[i], "-H") == 0 && i + 1 < argc) {
            std::string h = argv[++i];
            std::size_t colon = h.find(':');
            if (colon == std::string::npos) return usage(argv[0]);
            std::size_t v = h.find_first_not_of(' ', colon + 1);
            headers.emplace_back(h.substr(0, colon), v == std::string::npos ? "" : h.substr(v));
        } else if (argv[i][0] == '-') {
            return usage(argv[0]);
        } else {
            urls.emplace_back(argv[i]);
        }
    }
    if (urls.empty()) return usage(argv[0]);
    if (auto v = tern::check_version(); !v) {
        std::fprintf(stderr, "fetch: %s\n", v.error().to_string().c_str());
        return 1;
    }

    // Declared first, destroyed last: the session goes before its runtime.
    tern::Result<tern::Runtime> rt = tern::Runtime::create();
    if (!rt) {
        std::fprintf(stderr, "fetch: %s\n", rt.error().to_string().c_str());
        return 1;
    }
    tern::SessionOptions options;
    options.user_agent("tern-fetch-cpp").timeout(tern::Timeout::Total, std::chrono::seconds(60));
    if (!ca_file.empty()) options.add_ca_file(ca_file); // an error here comes back from create
    tern::Result<tern::Session> session = tern::Session::create(*rt, options);
    if (!session) {
        std::fprintf(stderr, "fetch: %s\n", session.error().to_string().c_str());
        return 1;
    }

    if (urls.size() == 1) {
        tern::Request request = tern::Request::get(urls[0]);
        for (const auto &[name, value] : headers) request.header(name, value);
        return fetch_one(*session, std::move(request));
    }
    return fetch_many(*session, urls, headers);
}
