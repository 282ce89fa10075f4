//! The process-wide log: one sink (set through `tern_set_log_callback`) receives tern's
//! own events, rustls's (through the `log` crate) and h2's, hyper-util's and
//! hickory's (through `tracing`), as plain text. Off by default; nothing is ever
//! written to stdout or stderr.
//!
//! * Cheap when off: tern's events check one atomic; the `log` bridge sets
//!   `log::set_max_level`, the `tracing` bridge answers `Interest::never` and a max
//!   level hint, and the interest cache is rebuilt whenever the level changes.
//! * The bridges (a `log::Log` and a global `tracing` subscriber) are installed the
//!   first time a sink is set. Either slot can be taken already (a Rust program that
//!   links tern as a library and installed its own logger or subscriber): then that
//!   source keeps going where it went, and the sink is told once, at WARN.
//! * Replacing the sink is synchronous: emitters hold a read lock while they call the
//!   sink and `set` takes the write lock, so once `set` returns the old sink is never
//!   called again. A thread-local marks a thread that is inside the sink: events it
//!   logs meanwhile are dropped (no recursion, no recursive read lock), and `set` from
//!   there fails with WOULD_DEADLOCK instead of waiting for itself.
//! * Every message is scrubbed of URL userinfo and of the values of Authorization,
//!   Proxy-Authorization, Cookie and Set-Cookie (DESIGN.md, invariant 8).
#![deny(unsafe_code)]

use std::cell::Cell;
use std::fmt::{self, Write as _};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError, RwLock};

use tracing_core::field::{Field, Visit};
use tracing_core::span::{Attributes, Id, Record};
use tracing_core::subscriber::{Interest, Subscriber};
use tracing_core::{Event, LevelFilter, Metadata};

use crate::code::{Code, Error, Result};

/// How much a message matters; lower is more severe (the numbers of `tern_log_level`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    Error = 1,
    Warn = 2,
    Info = 3,
    Debug = 4,
    Trace = 5,
}

impl Level {
    /// The level numbered `n` (1 = ERROR ... 5 = TRACE).
    pub fn from_u32(n: u32) -> Option<Level> {
        Some(match n {
            1 => Level::Error,
            2 => Level::Warn,
            3 => Level::Info,
            4 => Level::Debug,
            5 => Level::Trace,
            _ => return None,
        })
    }

    fn from_log(l: ::log::Level) -> Level {
        match l {
            ::log::Level::Error => Level::Error,
            ::log::Level::Warn => Level::Warn,
            ::log::Level::Info => Level::Info,
            ::log::Level::Debug => Level::Debug,
            ::log::Level::Trace => Level::Trace,
        }
    }

    fn from_tracing(l: &tracing_core::Level) -> Level {
        match *l {
            tracing_core::Level::ERROR => Level::Error,
            tracing_core::Level::WARN => Level::Warn,
            tracing_core::Level::INFO => Level::Info,
            tracing_core::Level::DEBUG => Level::Debug,
            _ => Level::Trace,
        }
    }
}

/// Receives `(level, target, message)`; must be callable from any thread at once.
pub type Sink = dyn Fn(Level, &str, &str) + Send + Sync;

struct State {
    max: Level,
    sink: Box<Sink>,
}

/// The most verbose level wanted, as a number; 0 = off. Read on every event.
static MAX: AtomicU32 = AtomicU32::new(0);
/// The sink; read-locked for the duration of each call to it.
static SINK: RwLock<Option<State>> = RwLock::new(None);
/// Serialises `set`, so the bridges' filters always match the last sink set.
static SETTING: Mutex<()> = Mutex::new(());

thread_local! {
    /// Set while this thread formats an event or runs the sink.
    static INSIDE: Cell<bool> = const { Cell::new(false) };
}

/// Whether a message at `level` would reach the sink: one atomic load.
#[inline]
pub fn enabled(level: Level) -> bool {
    level as u32 <= MAX.load(Ordering::Relaxed)
}

/// Whether the calling thread is inside the sink (or formatting for it).
pub fn inside_sink() -> bool {
    INSIDE.try_with(Cell::get).unwrap_or(false)
}

/// Marks the thread as inside the sink until dropped; `None` if it already is (or
/// its thread-locals are gone, at thread exit).
struct Inside;

impl Inside {
    fn enter() -> Option<Inside> {
        INSIDE
            .try_with(|c| (!c.replace(true)).then_some(Inside))
            .ok()
            .flatten()
    }
}

