#!/usr/bin/env python3
"""The C ABI from a dynamic language's FFI: Python's ctypes loads the installed
libtern.so.0 and runs requests with callbacks.

    ctypes_test.py LIBTERN_SO VERSION HTTP_BASE HTTPS_BASE CA_FILE

Checks: the version functions; a refused request (bad URL) with its error message; a
blocking request and every response accessor; many concurrent requests with a
CFUNCTYPE on_complete, on_headers and release (HTTP/1.1 and HTTP/2 over TLS, 200s and
404s), each completed and released exactly once, in that order, on tern's threads;
requests in flight when the runtime is freed (OK or SHUTDOWN, still exactly once).

The CFUNCTYPE objects are kept alive (module-level) for as long as tern may call them;
callbacks come on tern's threads and ctypes takes the GIL for them (a CDLL call
releases it, so tern_runtime_free may wait for callbacks that need it).

Prints "ctypes: OK: ..." and exits 0, or lists the failures and exits 1.
"""
import ctypes
import sys
import threading
import time
from ctypes import (CFUNCTYPE, POINTER, Structure, byref, c_char_p, c_size_t, c_uint16,
                    c_uint32, c_uint64, c_uint8, c_void_p, string_at)

if len(sys.argv) != 6:
    print(__doc__, file=sys.stderr)
    sys.exit(2)
LIB_PATH, VERSION, HTTP, HTTPS, CA = sys.argv[1:]

failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL", what, file=sys.stderr)


# --- the library and its prototypes (from tern.h) -----------------------------------
lib = ctypes.CDLL(LIB_PATH)

OK, INVALID_URL, NOT_FOUND, SHUTDOWN = 0, 3, 10, 701
TIMING_TOTAL = 4
ACTION_CONTINUE = 0

ON_COMPLETE = CFUNCTYPE(None, c_void_p, c_void_p)
ON_HEADERS = CFUNCTYPE(c_uint32, c_void_p, c_void_p)
ON_DATA = CFUNCTYPE(c_uint32, c_void_p, POINTER(c_uint8), c_size_t)
ON_PROGRESS = CFUNCTYPE(None, c_void_p, c_uint64, c_uint64, c_uint64, c_uint64)
ON_UPLOAD_READY = CFUNCTYPE(None, c_void_p)
RELEASE = CFUNCTYPE(None, c_void_p)


class Callbacks(Structure):
    _fields_ = [
        ("struct_size", c_size_t),
        ("on_complete", ON_COMPLETE),
        ("on_headers", ON_HEADERS),
        ("on_data", ON_DATA),
        ("on_progress", ON_PROGRESS),
        ("on_upload_ready", ON_UPLOAD_READY),
        ("release", RELEASE),
    ]


def proto(name, restype, *argtypes):
    f = getattr(lib, name)
    f.restype = restype
    f.argtypes = list(argtypes)
    return f


P = c_void_p  # every opaque handle
PP = POINTER(c_void_p)
tern_version = proto("tern_version", c_char_p)
tern_version_check = proto("tern_version_check", c_uint32, c_uint32, c_uint32)
tern_code_name = proto("tern_code_name", c_char_p, c_uint32)
tern_error_message = proto("tern_error_message", c_char_p, P)
tern_error_code = proto("tern_error_code", c_uint32, P)
tern_error_free = proto("tern_error_free", None, P)
tern_runtime_new = proto("tern_runtime_new", c_uint32, P, PP, PP)
tern_runtime_free = proto("tern_runtime_free", None, P)
tern_session_options_new = proto("tern_session_options_new", c_uint32, PP, PP)
tern_session_options_free = proto("tern_session_options_free", None, P)
tern_session_options_add_ca_file = proto("tern_session_options_add_ca_file", c_uint32,
                                         P, c_char_p, PP)
tern_session_new = proto("tern_session_new", c_uint32, P, P, PP, PP)
tern_session_free = proto("tern_session_free", None, P)
tern_request_new = proto("tern_request_new", c_uint32, c_char_p, c_char_p, PP, PP)
tern_request_add_header = proto("tern_request_add_header", c_uint32, P, c_char_p,
                                c_char_p, PP)
tern_session_send = proto("tern_session_send", c_uint32, P, P, POINTER(Callbacks),
                          c_void_p, POINTER(c_uint64), PP)
tern_session_perform = proto("tern_session_perform", c_uint32, P, P, PP, PP)
tern_response_free = proto("tern_response_free", None, P)
tern_response_id = proto("tern_response_id", c_uint64, P)
tern_response_code = proto("tern_response_code", c_uint32, P)
tern_response_message = proto("tern_response_message", c_char_p, P)
tern_response_status = proto("tern_response_status", c_uint16, P)
tern_response_version = proto("tern_response_version", c_uint32, P)
tern_response_header_count = proto("tern_response_header_count", c_size_t, P)
tern_response_header_at = proto("tern_response_header_at", c_uint32, P, c_size_t,
                                POINTER(c_char_p), POINTER(c_size_t),
                                POINTER(POINTER(c_uint8)), POINTER(c_size_t))
