//! The script thread pool: scripts run on dedicated OS threads, never on the
//! async reactor (seed CD-ESG-7), because host functions block (HTTP, SMTP,
//! SQL) while the script waits for them.
//!
//! A job is a closure; [`ScriptPool::run`] hands one to the pool and awaits
//! its result from async code (an axum handler, a timer task). Threads are
//! started once and live as long as the pool.

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

type Job = Box<dyn FnOnce() + Send + 'static>;

/// The heap one script run may use on a node (central, site, alarm
/// conditions, `scl run`): 128 MiB. Without a limit a hostile or buggy script
/// (a string doubled in a loop, a `replace` that multiplies its text) asks the
/// allocator for more than the machine has and the whole node aborts; with
/// it the run ends with `LIMIT`/`heap` and the thread takes the next job.
/// One operation can overshoot by its own allocation (the engine checks
/// sizes it knows up front before allocating), so a run peaks below about
/// twice this.
pub const SCRIPT_HEAP_BYTES: usize = 128 << 20;

/// A fixed set of script threads sharing one job queue.
#[derive(Clone)]
pub struct ScriptPool {
    inner: Arc<PoolInner>,
}

struct PoolInner {
    sender: Mutex<Option<crossbeam_channel::Sender<Job>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    size: usize,
}

/// The pool was shut down before the job could run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolClosed;

impl std::fmt::Display for PoolClosed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the script thread pool is shut down")
    }
}

impl std::error::Error for PoolClosed {}

impl std::fmt::Debug for ScriptPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScriptPool")
            .field("size", &self.inner.size)
            .finish_non_exhaustive()
    }
}

impl ScriptPool {
    /// Starts `size` threads (at least one) named `{name}-{n}`.
    pub fn new(name: &str, size: usize) -> std::io::Result<ScriptPool> {
        let size = size.max(1);
        // Every thread receives from the same multi-consumer queue: a job
        // wakes one waiting thread (a `Mutex` around an mpsc receiver would
        // also wake the next thread in line each time the lock is released).
        let (sender, receiver) = crossbeam_channel::unbounded::<Job>();
        let mut threads = Vec::with_capacity(size);
        for n in 0..size {
            let receiver = receiver.clone();
            let thread = std::thread::Builder::new()
                .name(format!("{name}-{n}"))
                .stack_size(8 * 1024 * 1024)
                .spawn(move || {
                    while let Ok(job) = receiver.recv() {
                        job();
                    }
                })?;
            threads.push(thread);
        }
        Ok(ScriptPool {
            inner: Arc::new(PoolInner {
                sender: Mutex::new(Some(sender)),
                threads: Mutex::new(threads),
                size,
            }),
        })
    }

    /// How many threads the pool has.
    pub fn size(&self) -> usize {
        self.inner.size
    }

    /// Queues `job`; it runs on one of the pool's threads.
    pub fn spawn(&self, job: impl FnOnce() + Send + 'static) -> Result<(), PoolClosed> {
        let guard = match self.inner.sender.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        match guard.as_ref() {
            Some(sender) => sender.send(Box::new(job)).map_err(|_| PoolClosed),
            None => Err(PoolClosed),
        }
    }

    /// Runs `job` on the pool and waits for its result without blocking the
    /// async reactor.
    pub async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, PoolClosed> {
        let (sender, receiver) = tokio::sync::oneshot::channel();
        self.spawn(move || {
            let _ = sender.send(job());
        })?;
        receiver.await.map_err(|_| PoolClosed)
    }

    /// Stops accepting jobs and waits until the queued ones have run.
    pub fn shutdown(&self) {
        let sender = match self.inner.sender.lock() {
            Ok(mut guard) => guard.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        drop(sender);
        let threads = match self.inner.threads.lock() {
            Ok(mut guard) => std::mem::take(&mut *guard),
            Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
        };
        let current = std::thread::current().id();
        for thread in threads {
            if thread.thread().id() != current {
                let _ = thread.join();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn runs_every_job_then_shuts_down() {
        let pool = ScriptPool::new("test", 3).expect("threads");
        let done = Arc::new(AtomicUsize::new(0));
        for _ in 0..100 {
            let done = Arc::clone(&done);
            pool.spawn(move || {
                done.fetch_add(1, Ordering::SeqCst);
            })
            .expect("open");
        }
        pool.shutdown();
        assert_eq!(done.load(Ordering::SeqCst), 100);
        assert_eq!(pool.spawn(|| {}), Err(PoolClosed));
    }

    #[test]
    fn run_returns_the_value_to_async_code() {
        let pool = ScriptPool::new("test", 2).expect("threads");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let name = runtime
            .block_on(pool.run(|| std::thread::current().name().map(str::to_owned)))
            .expect("ran");
        assert!(name.is_some_and(|n| n.starts_with("test-")));
        pool.shutdown();
    }
}
