//! The connection pool: idle HTTP/1.1 connections per target (newest first, capped per
//! host, dropped after the idle time-out) and one shared HTTP/2 connection per target.
//!
//! Keyed by [`Target`] (scheme, host, port, version preference), so a request asking
//! for another HTTP version never reuses a connection made for different settings.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper::client::conn::{http1, http2};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

use crate::engine::body::ReqBody;
use crate::log;
use crate::net::connect::{Sender, Target};

struct IdleH1 {
    sender: http1::SendRequest<ReqBody>,
    since: Instant,
    remote: SocketAddr,
}

#[derive(Default)]
struct Inner {
    h1: HashMap<Target, Vec<IdleH1>>,
    h2: HashMap<Target, (http2::SendRequest<ReqBody>, SocketAddr)>,
    /// Wakes requests waiting for a connection limit when a connection goes idle.
    idle_signal: HashMap<Target, Arc<Notify>>,
    /// Requests per target waiting for a connection under the limits.
    waiting: HashMap<Target, usize>,
    /// Per (scheme, host, port) connection slots.
    hosts: HashMap<(bool, String, u16), Arc<Semaphore>>,
    /// Targets with a dial under way that may give an HTTP/2 connection: later
    /// requests wait for it instead of dialing their own.
    h2_dialing: HashMap<Target, tokio::sync::watch::Sender<bool>>,
    /// HTTPS targets whose server chose HTTP/1.1 by ALPN last time.
    h1_by_alpn: std::collections::HashSet<Target>,
    closed: bool,
}

/// The connection slots one connection holds until it closes (empty without limits).
#[derive(Clone, Default)]
#[allow(dead_code)] // held for its Drop, never read
pub struct Permits(Option<Arc<(Option<OwnedSemaphorePermit>, Option<OwnedSemaphorePermit>)>>);

/// Connection limits: total and per host (0 = none).
#[derive(Clone, Copy, Debug, Default)]
pub struct Limits {
    pub total: usize,
    pub per_host: usize,
}

pub struct Pool {
    inner: Mutex<Inner>,
    idle_timeout: Option<Duration>,
    max_idle_per_host: usize,
    limits: Limits,
    total: Option<Arc<Semaphore>>,
    /// Requests waiting for a slot under the total limit.
    total_waiting: AtomicUsize,
}

/// The turn to dial a possibly-HTTP/2 connection; dropping it (dial done, failed or
/// abandoned) wakes the requests that waited for it.
pub struct DialTurn<'a> {
    pool: &'a Pool,
    target: Target,
}

impl Drop for DialTurn<'_> {
    fn drop(&mut self) {
        let tx = self.pool.lock().h2_dialing.remove(&self.target);
        if let Some(tx) = tx {
            let _ = tx.send(true);
        }
    }
}

/// Counts one request as waiting for a connection to its target while alive.
pub struct Waiting<'a> {
    pool: &'a Pool,
    target: Target,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let mut g = self.pool.lock();
        if let Some(n) = g.waiting.get_mut(&self.target) {
            *n -= 1;
            if *n == 0 {
                g.waiting.remove(&self.target);
            }
        }
    }
}

/// Counts one request as waiting for a total slot while alive.
struct TotalWaiting<'a>(&'a AtomicUsize);

impl Drop for TotalWaiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Pool {
    pub fn new(idle_timeout: Option<Duration>, max_idle_per_host: usize, limits: Limits) -> Pool {
        Pool {
            inner: Mutex::new(Inner::default()),
            idle_timeout,
            max_idle_per_host,
            limits,
            total: (limits.total > 0).then(|| Arc::new(Semaphore::new(limits.total))),
            total_waiting: AtomicUsize::new(0),
        }
    }

    /// Whether new connections need slots.
    pub fn limited(&self) -> bool {
        self.limits.total > 0 || self.limits.per_host > 0
    }

