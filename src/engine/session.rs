//! A session: shared configuration, the connection pool, and the requests in flight.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use tokio::sync::{oneshot, Notify};
use tokio_util::task::TaskTracker;

use crate::code::{Code, Error, Result};
use crate::engine::config::{RequestSpec, SessionConfig};
use crate::engine::flow::{self, Progress};
use crate::engine::pool::{Limits, Pool};
use crate::engine::response::Response;
use crate::engine::runtime::{on_runtime_thread, Runtime, RuntimeShared};
use crate::net::dns::Resolver;
use crate::net::proxy::Rules;
use crate::net::tls::TlsConfigs;

/// Receives the one outcome of a request.
pub trait Deliver: Send + 'static {
    fn deliver(self: Box<Self>, resp: Response);
}

/// How `close` ends a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseMode {
    /// No new requests; in-flight ones finish; then every connection closes cleanly.
    Graceful,
    /// Every in-flight request completes with SHUTDOWN now; connections are dropped.
    Abort,
}

const OPEN: u8 = 0;
const CLOSING: u8 = 1;
const CLOSED: u8 = 2;

pub struct SessionInner {
    pub(crate) cfg: SessionConfig,
    pub(crate) pool: Pool,
    pub(crate) tls: TlsConfigs,
    pub(crate) resolver: Resolver,
    pub(crate) proxies: Rules,
    pub(crate) tracker: TaskTracker,
    rt: Arc<RuntimeShared>,
    inflight: Mutex<HashMap<u64, oneshot::Sender<Error>>>,
    drained: Notify,
    state: AtomicU8,
    next_id: AtomicU64,
}

/// Delivers exactly once: on completion, or with SHUTDOWN if the task is dropped
/// (runtime shutdown) before it completed.
struct Guard {
    id: u64,
    deliver: Option<Box<dyn Deliver>>,
    session: Arc<SessionInner>,
}

impl Guard {
    fn complete(&mut self, resp: Response) {
        self.session.finished(self.id);
        if let Some(d) = self.deliver.take() {
            d.deliver(resp);
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if self.deliver.is_some() {
            let id = self.id;
            self.complete(Response::failed(
                id,
                Error::new(
                    Code::Shutdown,
                    "the runtime shut down before the request completed",
                ),
            ));
        }
    }
}

impl SessionInner {
    fn lock_inflight(&self) -> std::sync::MutexGuard<'_, HashMap<u64, oneshot::Sender<Error>>> {
        self.inflight.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn finished(&self, id: u64) {
        let mut g = self.lock_inflight();
        g.remove(&id);
        let empty = g.is_empty();
        drop(g);
        if empty {
            self.drained.notify_waiters();
        }
    }

    /// Completes every in-flight request with `code` and drops all connections.
    pub fn abort(&self, code: Code, why: &str) {
        self.state.store(CLOSED, Ordering::Release);
        let all: Vec<_> = self.lock_inflight().drain().collect();
        for (_, tx) in all {
            let _ = tx.send(Error::new(code, why));
        }
        self.drained.notify_waiters();
        self.pool.close();
        self.tracker.close();
    }

    /// Number of requests in flight.
    pub fn in_flight(&self) -> usize {
        self.lock_inflight().len()
    }
}

/// The caller's handle on a session; dropping it closes the session gracefully.
pub struct Session {
    inner: Arc<SessionInner>,
}

impl Session {
    pub fn new(rt: &Runtime, cfg: SessionConfig) -> Result<Session> {
        let shared = rt.shared().clone();
        shared.check_usable()?;
        let tls = TlsConfigs::new(&cfg)?;
        let proxies = Rules::new(&cfg.proxy)?;
        let resolver = {
            let _enter = shared.handle.enter();
            Resolver::new(&cfg.dns)?
        };
        let limits = Limits {
            total: cfg.max_connections,
            per_host: cfg.max_connections_per_host,
        };
        let pool = Pool::new(cfg.pool_idle_timeout, cfg.pool_max_idle_per_host, limits);
        let inner = Arc::new(SessionInner {
            cfg,
            pool,
            tls,
            resolver,
            proxies,
            tracker: TaskTracker::new(),
            rt: shared.clone(),
            inflight: Mutex::new(HashMap::new()),
            drained: Notify::new(),
            state: AtomicU8::new(OPEN),
            next_id: AtomicU64::new(1),
        });
        shared.register(&inner);
        if let Some(idle) = inner.cfg.pool_idle_timeout {
            let weak = Arc::downgrade(&inner);
            let period = (idle / 2).clamp(Duration::from_millis(100), Duration::from_secs(1));
            shared.handle.spawn(reap_loop(weak, period));
        }
        Ok(Session { inner })
    }

    pub fn inner(&self) -> &Arc<SessionInner> {
        &self.inner
    }