tern_response_header_get = proto("tern_response_header_get", c_uint32, P, c_char_p,
                                 c_size_t, POINTER(POINTER(c_uint8)), POINTER(c_size_t),
                                 PP)
tern_response_body = proto("tern_response_body", c_uint32, P, POINTER(POINTER(c_uint8)),
                           POINTER(c_size_t))
tern_response_effective_url = proto("tern_response_effective_url", c_char_p, P)
tern_response_remote_addr = proto("tern_response_remote_addr", c_char_p, P)
tern_response_redirect_count = proto("tern_response_redirect_count", c_uint32, P)
tern_response_timing_us = proto("tern_response_timing_us", c_uint64, P, c_uint32)


def take_error(err):
    """The message of an owned tern_error (freed here), or ''."""
    if not err.value:
        return ""
    msg = tern_error_message(err).decode()
    tern_error_free(err)
    err.value = None
    return msg


def header(resp, name, nth=0):
    data, n = POINTER(c_uint8)(), c_size_t()
    code = tern_response_header_get(resp, name.encode(), nth, byref(data), byref(n), None)
    return string_at(data, n.value).decode() if code == OK else None


def body(resp):
    data, n = POINTER(c_uint8)(), c_size_t()
    check(tern_response_body(resp, byref(data), byref(n)) == OK, "tern_response_body")
    return string_at(data, n.value) if n.value else b""


def new_runtime_and_session():
    rt, opts, s, err = c_void_p(), c_void_p(), c_void_p(), c_void_p()
    check(tern_runtime_new(None, byref(rt), byref(err)) == OK, "runtime_new " + take_error(err))
    check(tern_session_options_new(byref(opts), byref(err)) == OK, "options_new")
    check(tern_session_options_add_ca_file(opts, CA.encode(), byref(err)) == OK,
          "add_ca_file " + take_error(err))
    check(tern_session_new(rt, opts, byref(s), byref(err)) == OK,
          "session_new " + take_error(err))
    tern_session_options_free(opts)
    return rt, s


# --- versions and a refused request ---------------------------------------------------
check(tern_version().decode() == VERSION, f"tern_version() {tern_version()!r} != {VERSION}")
major, minor = (int(x) for x in VERSION.split(".")[:2])
check(tern_version_check(major, minor) == OK, "tern_version_check(this version)")
check(tern_version_check(major + 1, 0) != OK, "tern_version_check(next major) must fail")
check(tern_code_name(OK) == b"OK", "tern_code_name(0)")
check(tern_code_name(SHUTDOWN) == b"SHUTDOWN", "tern_code_name(701)")

rq, err = c_void_p(), c_void_p()
code = tern_request_new(b"GET", b"not a url", byref(rq), byref(err))
check(code == INVALID_URL, f"bad URL: {tern_code_name(code)}")
check(err.value is not None and tern_error_code(err) == INVALID_URL, "bad URL: tern_error")
check(bool(take_error(err)), "bad URL: an error message")
check(rq.value is None, "bad URL: *out untouched")

rt, session = new_runtime_and_session()

# --- one blocking request and every accessor --------------------------------------------
rq, resp = c_void_p(), c_void_p()
check(tern_request_new(b"GET", (HTTP + "/hello").encode(), byref(rq), byref(err)) == OK,
      "request_new /hello")
check(tern_request_add_header(rq, b"X-Test", b"ctypes", byref(err)) == OK, "add_header")
code = tern_session_perform(session, rq, byref(resp), byref(err))
check(code == OK, "perform: " + take_error(err))
check(tern_response_code(resp) == OK, "perform: response code")
check(tern_response_message(resp) in (None, b""), "perform: no message on success")
check(tern_response_status(resp) == 200, "perform: status 200")
check(tern_response_version(resp) == 11, f"perform: version {tern_response_version(resp)}")
check(body(resp) == b"Hello, world!", "perform: body")
check(header(resp, "content-length") == "13", "perform: content-length")
check(header(resp, "Content-Length") == "13", "perform: header names are case-insensitive")
check(header(resp, "x-no-such-header") is None, "perform: a missing header")
names = []
for i in range(tern_response_header_count(resp)):
    name, nlen, val, vlen = c_char_p(), c_size_t(), POINTER(c_uint8)(), c_size_t()
    check(tern_response_header_at(resp, i, byref(name), byref(nlen), byref(val),
                                  byref(vlen)) == OK, "header_at")
    names.append(string_at(name, nlen.value).decode().lower())
check("content-type" in names and "content-length" in names, f"header_at names {names}")
check(tern_response_effective_url(resp).decode() == HTTP + "/hello", "effective_url")
check(tern_response_remote_addr(resp).decode() == HTTP.split("//")[1], "remote_addr")
check(tern_response_redirect_count(resp) == 0, "redirect_count")
check(tern_response_timing_us(resp, TIMING_TOTAL) > 0, "timing_us(TOTAL)")
tern_response_free(resp)

# --- many requests at once, with callbacks ---------------------------------------------
main_thread = threading.get_ident()
lock = threading.Condition()
state = {}  # key -> dict, for every request sent
released_total = 0


