/* C side of the Go binding: the callback trampolines tern calls, which hand the
 * request's cgo.Handle (carried in user_data as an integer) to the exported Go
 * functions of callbacks.go. No Go pointer is ever stored in C memory. */
#ifndef TERNGO_SHIM_H
#define TERNGO_SHIM_H

#include <stdint.h>
#include "tern.h"

/* Sends `rq` with the buffered callbacks (on_complete, release) or, when `streaming`
 * is non-zero, the streaming ones (on_headers, on_data, on_complete, release);
 * `handle` becomes user_data. Consumes `rq`, as tern_session_send does. */
tern_code terngo_send(const tern_session *session, tern_request *rq, int streaming,
                      uintptr_t handle, uint64_t *id_out, tern_error **err);

/* tern_request_set_body_reader with the Go reader behind `handle`. */
tern_code terngo_set_body_reader(tern_request *rq, int64_t length, uintptr_t handle,
                                 tern_error **err);

#endif