impl Drop for Inside {
    fn drop(&mut self) {
        let _ = INSIDE.try_with(|c| c.set(false));
    }
}

/// Sends one message to the sink. `text` builds it; it runs only when the level is
/// wanted and not from inside the sink.
fn dispatch(level: Level, target: &str, text: impl FnOnce() -> String) {
    if !enabled(level) {
        return;
    }
    let Some(_inside) = Inside::enter() else {
        return;
    };
    // A panicking Debug impl must not unwind into the code that logged.
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let message = one_line(scrub(&text()));
        let state = SINK.read().unwrap_or_else(PoisonError::into_inner);
        if let Some(s) = state.as_ref() {
            // Checked again under the lock: the level may have changed meanwhile.
            if level <= s.max {
                (s.sink)(level, target, &message);
            }
        }
    }));
}

/// Logs tern's own event; use the `debug!`-style macros of this module instead.
pub fn emit(level: Level, target: &str, args: fmt::Arguments<'_>) {
    dispatch(level, target, || fmt::format(args));
}

/// `crate::log::event!(Debug, "connected to {addr}")`: one of tern's own events, with
/// the calling module's path (`tern::net::connect`) as its target.
macro_rules! event {
    ($level:ident, $($arg:tt)+) => {
        if $crate::log::enabled($crate::log::Level::$level) {
            $crate::log::emit(
                $crate::log::Level::$level,
                ::core::module_path!(),
                ::core::format_args!($($arg)+),
            );
        }
    };
}

/// A DEBUG event of tern's: connection life-cycle (DNS answer, connect, TLS, proxy
/// tunnel, pool reuse and eviction).
macro_rules! debug {
    ($($arg:tt)+) => { $crate::log::event!(Debug, $($arg)+) };
}

/// A TRACE event of tern's: per-request detail.
macro_rules! trace {
    ($($arg:tt)+) => { $crate::log::event!(Trace, $($arg)+) };
}

pub(crate) use {debug, event, trace};

/// Which bridges this process got (each global slot can be set once per process).
#[derive(Clone, Copy, Debug)]
struct Bridges {
    log: bool,
    tracing: bool,
}

static BRIDGES: OnceLock<Bridges> = OnceLock::new();
static LOG_BRIDGE: LogBridge = LogBridge;

/// Sets the sink and the most verbose level it gets; `None` for either turns logging
/// off. When this returns, the previous sink is no longer called and may be dropped.
///
/// Fails with WOULD_DEADLOCK from inside the sink (it would wait for itself).
pub fn set(max: Option<Level>, sink: Option<Box<Sink>>) -> Result<()> {
    if inside_sink() {
        return Err(Error::new(
            Code::WouldDeadlock,
            "tern_set_log_callback was called from inside the log callback; nothing changed",
        ));
    }
    let _setting = SETTING.lock().unwrap_or_else(PoisonError::into_inner);
    let state = match (max, sink) {
        (Some(max), Some(sink)) => Some(State { max, sink }),
        _ => None,
    };
    let mut first = false;
    let bridges = match (&state, BRIDGES.get()) {
        (_, Some(b)) => Some(*b),
        (Some(_), None) => {
            first = true;
            Some(*BRIDGES.get_or_init(install_bridges))
        }
        (None, None) => None,
    };
    let max = state.as_ref().map_or(0, |s| s.max as u32);
    let old = {
        let mut g = SINK.write().unwrap_or_else(PoisonError::into_inner);
        MAX.store(max, Ordering::Relaxed);
        std::mem::replace(&mut *g, state)
    };
    drop(old);
    if let Some(b) = bridges {
        if b.log {
            ::log::set_max_level(match max {
                0 => ::log::LevelFilter::Off,
                1 => ::log::LevelFilter::Error,
                2 => ::log::LevelFilter::Warn,
                3 => ::log::LevelFilter::Info,
                4 => ::log::LevelFilter::Debug,
                _ => ::log::LevelFilter::Trace,
            });
        }
        if b.tracing {
            tracing_core::callsite::rebuild_interest_cache();
        }
        if first && !b.log {
            emit(
                Level::Warn,
                module_path!(),
                format_args!(
                    "rustls's events are not forwarded: this program installed a `log` \
                     logger before tern, and they keep going there"
                ),
            );
        }
        if first && !b.tracing {
            emit(
                Level::Warn,
                module_path!(),
                format_args!(
                    "h2's, hyper-util's and hickory's events are not forwarded: this program \
                     set a global `tracing` subscriber before tern, and they keep going there"
                ),
            );
        }
    }
    Ok(())
}

