//! The background tokio runtime behind `tern_runtime`.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use crate::code::{Code, Error, Result};
use crate::engine::session::SessionInner;

thread_local! {
    static ON_RUNTIME_THREAD: Cell<bool> = const { Cell::new(false) };
}

/// True on any thread owned by a tern runtime (workers and the blocking pool).
pub fn on_runtime_thread() -> bool {
    ON_RUNTIME_THREAD.with(Cell::get)
}

/// What sessions keep of their runtime.
pub struct RuntimeShared {
    pub handle: tokio::runtime::Handle,
    pub closed: AtomicBool,
    pid: u32,
    sessions: Mutex<Vec<Weak<SessionInner>>>,
}

impl RuntimeShared {
    /// Refuses work after shutdown, and in a forked child.
    pub fn check_usable(&self) -> Result<()> {
        if std::process::id() != self.pid {
            return Err(Error::new(
                Code::Forked,
                "the process forked after this runtime was created; its threads do not exist in the child: create a new runtime",
            ));
        }
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::new(Code::Shutdown, "the runtime is shut down"));
        }
        Ok(())
    }

    pub fn register(&self, s: &Arc<SessionInner>) {
        let mut g = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        g.retain(|w| w.strong_count() > 0);
        g.push(Arc::downgrade(s));
    }

    /// Whether this is the process the runtime was made in.
    pub fn forked(&self) -> bool {
        std::process::id() != self.pid
    }
}

/// Settings for a new runtime.
#[derive(Clone, Debug, Default)]
pub struct RuntimeConfig {
    /// 0 = one per CPU (at least 1).
    pub worker_threads: usize,
    /// Default "tern-worker".
    pub thread_name: Option<String>,
}

/// The runtime: tokio's multi-thread scheduler plus the list of sessions on it.
pub struct Runtime {
    shared: Arc<RuntimeShared>,
    rt: Option<tokio::runtime::Runtime>,
}

impl Runtime {
    pub fn new(cfg: RuntimeConfig) -> Result<Runtime> {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        if cfg.worker_threads > 0 {
            b.worker_threads(cfg.worker_threads);
        }
        let rt = b
            .thread_name(cfg.thread_name.unwrap_or_else(|| "tern-worker".into()))
            .on_thread_start(|| {
                ON_RUNTIME_THREAD.with(|c| c.set(true));
                crate::net::signals::block_sigpipe();
            })
            .enable_all()
            .build()
            .map_err(|e| Error::new(Code::Internal, format!("cannot start the runtime: {e}")))?;
        Ok(Runtime {
            shared: Arc::new(RuntimeShared {
                handle: rt.handle().clone(),
                closed: AtomicBool::new(false),
                pid: std::process::id(),
                sessions: Mutex::new(Vec::new()),
            }),
            rt: Some(rt),
        })
    }

    pub fn shared(&self) -> &Arc<RuntimeShared> {
        &self.shared
    }
}

impl Drop for Runtime {
    /// Aborts every session (their requests complete with SHUTDOWN), then stops the
    /// threads. On a runtime thread the final stop moves to a new thread, since a tokio
    /// runtime cannot be dropped on its own worker. In a forked child the threads do not
    /// exist, so the runtime is leaked rather than waited for.
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::Release);
        let Some(rt) = self.rt.take() else { return };
        if self.shared.forked() {
            std::mem::forget(rt);
            return;
        }
        let sessions = std::mem::take(
            &mut *self
                .shared
                .sessions
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
        );
        for s in sessions.iter().filter_map(Weak::upgrade) {
            s.abort(Code::Shutdown, "the runtime was freed");
        }
        drop(sessions);
        if on_runtime_thread() {
            let spawned = std::thread::Builder::new()
                .name("tern-shutdown".into())
                .spawn(move || rt.shutdown_timeout(Duration::from_secs(10)));
            if let Err(e) = spawned {
                // No thread to hand it to: leak the runtime rather than panic on drop.
                let _ = e;
            }
        } else {
            rt.shutdown_timeout(Duration::from_secs(10));
        }
    }
}