    /// Starts a request; `deliver` gets its outcome exactly once, never inside this call.
    /// On refusal `deliver` is dropped without being called.
    pub fn send(&self, spec: RequestSpec, deliver: Box<dyn Deliver>) -> Result<u64> {
        let s = &self.inner;
        s.rt.check_usable()?;
        if s.state.load(Ordering::Acquire) != OPEN {
            return Err(Error::new(Code::Shutdown, "the session is closed"));
        }
        let id = s.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        s.lock_inflight().insert(id, tx);
        let guard = Guard {
            id,
            deliver: Some(deliver),
            session: s.clone(),
        };
        let inner = s.clone();
        s.rt.handle.spawn(run(inner, id, spec, rx, guard));
        Ok(id)
    }

    /// Cancels request `id`: it completes with CANCELED unless it already completed.
    pub fn cancel(&self, id: u64) -> bool {
        let tx = self.inner.lock_inflight().remove(&id);
        match tx {
            Some(tx) => {
                let _ = tx.send(Error::new(Code::Canceled, "canceled by the caller"));
                true
            }
            None => false,
        }
    }

    /// Starts closing; never blocks. Completions still arrive.
    pub fn close(&self, mode: CloseMode) {
        let s = &self.inner;
        match mode {
            CloseMode::Abort => s.abort(Code::Shutdown, "the session was closed (abort)"),
            CloseMode::Graceful => {
                if s.state
                    .compare_exchange(OPEN, CLOSING, Ordering::AcqRel, Ordering::Acquire)
                    .is_err()
                {
                    return;
                }
                if s.rt.check_usable().is_err() {
                    s.abort(Code::Shutdown, "the runtime is shut down");
                    return;
                }
                let inner = s.clone();
                s.rt.handle.spawn(async move {
                    loop {
                        let notified = inner.drained.notified();
                        if inner.in_flight() == 0 {
                            break;
                        }
                        notified.await;
                    }
                    inner.pool.close();
                    inner.tracker.close();
                    let _ =
                        tokio::time::timeout(Duration::from_secs(10), inner.tracker.wait()).await;
                    inner.state.store(CLOSED, Ordering::Release);
                });
            }
        }
    }

    /// Runs one request to its end on the calling thread.
    pub fn perform(&self, spec: RequestSpec) -> Result<Response> {
        if on_runtime_thread() {
            return Err(Error::new(
                Code::WouldDeadlock,
                "a blocking perform was called on a tern runtime thread (for example from a callback); use send instead",
            ));
        }
        struct ToChannel(std::sync::mpsc::SyncSender<Response>);
        impl Deliver for ToChannel {
            fn deliver(self: Box<Self>, resp: Response) {
                let _ = self.0.send(resp);
            }
        }
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.send(spec, Box::new(ToChannel(tx)))?;
        rx.recv()
            .map_err(|_| Error::new(Code::Internal, "the request ended without an outcome"))
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.close(CloseMode::Graceful);
    }
}

async fn reap_loop(weak: Weak<SessionInner>, period: Duration) {
    loop {
        tokio::time::sleep(period).await;
        let Some(s) = weak.upgrade() else { return };
        if s.state.load(Ordering::Acquire) == CLOSED {
            return;
        }
        s.pool.reap();
    }
}

async fn run(
    s: Arc<SessionInner>,
    id: u64,
    spec: RequestSpec,
    cancel: oneshot::Receiver<Error>,
    mut guard: Guard,
) {
    let mut p = Progress {
        start: Instant::now(),
        resp: Response {
            id,
            body: vec![0],
            ..Default::default()
        },
    };
    let total = spec.timeouts.apply(s.cfg.timeouts).total;
    #[cfg(debug_assertions)]
    let debug_panic = spec.headers.contains_key("x-tern-debug-panic");
    let outcome = {
        let work = async {
            #[cfg(debug_assertions)]
            if debug_panic {
                panic!("test panic inside a request task");
            }
            match total {
                Some(d) => match tokio::time::timeout(d, flow::execute(&s, spec, &mut p)).await {
                    Ok(r) => r,
                    Err(_) => Err(Error::new(
                        Code::TimeoutTotal,
                        format!(
                            "the request took longer than its total time-out of {} ms",
                            d.as_millis()
                        ),
                    )),
                },
                None => flow::execute(&s, spec, &mut p).await,
            }
        };
        tokio::select! {
            biased;
            why = cancel => Err(why.unwrap_or_else(|_| Error::new(Code::Shutdown, "the session was closed"))),
            r = AssertUnwindSafe(work).catch_unwind() => match r {
                Ok(r) => r,
                Err(panic) => {
                    let what = panic
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "unknown".into());
                    Err(Error::new(Code::Internal, format!("internal error (panic: {what})")))
                }
            },
        }
    };
    p.resp.timings.total = p.start.elapsed();
    if let Err(e) = outcome {
        p.resp.error = Some(e);
    }
    guard.complete(p.resp);
}