fn install_bridges() -> Bridges {
    Bridges {
        log: ::log::set_logger(&LOG_BRIDGE).is_ok(),
        tracing: tracing_core::dispatcher::set_global_default(tracing_core::Dispatch::new(
            TracingBridge,
        ))
        .is_ok(),
    }
}

/// rustls and tungstenite log through the `log` crate.
struct LogBridge;

/// tungstenite's TRACE lines show frames with their payloads (application data that
/// may be secret): its targets stop at DEBUG. cookie_store's DEBUG and TRACE lines
/// print whole cookies, values included: its targets stop at INFO.
fn capped(m: &::log::Metadata<'_>) -> bool {
    let t = m.target();
    match m.level() {
        ::log::Level::Trace => {
            t.starts_with("tungstenite")
                || t.starts_with("tokio_tungstenite")
                || t.starts_with("cookie_store")
        }
        ::log::Level::Debug => t.starts_with("cookie_store"),
        _ => false,
    }
}

impl ::log::Log for LogBridge {
    fn enabled(&self, m: &::log::Metadata<'_>) -> bool {
        !capped(m) && enabled(Level::from_log(m.level()))
    }

    fn log(&self, r: &::log::Record<'_>) {
        if capped(r.metadata()) {
            return;
        }
        dispatch(Level::from_log(r.level()), r.target(), || {
            fmt::format(*r.args())
        });
    }

    fn flush(&self) {}
}

/// h2, hyper-util and hickory log through `tracing`. Spans are not followed (never
/// enabled); each event becomes "message key=value ...".
struct TracingBridge;

impl TracingBridge {
    fn wants(m: &Metadata<'_>) -> bool {
        m.is_event() && enabled(Level::from_tracing(m.level()))
    }
}

impl Subscriber for TracingBridge {
    fn register_callsite(&self, m: &'static Metadata<'static>) -> Interest {
        if Self::wants(m) {
            Interest::always()
        } else {
            Interest::never()
        }
    }

    fn enabled(&self, m: &Metadata<'_>) -> bool {
        Self::wants(m)
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(match MAX.load(Ordering::Relaxed) {
            0 => LevelFilter::OFF,
            1 => LevelFilter::ERROR,
            2 => LevelFilter::WARN,
            3 => LevelFilter::INFO,
            4 => LevelFilter::DEBUG,
            _ => LevelFilter::TRACE,
        })
    }

    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, e: &Event<'_>) {
        let m = e.metadata();
        dispatch(Level::from_tracing(m.level()), m.target(), || {
            let mut t = Fields::default();
            e.record(&mut t);
            match (t.message.is_empty(), t.fields.is_empty()) {
                (_, true) => t.message,
                (true, false) => t.fields,
                (false, false) => format!("{} {}", t.message, t.fields),
            }
        });
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}

/// Formats an event's fields: the `message` field as is, the others as `key=value`.
#[derive(Default)]
struct Fields {
    message: String,
    fields: String,
}

impl Fields {
    fn key(&mut self, f: &Field) {
        if !self.fields.is_empty() {
            self.fields.push(' ');
        }
        self.fields.push_str(f.name());
        self.fields.push('=');
    }
}

impl Visit for Fields {
    fn record_str(&mut self, f: &Field, v: &str) {
        if f.name() == "message" {
            self.message.push_str(v);
        } else {
            self.key(f);
            self.fields.push_str(v);
        }
    }

    fn record_debug(&mut self, f: &Field, v: &dyn fmt::Debug) {
        if f.name() == "message" {
            let _ = write!(self.message, "{v:?}");
        } else {
            self.key(f);
            let _ = write!(self.fields, "{v:?}");
        }
    }
}

