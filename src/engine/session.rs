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
use crate::engine::body::PushUpload;
use crate::engine::config::{RequestSpec, SessionConfig, UploadSource};
use crate::engine::cookies::CookieJar;
use crate::engine::deliver::{Action, Counters, Delivery, Owner, ProgressSnapshot, Queue};
use crate::engine::flow::{self, Progress};
use crate::engine::pool::{Limits, Pool};
use crate::engine::response::Response;
use crate::engine::runtime::{on_runtime_thread, Runtime, RuntimeShared};
use crate::engine::ws::{self, CloseInfo, Ctl, MsgKind, WebSocket, WsCallbacks, WsSpec};
use crate::net::dns::Resolver;
use crate::net::proxy::Rules;
use crate::net::tls::TlsConfigs;

pub use crate::engine::deliver::Callbacks;

/// Per request: how to reach it while it runs (cancel, resume, a pushed upload).
struct Control {
    cancel: oneshot::Sender<Error>,
    resume: Arc<Resume>,
    upload: Option<Arc<PushUpload>>,
}

/// Wakes a paused request. A resume counts even when it comes before the pause it
/// ends (during the callback that asked for the pause).
#[derive(Default)]
pub struct Resume {
    generation: AtomicU64,
    notify: Notify,
}

impl Resume {
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    fn resume(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.notify.notify_waiters();
    }

    /// Waits until a resume after generation `g`.
    pub async fn wait_after(&self, g: u64) {
        loop {
            let n = self.notify.notified();
            tokio::pin!(n);
            n.as_mut().enable();
            if self.generation() > g {
                return;
            }
            n.await;
        }
    }
}

/// What a running request needs to reach its caller.
pub struct Hooks {
    pub cb: Arc<dyn Callbacks>,
    pub delivery: Delivery,
    pub counters: Arc<Counters>,
    pub resume: Arc<Resume>,
    pub upload: Option<Arc<PushUpload>>,
    /// Held while a callback of this request runs, so that callbacks from different
    /// threads (the request's task, its connection's body stream) never overlap; true
    /// once the outcome was handed over.
    pub done: Arc<Mutex<bool>>,
}

impl Hooks {
    /// Runs a callback that answers, one at a time with the request's others.
    pub async fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce() -> R + Send + 'static,
    ) -> Option<R> {
        match &self.delivery {
            // Queued callbacks already run one at a time, on the polling thread.
            Delivery::Queued(_) => self.delivery.call(f).await,
            Delivery::Direct => {
                let serial = self.done.clone();
                self.delivery
                    .call(move || {
                        let _one_at_a_time = serial.lock().unwrap_or_else(|p| p.into_inner());
                        f()
                    })
                    .await
            }
        }
    }

    /// Runs a callback for its effect, one at a time, and never after the outcome.
    pub fn post(&self, f: impl FnOnce() + Send + 'static) {
        post_serial(&self.delivery, &self.done, f);
    }
}

pub(crate) fn post_serial(
    delivery: &Delivery,
    done: &Arc<Mutex<bool>>,
    f: impl FnOnce() + Send + 'static,
) {
    // Direct: run under the lock unless the outcome is out. Queued: enqueue under the
    // lock unless the outcome is out; the queue's order does the rest.
    let g = done.lock().unwrap_or_else(|p| p.into_inner());
    if !*g {
        delivery.post(f);
    }
}

/// Queued delivery: a request's callbacks run as one [`Owner`], so that a poll made
/// from one of them never runs another of the same request inside it (those are held
/// until it returns; see `Owner`).
struct OwnedCallbacks {
    cb: Arc<dyn Callbacks>,
    owner: Owner,
}

impl OwnedCallbacks {
    /// A callback that answers nothing: held while one of this request runs here.
    fn void(&self, f: impl FnOnce(&dyn Callbacks) + Send + 'static) {
        if self.owner.is_running() {
            let cb = self.cb.clone();
            self.owner.hold(Box::new(move || f(&*cb)));
        } else {
            self.owner.run(|| f(&*self.cb));
        }
    }
}

