/* See shim.h. Each trampoline only converts user_data back to the handle's integer
 * and calls Go; cgo attaches the tern thread to the Go runtime for the call. */
#include "shim.h"
#include "_cgo_export.h"

static void terngo_cb_complete(void *user_data, tern_response *response) {
    terngoOnComplete((uintptr_t)user_data, response);
}

static uint32_t terngo_cb_headers(void *user_data, const tern_response *head) {
    return terngoOnHeaders((uintptr_t)user_data, (tern_response *)head);
}

static uint32_t terngo_cb_data(void *user_data, const uint8_t *data, size_t len) {
    return terngoOnData((uintptr_t)user_data, (uint8_t *)data, len);
}

static void terngo_cb_release(void *user_data) {
    terngoRelease((uintptr_t)user_data);
}

static uint32_t terngo_cb_read(void *user_data, uint8_t *buf, size_t cap, size_t *written) {
    return terngoBodyRead((uintptr_t)user_data, buf, cap, written);
}

static void terngo_cb_read_release(void *user_data) {
    terngoBodyRelease((uintptr_t)user_data);
}

static const tern_callbacks terngo_buffered = {
    .struct_size = sizeof(tern_callbacks),
    .on_complete = terngo_cb_complete,
    .release = terngo_cb_release,
};

static const tern_callbacks terngo_streaming = {
    .struct_size = sizeof(tern_callbacks),
    .on_complete = terngo_cb_complete,
    .on_headers = terngo_cb_headers,
    .on_data = terngo_cb_data,
    .release = terngo_cb_release,
};

tern_code terngo_send(const tern_session *session, tern_request *rq, int streaming,
                      uintptr_t handle, uint64_t *id_out, tern_error **err) {
    return tern_session_send(session, rq, streaming ? &terngo_streaming : &terngo_buffered,
                             (void *)handle, id_out, err);
}

tern_code terngo_set_body_reader(tern_request *rq, int64_t length, uintptr_t handle,
                                 tern_error **err) {
    return tern_request_set_body_reader(rq, length, terngo_cb_read, terngo_cb_read_release,
                                        (void *)handle, err);
}