/// Joins a multi-line message (rustls pretty-prints some structures) into one line.
fn one_line(s: String) -> String {
    if !s.contains(['\n', '\r']) {
        return s;
    }
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Header names whose values never appear in text.
const SECRET_NAMES: [&str; 4] = [
    "proxy-authorization",
    "authorization",
    "set-cookie",
    "cookie",
];

/// Removes secrets from a message: URL userinfo (`scheme://user:pass@host` becomes
/// `scheme://***@host`) and the value after a credentials header's name
/// (`authorization: Basic ...`, `"cookie": "..."`, `authorization=...` become `***`).
pub fn scrub(s: &str) -> String {
    scrub_headers(&scrub_userinfo(s))
}

fn scrub_userinfo(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let end = tail
            .find(|c: char| {
                c.is_whitespace() || matches!(c, '/' | '?' | '#' | '"' | '\'' | '>' | ')' | ',')
            })
            .unwrap_or(tail.len());
        match tail[..end].rfind('@') {
            Some(at) => {
                out.push_str("***");
                rest = &tail[at..];
            }
            None => rest = tail,
        }
    }
    out.push_str(rest);
    out
}

fn scrub_headers(s: &str) -> String {
    let lower = s.to_ascii_lowercase();
    if !SECRET_NAMES.iter().any(|n| lower.contains(n)) {
        return s.to_owned();
    }
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut copied = 0;
    let mut i = 0;
    while i < b.len() {
        let Some(name) = SECRET_NAMES
            .iter()
            .find(|n| lower.as_bytes()[i..].starts_with(n.as_bytes()))
        else {
            i += 1;
            continue;
        };
        // After the name: an optional closing quote, spaces, ':' or '=', spaces, an
        // optional opening quote, then the value.
        let mut j = i + name.len();
        let skip = |j: &mut usize, set: &[u8]| {
            while *j < b.len() && set.contains(&b[*j]) {
                *j += 1;
            }
        };
        skip(&mut j, b"\"'");
        skip(&mut j, b" \t");
        if j >= b.len() || !(b[j] == b':' || b[j] == b'=') {
            i += name.len();
            continue;
        }
        j += 1;
        skip(&mut j, b" \t");
        let quote = (j < b.len() && (b[j] == b'"' || b[j] == b'\'')).then(|| b[j]);
        if quote.is_some() {
            j += 1;
        }
        let mut end = j;
        while end < b.len() {
            let c = b[end];
            let stop = match quote {
                Some(q) => c == q,
                None => matches!(c, b'\r' | b'\n' | b',' | b'}' | b')'),
            };
            if stop {
                break;
            }
            end += 1;
        }
        if end > j {
            out.push_str(&s[copied..j]);
            out.push_str("***");
            copied = end;
        }
        i = end.max(i + 1);
    }
    out.push_str(&s[copied..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrubs_userinfo() {
        assert_eq!(
            scrub("GET https://user:s3cret@example.com/a?b=c@d done"),
            "GET https://***@example.com/a?b=c@d done"
        );
        assert_eq!(
            scrub("proxy http://u:p@127.0.0.1:3128, then socks5h://x@h"),
            "proxy http://***@127.0.0.1:3128, then socks5h://***@h"
        );
        assert_eq!(scrub("http://host/path@x"), "http://host/path@x");
        assert_eq!(scrub("no url here"), "no url here");
        assert_eq!(scrub("ends with ://"), "ends with ://");
    }

    #[test]
    fn scrubs_credentials_headers() {
        assert_eq!(
            scrub("headers={\"authorization\": \"Basic dXNlcjpwdw==\", \"accept\": \"*/*\"}"),
            "headers={\"authorization\": \"***\", \"accept\": \"*/*\"}"
        );
        assert_eq!(
            scrub("Proxy-Authorization: Basic dXNlcjpwdw==\r\nHost: x"),
            "Proxy-Authorization: ***\r\nHost: x"
        );
        assert_eq!(scrub("cookie=a=1; b=2, next"), "cookie=***, next");
        assert_eq!(scrub("Set-Cookie: id=7"), "Set-Cookie: ***");
        assert_eq!(scrub("no authorization needed"), "no authorization needed");
        assert_eq!(scrub("authorization:"), "authorization:");
        assert_eq!(
            scrub("ünïcödé authorization: x ü"),
            "ünïcödé authorization: ***"
        );
    }

    #[test]
    fn joins_lines() {
        assert_eq!(one_line("a {\n    b: 1,\r\n}\n".into()), "a { b: 1, }");
        assert_eq!(one_line("plain".into()), "plain");
    }

    #[test]
    fn levels_are_numbered_like_tern_log_level() {
        assert_eq!(Level::from_u32(0), None);
        assert_eq!(Level::from_u32(1), Some(Level::Error));
        assert_eq!(Level::from_u32(5), Some(Level::Trace));
        assert_eq!(Level::from_u32(6), None);
        assert!(Level::Error < Level::Trace);
    }
}
