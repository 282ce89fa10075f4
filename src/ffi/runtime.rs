//! `tern_runtime`: the background threads that run every request.

use std::ffi::c_char;

use crate::code::tern_code;
use crate::engine::runtime::{Runtime, RuntimeConfig};
use crate::ffi::boundary::{ffi_boundary, from_raw, out_arg, str_arg, to_raw, try_ffi};
use crate::ffi::error::tern_error;

/// The background runtime: a pool of threads that run requests and callbacks.
pub struct tern_runtime {
    pub(crate) inner: Runtime,
}

/// Settings for `tern_runtime_new`. Zero-initialise it, set `struct_size` to
/// `sizeof(tern_runtime_config)`, then the fields you want.
#[repr(C)]
pub struct tern_runtime_config {
    /// `sizeof(tern_runtime_config)`, so later versions can add fields.
    pub struct_size: usize,
    /// Number of worker threads; 0 = one per CPU.
    pub worker_threads: u32,
    /// Thread name (at most 15 bytes are shown on Linux); NULL = "tern-worker".
    /// Copied by `tern_runtime_new`.
    pub thread_name: *const c_char,
}

/// Starts a runtime.
///
/// Ownership: `config` may be NULL (defaults) and is only read during the call; on
/// success `*out` receives a runtime the caller frees with `tern_runtime_free`.
/// Thread safety: any thread.
/// Errors: TERN_CODE_NULL_ARGUMENT (`out`), TERN_CODE_INVALID_ARGUMENT (a bad
/// `struct_size` or a thread name that is not UTF-8), TERN_CODE_INTERNAL (the
/// threads could not be started).
/// Since: 0.1
#[no_mangle]
pub unsafe extern "C" fn tern_runtime_new(
    config: *const tern_runtime_config,
    out: *mut *mut tern_runtime,
    err: *mut *mut tern_error,
) -> tern_code {
    ffi_boundary! {
        try_ffi!(err, out_arg(out, "out"));
        let mut cfg = RuntimeConfig::default();
        if let Some(c) = config.as_ref() {
            if c.struct_size < std::mem::size_of::<usize>() + 4 {
                return crate::ffi::boundary::fail(err, crate::code::Error::new(
                    tern_code::InvalidArgument,
                    "tern_runtime_config.struct_size is too small: set it to sizeof(tern_runtime_config)",
                ));
            }
            cfg.worker_threads = c.worker_threads as usize;
            if c.struct_size >= std::mem::size_of::<tern_runtime_config>() && !c.thread_name.is_null() {
                cfg.thread_name = Some(try_ffi!(err, str_arg(c.thread_name, "thread_name")).to_owned());
            }
        }
        let rt = try_ffi!(err, Runtime::new(cfg));
        *out = to_raw(tern_runtime { inner: rt });
        tern_code::Ok
    }
}

/// Frees a runtime: every session on it is aborted (their in-flight requests complete
/// with TERN_CODE_SHUTDOWN), then the threads stop. `tern_runtime_free(NULL)` does
/// nothing. Sessions made on it must still be freed with `tern_session_free`; they
/// refuse new requests with TERN_CODE_SHUTDOWN.
///
/// Ownership: consumes `rt`.
/// Thread safety: any thread, once. Called from a callback (a runtime thread), it
/// returns at once and the threads stop on a helper thread; otherwise it waits for
/// them (at most 10 s) after the last completion ran.
/// Callbacks: the exception to "callbacks never run inside a tern call". With direct
/// delivery, a request or WebSocket whose task is still alive when the runtime stops
/// (its abort had not finished yet) gets its `on_complete` or `on_close`
/// (TERN_CODE_SHUTDOWN), then `release`, while the runtime stops: on a runtime thread
/// as it stops, or on the thread calling `tern_runtime_free`, inside this call (the
/// helper thread when called from a callback). With queued delivery they are queued
/// for `tern_session_poll` instead.
/// Errors: none.
/// Since: 0.1
#[no_mangle]
pub unsafe extern "C" fn tern_runtime_free(rt: *mut tern_runtime) {
    ffi_boundary! {
        drop(from_raw(rt));
    }
}