impl Callbacks for OwnedCallbacks {
    fn wants_headers(&self) -> bool {
        self.cb.wants_headers()
    }
    fn wants_data(&self) -> bool {
        self.cb.wants_data()
    }
    fn wants_progress(&self) -> bool {
        self.cb.wants_progress()
    }
    // The request's task waits for the answer of these before it asks anything else,
    // so none of them can be queued behind another callback of the same request.
    fn on_headers(&self, head: &Response) -> Action {
        self.owner.run(|| self.cb.on_headers(head))
    }
    fn on_data(&self, chunk: &[u8]) -> Action {
        self.owner.run(|| self.cb.on_data(chunk))
    }
    fn on_progress(&self, p: ProgressSnapshot) {
        self.void(move |cb| cb.on_progress(p));
    }
    fn on_upload_ready(&self) {
        self.void(|cb| cb.on_upload_ready());
    }
    fn complete(&self, resp: Response) {
        self.void(move |cb| cb.complete(resp));
    }
}

thread_local! {
    /// The request or socket whose task `send` or `ws_connect` is spawning on this
    /// thread (its token), and whether its outcome was swallowed meanwhile.
    static SPAWNING: std::cell::Cell<Option<(usize, bool)>> = const { std::cell::Cell::new(None) };
}

/// Runs `spawn` with `token` marked as being spawned on this thread. Returns whether
/// the outcome of `token` was swallowed meanwhile ([`swallowed_in_spawn`]): a runtime
/// shutting down drops a task at once, on the spawning thread, and its guard would
/// otherwise deliver the outcome inside `send` or `ws_connect`.
fn spawn_marked(token: usize, spawn: impl FnOnce()) -> bool {
    let before = SPAWNING.with(|x| x.replace(Some((token, false))));
    spawn();
    let marked = SPAWNING.with(|x| x.replace(before));
    matches!(marked, Some((_, true)))
}

/// Whether an outcome of `token` is being delivered inside its own spawn; if so it is
/// swallowed (the spawn reports the refusal instead) and this returns true.
fn swallowed_in_spawn(token: usize) -> bool {
    SPAWNING.with(|x| match x.get() {
        Some((t, _)) if t == token => {
            x.set(Some((t, true)));
            true
        }
        _ => false,
    })
}

/// A socket's callbacks as `ws_connect` hands them to its task. With queued delivery
/// they run as one [`Owner`] (a poll made from one of them never runs another of the
/// same socket inside it: those are held until it returns). And none runs inside
/// `ws_connect`: a task dropped at once by a runtime shutting down (which delivers
/// `on_close` on the spawning thread) is swallowed, and the connect is refused.
struct SocketCallbacks {
    cb: Arc<dyn WsCallbacks>,
    owner: Owner,
    queued: bool,
}

/// How a socket's callback is to run now.
enum Run {
    /// Inside `ws_connect` (its task was dropped at once): not at all.
    Swallow,
    /// Direct delivery: right here.
    Now,
    /// Queued delivery, no callback of the socket running on this thread.
    AsOwner,
    /// Queued delivery, called from a poll made by a callback of the same socket.
    Hold,
}

impl SocketCallbacks {
    /// The token `ws_connect` spawns the socket's task under.
    fn token(&self) -> usize {
        self as *const SocketCallbacks as usize
    }

    fn how(&self) -> Run {
        if swallowed_in_spawn(self.token()) {
            Run::Swallow
        } else if !self.queued {
            Run::Now
        } else if self.owner.is_running() {
            Run::Hold
        } else {
            Run::AsOwner
        }
    }

