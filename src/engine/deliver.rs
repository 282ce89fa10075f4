//! Where callbacks run: on the runtime thread that has the event (the default), or
//! queued and run by the caller's own thread inside `poll` (queued delivery), with an
//! eventfd that is readable while callbacks wait.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::os::fd::RawFd;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::code::{Code, Error, Result};
use crate::engine::response::Response;
use crate::net::eventfd::EventFd;

/// What `on_headers` and `on_data` ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Continue,
    Cancel,
    Pause,
}

/// What a read callback produced.
#[derive(Debug)]
pub enum ReadOutcome {
    Data(bytes::Bytes),
    End,
    /// Nothing now: the caller resumes the request when there is.
    Pause,
    Abort,
}

/// The caller's callbacks for one request. `complete` is the one mandatory outcome;
/// the others are optional (`wants_*` tells whether they are set).
pub trait Callbacks: Send + Sync + 'static {
    fn wants_headers(&self) -> bool {
        false
    }
    fn wants_data(&self) -> bool {
        false
    }
    fn wants_progress(&self) -> bool {
        false
    }
    /// The head, before any body byte.
    fn on_headers(&self, _head: &Response) -> Action {
        Action::Continue
    }
    /// One body chunk (decoded).
    fn on_data(&self, _chunk: &[u8]) -> Action {
        Action::Continue
    }
    fn on_progress(&self, _p: ProgressSnapshot) {}
    /// A pushed upload can take more.
    fn on_upload_ready(&self) {}
    /// The outcome, then `release`; called exactly once.
    fn complete(&self, resp: Response);
}

/// Byte counts for `on_progress`; 0 = unknown for the totals.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProgressSnapshot {
    pub sent: u64,
    pub to_send: u64,
    pub received: u64,
    pub expected: u64,
}

/// Live byte counters of one request, shared with the body streams.
#[derive(Default)]
pub struct Counters {
    pub sent: AtomicU64,
    pub to_send: AtomicU64,
    pub received: AtomicU64,
    pub expected: AtomicU64,
}

impl Counters {
    pub fn snapshot(&self) -> ProgressSnapshot {
        ProgressSnapshot {
            sent: self.sent.load(Ordering::Relaxed),
            to_send: self.to_send.load(Ordering::Relaxed),
            received: self.received.load(Ordering::Relaxed),
            expected: self.expected.load(Ordering::Relaxed),
        }
    }
}

type Job = Box<dyn FnOnce() + Send>;

/// One request's or one socket's callbacks, as the thread that runs them sees them.
///
/// With queued delivery a callback may poll again, and that nested poll could run a
/// later callback of the very request or socket whose callback is running (its next
/// message, or its `on_complete`/`on_close` and `release`, which free `user_data` under
/// the running callback's feet). So every callback runs through [`Owner::run`], which
/// keeps, per thread, the stack of owners whose callback is running; a callback of an
/// owner on that stack is held ([`Owner::hold`]) and runs, in order, right after the
/// running callback of that owner returns (still inside the job that ran it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Owner(u64);

struct Frame {
    owner: Owner,
    held: VecDeque<Job>,
}

thread_local! {
    static RUNNING: RefCell<Vec<Frame>> = const { RefCell::new(Vec::new()) };
}

static NEXT_OWNER: AtomicU64 = AtomicU64::new(1);

impl Owner {
    pub fn new() -> Owner {
        Owner(NEXT_OWNER.fetch_add(1, Ordering::Relaxed))
    }

    /// Whether a callback of this owner is running on this thread.
    pub fn is_running(&self) -> bool {
        RUNNING.with(|r| r.borrow().iter().any(|f| f.owner == *self))
    }

    /// Keeps `job` until the running callback of this owner (on this thread) returns;
    /// runs it now when none is running.
    pub fn hold(&self, job: Job) {
        let left = RUNNING.with(|r| {
            let mut r = r.borrow_mut();
            match r.iter_mut().rev().find(|f| f.owner == *self) {
                Some(f) => {
                    f.held.push_back(job);
                    None
                }
                None => Some(job),
            }
        });
        if let Some(job) = left {
            self.run(job);
        }
    }

    /// Runs `f` as a callback of this owner, then every callback of it held meanwhile,
    /// in order (those may be held in turn and run after them).
    pub fn run<R>(&self, f: impl FnOnce() -> R) -> R {
        RUNNING.with(|r| {
            r.borrow_mut().push(Frame {
                owner: *self,
                held: VecDeque::new(),
            })
        });
        let out = std::panic::catch_unwind(AssertUnwindSafe(f));
        loop {
            let next = RUNNING.with(|r| {
                let mut r = r.borrow_mut();
                r.iter_mut()
                    .rev()
                    .find(|f| f.owner == *self)
                    .and_then(|f| f.held.pop_front())
            });
            let Some(job) = next else { break };
            let _ = std::panic::catch_unwind(AssertUnwindSafe(job));
        }
        RUNNING.with(|r| {
            let mut r = r.borrow_mut();
            if let Some(i) = r.iter().rposition(|f| f.owner == *self) {
                r.remove(i);
            }
        });
        match out {
            Ok(v) => v,
            Err(p) => std::panic::resume_unwind(p),
        }
    }
}

