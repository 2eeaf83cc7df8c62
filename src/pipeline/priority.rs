//! Media work at a lower scheduling priority than the daemon's HTTP side. On a box encoding at
//! its limit a late player request costs more than a late frame still within its segment's
//! deadline, so decoders, scalers and encoders yield the CPU to the origin's workers.
//!
//! Linux keeps a nice value per thread, and a new thread starts with its creator's: the work
//! runs on a thread whose nice value is raised, so every thread it starts (the pipeline's own,
//! FFmpeg's decoder threads, x264's and x265's pools) inherits it, and the threads of the
//! caller (Tokio's workers and blocking pool) keep theirs.

/// Runs `f` on a new thread `nice` steps below the caller's priority (0: on this thread, as
/// it is), and waits for it. Err: no thread could be started.
pub fn at_lower_priority<T: Send>(nice: i32, f: impl FnOnce() -> T + Send) -> std::io::Result<T> {
    if nice <= 0 {
        return Ok(f());
    }
    std::thread::scope(|scope| {
        let worker = std::thread::Builder::new()
            .name("media".into())
            .spawn_scoped(scope, || {
                lower_this_thread(nice);
                f()
            })?;
        Ok(worker
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p)))
    })
}

/// This thread's nice value, raised by `steps` (at most 19).
fn lower_this_thread(steps: i32) {
    // SAFETY: gettid and get/setpriority on this thread's own id have no memory effects.
    unsafe {
        let tid = libc::gettid() as libc::id_t;
        let current = libc::getpriority(libc::PRIO_PROCESS, tid);
        let wanted = current.saturating_add(steps).min(19);
        if libc::setpriority(libc::PRIO_PROCESS, tid, wanted) != 0 {
            tracing::debug!("could not lower the media threads' priority");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nice_of_this_thread() -> i32 {
        // SAFETY: as above.
        unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) }
    }

    #[test]
    fn the_work_and_the_threads_it_starts_run_lower_and_the_caller_does_not() {
        let before = nice_of_this_thread();
        let (inside, started) = at_lower_priority(5, || {
            let inside = nice_of_this_thread();
            let started = std::thread::spawn(nice_of_this_thread).join().unwrap();
            (inside, started)
        })
        .unwrap();
        assert_eq!(inside, (before + 5).min(19));
        assert_eq!(
            started, inside,
            "a thread started by the work inherits its priority"
        );
        assert_eq!(nice_of_this_thread(), before, "the caller keeps its own");
        assert_eq!(at_lower_priority(0, nice_of_this_thread).unwrap(), before);
    }
}