    /// Marks the caller as waiting for a connection to `target` until the guard drops:
    /// a connection for `target` going idle is then kept for it, not closed to make
    /// room for another host.
    pub fn waiting(&self, target: &Target) -> Waiting<'_> {
        *self.lock().waiting.entry(target.clone()).or_default() += 1;
        Waiting {
            pool: self,
            target: target.clone(),
        }
    }

    /// The signal that fires when a connection for `target` goes idle.
    pub fn idle_signal(&self, target: &Target) -> Arc<Notify> {
        self.lock()
            .idle_signal
            .entry(target.clone())
            .or_default()
            .clone()
    }

    /// Waits, in order, for a slot for one more connection to `target`'s host. When the
    /// total is reached, the oldest idle connection (of any host) is closed to make room,
    /// now or, while this waits, when a connection nobody waits for goes idle
    /// (`put_h1`). The waiter is counted before the idle list is looked at, and
    /// `put_h1` reads the count under the same lock, so one of the two always sees the
    /// other.
    pub async fn acquire(&self, target: &Target) -> Permits {
        if !self.limited() {
            return Permits::default();
        }
        let host = if self.limits.per_host > 0 {
            let sem = self
                .lock()
                .hosts
                .entry((target.https, target.host.clone(), target.port))
                .or_insert_with(|| Arc::new(Semaphore::new(self.limits.per_host)))
                .clone();
            sem.acquire_owned().await.ok()
        } else {
            None
        };
        let total = match &self.total {
            Some(sem) => {
                self.total_waiting.fetch_add(1, Ordering::SeqCst);
                let _counted = TotalWaiting(&self.total_waiting);
                if sem.available_permits() == 0 {
                    self.evict_oldest_idle();
                }
                sem.clone().acquire_owned().await.ok()
            }
            None => None,
        };
        Permits(Some(Arc::new((host, total))))
    }

    fn evict_oldest_idle(&self) {
        let mut g = self.lock();
        let oldest =
            g.h1.iter()
                .filter_map(|(k, l)| l.first().map(|i| (i.since, k.clone())))
                .min_by_key(|(since, _)| *since)
                .map(|(_, k)| k);
        let evicted = oldest.and_then(|k| g.h1.get_mut(&k).map(|l| l.remove(0)));
        drop(g);
        if let Some(e) = &evicted {
            log::debug!(
                "idle connection to {} evicted: total connection limit reached",
                e.remote
            );
        }
        drop(evicted);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn expired(&self, since: Instant, now: Instant) -> bool {
        self.idle_timeout
            .is_some_and(|t| now.duration_since(since) >= t)
    }

    /// A ready connection for `target`, if one is idle (or shared, for HTTP/2).
    pub fn checkout(&self, target: &Target) -> Option<(Sender, SocketAddr)> {
        let now = Instant::now();
        let mut dead = Vec::new();
        let mut g = self.lock();
        if let Some((s, remote)) = g.h2.get(target) {
            if !s.is_closed() {
                log::trace!(
                    "HTTP/2 connection shared host={}:{} remote={remote}",
                    target.host,
                    target.port
                );
                return Some((Sender::H2(s.clone()), *remote));
            }
            g.h2.remove(target);
        }
        let mut found = None;
        if let Some(list) = g.h1.get_mut(target) {
            while let Some(idle) = list.pop() {
                if self.expired(idle.since, now) || !idle.sender.is_ready() {
                    dead.push(idle);
                    continue;
                }
                log::debug!(
                    "connection reused host={}:{} remote={}",
                    target.host,
                    target.port,
                    idle.remote
                );
                found = Some((Sender::H1(idle.sender), idle.remote));
                break;
            }
        }
        drop(g);
        drop(dead);
        found
    }

    /// Puts an HTTP/1.1 connection back after its response body was read in full.
    pub fn put_h1(&self, target: &Target, sender: http1::SendRequest<ReqBody>, remote: SocketAddr) {
        if self.max_idle_per_host == 0 || !sender.is_ready() {
            return;
        }
        let mut g = self.lock();
        if g.closed {
            return;
        }
        if self.total_waiting.load(Ordering::SeqCst) > 0 && !g.waiting.contains_key(target) {
            // Another host waits for a total slot and nobody here wants this one:
            // closing it hands its slot over.
            drop(g);
            log::debug!("connection to {remote} closed: another host waits for a slot");
            drop(sender);
            return;
        }
        let list = g.h1.entry(target.clone()).or_default();
        list.push(IdleH1 {
            sender,
            since: Instant::now(),
            remote,
        });
        let evicted = if list.len() > self.max_idle_per_host {
            Some(list.remove(0))
        } else {
            None
        };
        let signal = g.idle_signal.get(target).cloned();
        drop(g);
        log::debug!(
            "connection pooled host={}:{} remote={remote}",
            target.host,
            target.port
        );
        if let Some(e) = &evicted {
            log::debug!(
                "idle connection to {} evicted: per-host idle limit reached",
                e.remote
            );
        }
        drop(evicted);
        if let Some(s) = signal {
            s.notify_waiters();
        }
    }

    /// Whether a new connection to `target` may be HTTP/2 (prior knowledge, or ALPN
    /// on a server not known to prefer HTTP/1.1), so that one dial should serve all.
    pub fn may_be_h2(&self, target: &Target) -> bool {
        use crate::engine::config::VersionPref;
        match target.version {
            VersionPref::Http2PriorKnowledge => true,
            VersionPref::Auto => target.https && !self.lock().h1_by_alpn.contains(target),
            VersionPref::Http1 => false,
        }
    }

    /// Records what ALPN chose for `target`.
    pub fn note_alpn(&self, target: &Target, h2: bool) {
        let mut g = self.lock();
        if h2 {
            g.h1_by_alpn.remove(target);
        } else {
            g.h1_by_alpn.insert(target.clone());
        }
    }

    /// Either this request dials for `target` (`Ok`, holding the turn until the
    /// guard drops), or another dial is under way and this waits for it (`Err`).
    pub fn h2_dial_turn(
        &self,
        target: &Target,
    ) -> std::result::Result<DialTurn<'_>, tokio::sync::watch::Receiver<bool>> {
        let mut g = self.lock();
        if let Some(tx) = g.h2_dialing.get(target) {
            return Err(tx.subscribe());
        }
        g.h2_dialing
            .insert(target.clone(), tokio::sync::watch::channel(false).0);
        Ok(DialTurn {
            pool: self,
            target: target.clone(),
        })
    }

    /// Shares an HTTP/2 connection with later requests for the same target.
    pub fn put_h2(
        &self,
        target: &Target,
        sender: &http2::SendRequest<ReqBody>,
        remote: SocketAddr,
    ) {
        let mut g = self.lock();
        if g.closed || sender.is_closed() {
            return;
        }
        let old = g.h2.insert(target.clone(), (sender.clone(), remote));
        let signal = g.idle_signal.get(target).cloned();
        drop(g);
        drop(old);
        if let Some(s) = signal {
            s.notify_waiters();
        }
    }

    /// Drops idle connections past the idle time-out.
    pub fn reap(&self) {
        let now = Instant::now();
        let mut dead = Vec::new();
        let mut g = self.lock();
        for list in g.h1.values_mut() {
            let mut i = 0;
            while i < list.len() {
                if self.expired(list[i].since, now) || list[i].sender.is_closed() {
                    dead.push(list.remove(i));
                } else {
                    i += 1;
                }
            }
        }
        g.h1.retain(|_, l| !l.is_empty());
        g.h2.retain(|_, (s, _)| !s.is_closed());
        drop(g);
        if !dead.is_empty() {
            log::debug!(
                "{} idle connection(s) closed: idle time-out or closed by the server",
                dead.len()
            );
        }
        drop(dead);
    }

    /// Closes the pool: every idle connection is dropped (which closes it cleanly, TLS
    /// close_notify included) and nothing is taken back from now on.
    pub fn close(&self) {
        let mut g = self.lock();
        g.closed = true;
        let h1 = std::mem::take(&mut g.h1);
        let h2 = std::mem::take(&mut g.h2);
        drop(g);
        drop(h1);
        drop(h2);
    }
}
