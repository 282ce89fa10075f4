//! Signal masks of tern's own threads.

/// A write to a connection the peer has closed raises SIGPIPE on the writing thread
/// (std sends with MSG_NOSIGNAL, but the vectored writes of hyper and rustls are
/// writev, which has no such flag): with the host's SIGPIPE at SIG_DFL that kills the
/// process. Blocked on tern's threads, the signal stays pending there and the write
/// fails with EPIPE; the host's disposition and its own threads' masks are untouched.
pub fn block_sigpipe() {
    #[cfg(unix)]
    // SAFETY: a sigset_t on the stack, initialised by sigemptyset before use.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGPIPE);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}