    /// Runs one callback as `how` says: `now` with the borrowed arguments, or, when it
    /// must be held, the owned copy `later` makes of them.
    fn call(
        &self,
        now: impl FnOnce(&dyn WsCallbacks),
        later: impl FnOnce() -> Box<dyn FnOnce(&dyn WsCallbacks) + Send>,
    ) {
        match self.how() {
            Run::Swallow => {}
            Run::Now => now(&*self.cb),
            Run::AsOwner => self.owner.run(|| now(&*self.cb)),
            Run::Hold => {
                let (cb, f) = (self.cb.clone(), later());
                self.owner.hold(Box::new(move || f(&*cb)));
            }
        }
    }
}

impl WsCallbacks for SocketCallbacks {
    fn on_open(&self, ws: &WebSocket, head: &Response) {
        self.call(
            |cb| cb.on_open(ws, head),
            || {
                let (ws, head) = (ws.clone(), head.head());
                Box::new(move |cb| cb.on_open(&ws, &head))
            },
        );
    }
    fn on_message(&self, ws: &WebSocket, kind: MsgKind, data: &[u8]) {
        self.call(
            |cb| cb.on_message(ws, kind, data),
            || {
                let (ws, data) = (ws.clone(), data.to_vec());
                Box::new(move |cb| cb.on_message(&ws, kind, &data))
            },
        );
    }
    fn on_writable(&self, ws: &WebSocket) {
        self.call(
            |cb| cb.on_writable(ws),
            || {
                let ws = ws.clone();
                Box::new(move |cb| cb.on_writable(&ws))
            },
        );
    }
    fn on_close(&self, ws: &WebSocket, info: CloseInfo) {
        // `info` goes to whichever of the two runs.
        let info = std::cell::Cell::new(Some(info));
        self.call(
            |cb| {
                if let Some(info) = info.take() {
                    cb.on_close(ws, info)
                }
            },
            || {
                let (ws, info) = (ws.clone(), info.take());
                Box::new(move |cb| {
                    if let Some(info) = info {
                        cb.on_close(&ws, info)
                    }
                })
            },
        );
    }
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
    /// The cookie jar, when the options turned it on.
    pub(crate) cookies: Option<CookieJar>,
    pub(crate) rt: Arc<RuntimeShared>,
    inflight: Mutex<HashMap<u64, Control>>,
    /// Open WebSockets (outside the pool and its limits), until their `on_close`.
    sockets: Mutex<HashMap<u64, WebSocket>>,
    pub(crate) delivery: Delivery,
    drained: Notify,
    state: AtomicU8,
    next_id: AtomicU64,
}

/// Delivers exactly once: on completion, or with SHUTDOWN if the task is dropped
/// (runtime shutdown) before it completed.
struct Guard {
    id: u64,
    deliver: Option<Arc<dyn Callbacks>>,
    delivery: Delivery,
    session: Arc<SessionInner>,
    /// Set when the outcome is handed over; callbacks that could come later from
    /// elsewhere (`on_upload_ready`, from the connection's body stream) check it.
    done: Arc<Mutex<bool>>,
}

impl Guard {
    fn complete(&mut self, resp: Response) {
        self.session.finished(self.id);
        // Under the lock: a callback posted from elsewhere either went before (it is
        // ahead in the queue, or has returned) or sees `done` and is dropped.
        let mut done = self.done.lock().unwrap_or_else(|p| p.into_inner());
        *done = true;
        if let Some(d) = self.deliver.take() {
            match &self.delivery {
                // Dropped at once by a runtime shutting down, inside `send`: the
                // outcome is the refusal, and no callback runs inside the call.
                Delivery::Direct if swallowed_in_spawn(self.token()) => {}
                Delivery::Direct => {
                    drop(done);
                    d.complete(resp);
                }
                Delivery::Queued(q) => {
                    let q2 = q.clone();
                    q.push(Box::new(move || {
                        // Counted as done before it runs, so that freeing the
                        // session from this very callback does not wait for itself.
                        q2.outstanding.fetch_sub(1, Ordering::AcqRel);
                        d.complete(resp);
                    }));
                }
            }
        }
    }
}