@ON_HEADERS
def on_headers(user_data, head):
    with lock:
        st = state[user_data]
        st["headers"] += 1
        st["head_status"] = tern_response_status(head)
    return ACTION_CONTINUE


@ON_COMPLETE
def on_complete(user_data, resp):
    got = {
        "code": tern_response_code(resp),
        "status": tern_response_status(resp),
        "version": tern_response_version(resp),
        "body": body(resp),
        "id": tern_response_id(resp),
        "message": (tern_response_message(resp) or b"").decode(),
    }
    tern_response_free(resp)
    with lock:
        st = state[user_data]
        st["completed"] += 1
        st["on_tern_thread"] = threading.get_ident() != main_thread
        st["released_before_complete"] = st["released"] > 0
        st.update(got)


@RELEASE
def release(user_data):
    global released_total
    with lock:
        state[user_data]["released"] += 1
        released_total += 1
        lock.notify_all()


CALLBACKS = Callbacks(struct_size=ctypes.sizeof(Callbacks), on_complete=on_complete,
                      on_headers=on_headers, release=release)
next_key = 1


def send(sess, url):
    """Sends GET url; returns (key, accepted)."""
    global next_key
    key = next_key
    next_key += 1
    with lock:
        state[key] = {"url": url, "completed": 0, "released": 0, "headers": 0}
    rq, err, rid = c_void_p(), c_void_p(), c_uint64()
    check(tern_request_new(b"GET", url.encode(), byref(rq), byref(err)) == OK, "request_new")
    code = tern_session_send(sess, rq, byref(CALLBACKS), c_void_p(key), byref(rid), byref(err))
    check(code == OK, f"send {url}: {tern_code_name(code)} {take_error(err)}")
    with lock:
        state[key]["send_id"] = rid.value
    return key, code == OK


def wait_released(count, secs):
    deadline = time.monotonic() + secs
    with lock:
        while released_total < count and time.monotonic() < deadline:
            lock.wait(0.5)
        return released_total >= count


URLS = [(HTTP + "/hello", 200, 11), (HTTPS + "/hello", 200, 20), (HTTP + "/status/404", 404, 11)]
N = 600
t0 = time.monotonic()
accepted = sum(send(session, URLS[i % 3][0])[1] for i in range(N))
check(accepted == N, f"accepted {accepted} of {N}")
check(wait_released(accepted, 60), f"released {released_total} of {accepted} in 60 s")
elapsed = time.monotonic() - t0
ids = set()
with lock:
    for key, st in state.items():
        want_status, want_version = next((s, v) for u, s, v in URLS if u == st["url"])
        where = f"request {key} ({st['url']})"
        check(st["completed"] == 1 and st["released"] == 1,
              f"{where}: completed {st['completed']}, released {st['released']} times")
        check(not st.get("released_before_complete"), f"{where}: release before on_complete")
        check(st.get("on_tern_thread"), f"{where}: on_complete on the calling thread")
        check(st.get("code") == OK, f"{where}: {tern_code_name(st.get('code', 900))} "
              f"{st.get('message')}")
        check(st.get("status") == want_status and st["headers"] == 1
              and st.get("head_status") == want_status,
              f"{where}: status {st.get('status')}, on_headers {st['headers']} times")
        check(st.get("version") == want_version, f"{where}: version {st.get('version')}")
        check(st.get("id") == st.get("send_id"), f"{where}: response id != send id")
        if want_status == 200:
            check(st.get("body") == b"Hello, world!", f"{where}: body {st.get('body')!r}")
        ids.add(st.get("send_id"))
check(len(ids) == N, "request ids are unique")

# --- requests in flight when the runtime is freed ---------------------------------------
before = released_total
rt2, session2 = new_runtime_and_session()
keys = [send(session2, URLS[i % 2][0])[0] for i in range(100)]
tern_runtime_free(rt2)  # releases the GIL: the callbacks run meanwhile
check(wait_released(before + len(keys), 30), "in flight at runtime free: not all released")
outcomes = {}
with lock:
    for key in keys:
        st = state[key]
        check(st["completed"] == 1 and st["released"] == 1,
              f"runtime free: request {key} completed {st['completed']}, released "
              f"{st['released']} times")
        name = tern_code_name(st.get("code", 900)).decode()
        outcomes[name] = outcomes.get(name, 0) + 1
check(set(outcomes) <= {"OK", "SHUTDOWN"}, f"runtime free: outcomes {outcomes}")
rq = c_void_p()
check(tern_request_new(b"GET", (HTTP + "/hello").encode(), byref(rq), None) == OK, "request")
code = tern_session_send(session2, rq, byref(CALLBACKS), c_void_p(0), None, byref(err))
check(code == SHUTDOWN, f"send after runtime free: {tern_code_name(code)}, want SHUTDOWN")
take_error(err)
tern_session_free(session2)

tern_session_free(session)
tern_runtime_free(rt)

if failures:
    print(f"ctypes: FAILED: {len(failures)} failures")
    sys.exit(1)
print(f"ctypes: OK: {N} concurrent requests (HTTP/1.1, HTTP/2, 404s) in {elapsed:.2f} s, "
      f"each completed and released once on tern's threads; at runtime free: {outcomes}")