impl Default for Owner {
    fn default() -> Owner {
        Owner::new()
    }
}

/// The queue of callbacks waiting for the caller's `poll`.
pub struct Queue {
    state: Mutex<State>,
    ready: Condvar,
    /// Readable while jobs wait (written once per batch, not per job).
    fd: EventFd,
    /// Accepted requests whose last callback has not run yet.
    pub outstanding: AtomicUsize,
}

#[derive(Default)]
struct State {
    jobs: VecDeque<Job>,
    /// The eventfd was written since the last poll cleared it.
    signaled: bool,
    /// Pollers waiting on the condition variable.
    sleepers: usize,
}

impl Queue {
    pub fn new() -> Result<Queue> {
        let fd = EventFd::new().map_err(|e| {
            Error::new(
                Code::Internal,
                format!("cannot create the queue's eventfd: {e}"),
            )
        })?;
        Ok(Queue {
            state: Mutex::new(State::default()),
            ready: Condvar::new(),
            fd,
            outstanding: AtomicUsize::new(0),
        })
    }

    pub fn raw_fd(&self) -> RawFd {
        self.fd.raw()
    }

    /// Queues a job; the eventfd is written only when it was not already readable,
    /// and a sleeping poller is woken only when there is one.
    pub fn push(&self, job: Job) {
        let mut g = self.lock();
        g.jobs.push_back(job);
        let signal = !g.signaled;
        g.signaled = true;
        let wake = g.sleepers > 0;
        drop(g);
        if wake {
            self.ready.notify_one();
        }
        if signal {
            self.fd.signal();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs up to `max` queued callbacks on the calling thread; waits up to `timeout`
    /// for the first when none is queued. Returns how many ran.
    pub fn poll(&self, timeout: Duration, max: usize) -> usize {
        {
            // Cleared under the lock, so that `signaled` always tells whether the
            // eventfd is readable; a job pushed from now on signals again.
            let mut g = self.lock();
            g.signaled = false;
            self.fd.clear();
        }
        let deadline = Instant::now() + timeout;
        let max = max.max(1);
        let mut ran = 0;
        while ran < max {
            let job = {
                let mut g = self.lock();
                loop {
                    if let Some(j) = g.jobs.pop_front() {
                        break Some(j);
                    }
                    let now = Instant::now();
                    if ran > 0 || now >= deadline {
                        break None;
                    }
                    g.sleepers += 1;
                    g = self
                        .ready
                        .wait_timeout(g, deadline - now)
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                    g.sleepers -= 1;
                }
            };
            let Some(job) = job else { break };
            // A callback must not unwind into tern; if it does, the other jobs still run.
            let _ = std::panic::catch_unwind(AssertUnwindSafe(job));
            ran += 1;
        }
        let mut g = self.lock();
        if !g.jobs.is_empty() && !g.signaled {
            g.signaled = true;
            drop(g);
            self.fd.signal();
        }
        ran
    }
}

/// How a session's callbacks are delivered.
#[derive(Clone)]
pub enum Delivery {
    /// On the runtime thread that has the event.
    Direct,
    /// Queued for the caller's `poll`.
    Queued(Arc<Queue>),
}

impl Delivery {
    /// Runs `f` for its effect: now (direct), or when the caller polls (queued).
    pub fn post(&self, f: impl FnOnce() + Send + 'static) {
        match self {
            Delivery::Direct => f(),
            Delivery::Queued(q) => q.push(Box::new(f)),
        }
    }

    /// Runs `f` and waits for its result: inline (direct), or through the queue.
    /// `None` when the queue was dropped before the job ran.
    pub async fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce() -> R + Send + 'static,
    ) -> Option<R> {
        match self {
            Delivery::Direct => Some(f()),
            Delivery::Queued(q) => {
                let (tx, rx) = oneshot::channel();
                q.push(Box::new(move || {
                    let _ = tx.send(f());
                }));
                rx.await.ok()
            }
        }
    }

    /// As `call`, but a direct call runs on the blocking pool (for callbacks that may
    /// block, such as a read from a file).
    pub async fn call_blocking<R: Send + 'static>(
        &self,
        f: impl FnOnce() -> R + Send + 'static,
    ) -> Option<R> {
        match self {
            Delivery::Direct => tokio::task::spawn_blocking(f).await.ok(),
            Delivery::Queued(_) => self.call(f).await,
        }
    }
}