impl Guard {
    /// The token `send` spawns the request's task under (its `done` flag's address).
    fn token(&self) -> usize {
        Arc::as_ptr(&self.done) as usize
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
    fn lock_inflight(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Control>> {
        self.inflight.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_sockets(&self) -> std::sync::MutexGuard<'_, HashMap<u64, WebSocket>> {
        self.sockets.lock().unwrap_or_else(|p| p.into_inner())
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

    /// A WebSocket's outcome is decided: it leaves the session.
    pub(crate) fn ws_finished(&self, id: u64) {
        let mut g = self.lock_sockets();
        g.remove(&id);
        let empty = g.is_empty();
        drop(g);
        if empty {
            self.drained.notify_waiters();
        }
    }

    /// Completes every in-flight request with `code`, ends every WebSocket with it
    /// (without a close frame) and drops all connections.
    pub fn abort(&self, code: Code, why: &str) {
        self.state.store(CLOSED, Ordering::Release);
        let all: Vec<_> = self.lock_inflight().drain().collect();
        for (_, c) in all {
            let _ = c.cancel.send(Error::new(code, why));
        }
        let sockets: Vec<_> = self.lock_sockets().drain().collect();
        for (_, w) in sockets {
            w.control(Ctl::Abort(Error::new(code, why)));
        }
        self.drained.notify_waiters();
        self.pool.close();
        self.tracker.close();
    }

    /// Number of requests in flight.
    pub fn in_flight(&self) -> usize {
        self.lock_inflight().len()
    }

    /// Number of WebSockets whose outcome is not decided yet.
    pub fn sockets(&self) -> usize {
        self.lock_sockets().len()
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
        let delivery = if cfg.queued_delivery {
            Delivery::Queued(Arc::new(Queue::new()?))
        } else {
            Delivery::Direct
        };
        let cookies = cfg.cookie_jar.then(CookieJar::new);
        let inner = Arc::new(SessionInner {
            delivery,
            cfg,
            pool,
            tls,
            resolver,
            proxies,
            tracker: TaskTracker::new(),
            cookies,
            rt: shared.clone(),
            inflight: Mutex::new(HashMap::new()),
            sockets: Mutex::new(HashMap::new()),
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

    /// Starts a request; `cb` gets its outcome exactly once, never inside this call,
    /// through the session's delivery. On refusal `cb` is dropped without being called.
    pub fn send(&self, spec: RequestSpec, cb: Arc<dyn Callbacks>) -> Result<u64> {
        let delivery = self.inner.delivery.clone();
        self.send_with(spec, cb, delivery)
    }

    fn send_with(
        &self,
        spec: RequestSpec,
        cb: Arc<dyn Callbacks>,
        delivery: Delivery,
    ) -> Result<u64> {
        let s = &self.inner;
        s.rt.check_usable()?;
        if s.state.load(Ordering::Acquire) != OPEN {
            return Err(Error::new(Code::Shutdown, "the session is closed"));
        }
        let id = s.next_id.fetch_add(1, Ordering::Relaxed);
        let cb: Arc<dyn Callbacks> = match delivery {
            Delivery::Queued(_) => Arc::new(OwnedCallbacks {
                cb,
                owner: Owner::new(),
            }),
            Delivery::Direct => cb,
        };
        let (tx, rx) = oneshot::channel();
        let resume = Arc::new(Resume::default());
        let done = Arc::new(Mutex::new(false));
        let upload = match spec.upload.as_ref().map(|u| &u.source) {
            Some(UploadSource::Push) => {
                let (cb2, d2, done2) = (cb.clone(), delivery.clone(), done.clone());
                Some(Arc::new(PushUpload::new(
                    256 * 1024,
                    Box::new(move || {
                        let cb3 = cb2.clone();
                        // Never after on_complete, never during another callback.
                        post_serial(&d2, &done2, move || cb3.on_upload_ready());
                    }),
                )))
            }
            _ => None,
        };
        s.lock_inflight().insert(
            id,
            Control {
                cancel: tx,
                resume: resume.clone(),
                upload: upload.clone(),
            },
        );
        if let Delivery::Queued(q) = &delivery {
            q.outstanding.fetch_add(1, Ordering::AcqRel);
        }
        let hooks = Hooks {
            cb: cb.clone(),
            delivery: delivery.clone(),
            counters: Arc::new(Counters::default()),
            resume,
            upload,
            done: done.clone(),
        };
        let guard = Guard {
            id,
            deliver: Some(cb),
            delivery,
            session: s.clone(),
            done,
        };
        let inner = s.clone();
        let token = guard.token();
        // Boxed: tokio moves a task's future into its cell on spawn and overwrites it
        // with the output on completion; both would copy the whole request state.
        let task = Box::pin(run(inner, id, spec, rx, guard, hooks));
        if spawn_marked(token, || drop(s.rt.handle.spawn(task))) {
            // The runtime shut down between the check above and the spawn: tokio
            // dropped the task at once, on this thread.
            return Err(Error::new(
                Code::Shutdown,
                "the runtime shut down during the send",
            ));
        }
        Ok(id)
    }

    /// Cancels request `id`: it completes with CANCELED unless it already completed.
    pub fn cancel(&self, id: u64) -> bool {
        let c = self.inner.lock_inflight().remove(&id);
        match c {
            Some(c) => {
                let _ = c
                    .cancel
                    .send(Error::new(Code::Canceled, "canceled by the caller"));
                true
            }
            None => false,
        }
    }

    /// Resumes request `id` after an `on_data` or read callback paused it. False when
    /// it is not in flight.
    pub fn resume(&self, id: u64) -> bool {
        let r = self
            .inner
            .lock_inflight()
            .get(&id)
            .map(|c| c.resume.clone());
        match r {
            Some(r) => {
                r.resume();
                true
            }
            None => false,
        }
    }

    /// The pushed upload of request `id`, if it has one and is in flight.
    pub fn upload(&self, id: u64) -> Result<Arc<PushUpload>> {
        match self.inner.lock_inflight().get(&id) {
            Some(Control {
                upload: Some(u), ..
            }) => Ok(u.clone()),
            Some(_) => Err(Error::new(
                Code::InvalidState,
                format!("request {id} has no pushed body (tern_request_set_body_stream)"),
            )),
            None => Err(Error::new(
                Code::NotFound,
                format!("request {id} is not in flight"),
            )),
        }
    }

    /// Whether `id` was given out by this session (in flight or completed).
    pub fn issued(&self, id: u64) -> bool {
        id > 0 && id < self.inner.next_id.load(Ordering::Relaxed)
    }

    /// The queue of a session with queued delivery.
    pub fn queue(&self) -> Option<&Arc<Queue>> {
        match &self.inner.delivery {
            Delivery::Queued(q) => Some(q),
            Delivery::Direct => None,
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
                let open: Vec<_> = s.lock_sockets().values().cloned().collect();
                for w in open {
                    w.control(Ctl::GoingAway);
                }
                let inner = s.clone();
                s.rt.handle.spawn(async move {
                    loop {
                        let notified = inner.drained.notified();
                        if inner.in_flight() == 0 && inner.sockets() == 0 {
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

    /// Opens a WebSocket; `cb.on_close` runs exactly once, never inside this call.
    /// `before_start` sees the handle before any callback can run (the FFI writes the
    /// caller's handle there). On refusal `cb` is dropped without being called.
    pub fn ws_connect(
        &self,
        spec: WsSpec,
        cb: Arc<dyn WsCallbacks>,
        before_start: impl FnOnce(&WebSocket),
    ) -> Result<WebSocket> {
        let s = &self.inner;
        s.rt.check_usable()?;
        if s.state.load(Ordering::Acquire) != OPEN {
            return Err(Error::new(Code::Shutdown, "the session is closed"));
        }
        let id = s.next_id.fetch_add(1, Ordering::Relaxed);
        let (w, data_rx, ctl_rx) = WebSocket::new(id, spec.send_queue, s.rt.clone());
        s.lock_sockets().insert(id, w.clone());
        // A close or abort that raced this call: the socket still gets its on_close.
        if s.state.load(Ordering::Acquire) == CLOSED {
            w.control(Ctl::Abort(Error::new(
                Code::Shutdown,
                "the session was closed",
            )));
        } else if s.state.load(Ordering::Acquire) == CLOSING {
            w.control(Ctl::GoingAway);
        }
        if let Delivery::Queued(q) = &s.delivery {
            q.outstanding.fetch_add(1, Ordering::AcqRel);
        }
        before_start(&w);
        let cb = Arc::new(SocketCallbacks {
            cb,
            owner: Owner::new(),
            queued: matches!(s.delivery, Delivery::Queued(_)),
        });
        let token = cb.token();
        let spawn = || ws::spawn(s.clone(), w.clone(), spec, cb, data_rx, ctl_rx);
        if spawn_marked(token, spawn) {
            // The runtime shut down between the check above and the spawn: tokio
            // dropped the task at once, on this thread, and its on_close was swallowed.
            return Err(Error::new(
                Code::Shutdown,
                "the runtime shut down during the connect",
            ));
        }
        Ok(w)
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
        impl Callbacks for ToChannel {
            fn complete(&self, resp: Response) {
                let _ = self.0.send(resp);
            }
        }
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        // The blocking call gets its outcome directly, also with queued delivery.
        self.send_with(spec, Arc::new(ToChannel(tx)), Delivery::Direct)?;
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
    mut cancel: oneshot::Receiver<Error>,
    mut guard: Guard,
    hooks: Hooks,
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
                Some(d) => {
                    match tokio::time::timeout(d, flow::execute(&s, spec, &mut p, &hooks)).await {
                        Ok(r) => r,
                        Err(_) => Err(Error::new(
                            Code::TimeoutTotal,
                            format!(
                                "the request took longer than its total time-out of {} ms",
                                d.as_millis()
                            ),
                        )),
                    }
                }
                None => flow::execute(&s, spec, &mut p, &hooks).await,
            }
        };
        let ticker = progress_ticker(&hooks, s.cfg.progress_interval);
        tokio::select! {
            biased;
            why = &mut cancel => Err(why.unwrap_or_else(|_| Error::new(Code::Shutdown, "the session was closed"))),
            never = ticker => match never {},
            r = AssertUnwindSafe(work).catch_unwind() => match r {
                Ok(r) => r,
                Err(panic) => {
                    let what = crate::engine::panic_message(&*panic);
                    Err(Error::new(Code::Internal, format!("internal error (panic: {what})")))
                }
            },
        }
    };
    // An abort (runtime freed, session closed, cancel) that raced with the work's own
    // failure (its connections dropped by that abort) is the outcome.
    let outcome = match outcome {
        Err(e) => Err(cancel.try_recv().unwrap_or(e)),
        ok => ok,
    };
    p.resp.timings.total = p.start.elapsed();
    if let Err(e) = outcome {
        p.resp.error = Some(e);
    }
    if hooks.cb.wants_progress() {
        let (cb, snap) = (hooks.cb.clone(), hooks.counters.snapshot());
        hooks.post(move || cb.on_progress(snap));
    }
    guard.complete(p.resp);
}

/// Reports progress while bytes move, at most once per `every`; never ends.
async fn progress_ticker(hooks: &Hooks, every: Duration) -> std::convert::Infallible {
    if !hooks.cb.wants_progress() {
        return std::future::pending().await;
    }
    let mut tick = tokio::time::interval(every.max(Duration::from_millis(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    let mut last = hooks.counters.snapshot();
    loop {
        tick.tick().await;
        let now = hooks.counters.snapshot();
        if now != last {
            last = now;
            let cb = hooks.cb.clone();
            hooks.post(move || cb.on_progress(now));
        }
    }
}
