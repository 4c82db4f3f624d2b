//! What the three drivers' pools share: building a deadpool pool from [`PoolSettings`],
//! borrowing from it on a script thread, and turning pool failures into typed errors.
//!
//! Every pool is a `deadpool::managed::Pool` with the connection's size, a wait timeout (no free
//! connection), a create timeout (connecting) and a recycle timeout (the liveness check before
//! reuse). Borrowing blocks the calling thread on the runtime handle: callers are script
//! threads or the forwarder's blocking pool, never a task on the reactor.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use deadpool::Runtime;
use deadpool::managed::{Manager, Object, Pool, PoolError, TimeoutType};
use scl_stdlib::database::DatabaseError;
use tokio::runtime::Handle;

use super::settings::PoolSettings;

/// A connection idle for longer than this is checked with a round trip before it is lent
/// again (a server restart while it sat in the pool would otherwise fail the script's first
/// statement). Busy connections are reused without the round trip.
pub const IDLE_CHECK_AFTER: Duration = Duration::from_secs(10);

/// A pool for `manager` with the connection's size and timeouts.
pub fn build_pool<M: Manager>(
    manager: M,
    settings: &PoolSettings,
) -> Result<Pool<M>, DatabaseError> {
    Pool::builder(manager)
        .max_size(settings.size)
        .wait_timeout(Some(settings.pool_timeout))
        .create_timeout(Some(settings.connect_timeout))
        .recycle_timeout(Some(settings.connect_timeout))
        .runtime(Runtime::Tokio1)
        .build()
        .map_err(|error| {
            DatabaseError::configuration(format!("cannot build the connection pool: {error}"))
        })
}

/// Borrow a connection, blocking this thread.
pub fn checkout<M>(
    handle: &Handle,
    pool: &Pool<M>,
    settings: &PoolSettings,
) -> Result<Object<M>, DatabaseError>
where
    M: Manager<Error = DatabaseError>,
{
    block(handle, pool.get()).map_err(|error| pool_error(error, settings))
}

/// Run a future to completion on `handle` from a blocking thread.
pub fn block<F: Future>(handle: &Handle, future: F) -> F::Output {
    handle.block_on(future)
}

/// Run a future with a deadline; `None` when it ran out.
///
/// The deadline is kept by [`Watchdog`], not a tokio timer: a timer registered while the
/// runtime has no earlier one wakes the runtime's driver to re-arm it, and that wake cost
/// every statement 8 to 10 µs (PostgreSQL one-row query: +19.5% / +20.9% over the plain
/// driver with a tokio timeout, +7.5% / +12.8% without one, same rounds).
pub async fn within<F: Future>(limit: Duration, future: F) -> Option<F::Output> {
    let deadline = Watchdog::global().watch(Instant::now() + limit);
    tokio::select! {
        biased;
        output = future => Some(output),
        () = deadline.notify.notified() => None,
    }
}

/// How often the watchdog looks for statements past their deadline: statement timeouts are
/// whole seconds, so a deadline is kept to within this.
const WATCH_EVERY: Duration = Duration::from_millis(50);

/// The deadlines of statements in flight, checked by one thread every [`WATCH_EVERY`].
/// Watching a deadline takes a lock and an insert, and wakes nobody.
struct Watchdog {
    watched: Mutex<Watched>,
}

#[derive(Default)]
struct Watched {
    next_id: u64,
    deadlines: HashMap<u64, (Instant, Arc<tokio::sync::Notify>)>,
}

/// One watched deadline; dropping it stops the watch.
struct Deadline {
    id: u64,
    notify: Arc<tokio::sync::Notify>,
}

impl Drop for Deadline {
    fn drop(&mut self) {
        Watchdog::global().lock().deadlines.remove(&self.id);
    }
}

impl Watchdog {
    /// The process's watchdog, its thread started on first use.
    fn global() -> &'static Watchdog {
        static WATCHDOG: OnceLock<&'static Watchdog> = OnceLock::new();
        WATCHDOG.get_or_init(|| {
            let watchdog: &'static Watchdog = Box::leak(Box::new(Watchdog {
                watched: Mutex::new(Watched::default()),
            }));
            let started = std::thread::Builder::new()
                .name("scl-db-deadlines".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(WATCH_EVERY);
                        watchdog.expire(Instant::now());
                    }
                });
            if let Err(error) = started {
                // Without the thread no statement times out on the client side; the
                // servers' own timeouts still apply.
                tracing::error!("cannot start the statement deadline thread: {error}");
            }
            watchdog
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Watched> {
        self.watched.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn watch(&self, at: Instant) -> Deadline {
        let notify = Arc::new(tokio::sync::Notify::new());
        let mut watched = self.lock();
        let id = watched.next_id;
        watched.next_id += 1;
        watched.deadlines.insert(id, (at, Arc::clone(&notify)));
        Deadline { id, notify }
    }

    /// Wakes every statement whose deadline is `now` or earlier (a permit is stored when
    /// it is not waiting yet), and stops watching it.
    fn expire(&self, now: Instant) {
        self.lock().deadlines.retain(|_, (at, notify)| {
            let expired = *at <= now;
            if expired {
                notify.notify_one();
            }
            !expired
        });
    }
}

fn pool_error(error: PoolError<DatabaseError>, settings: &PoolSettings) -> DatabaseError {
    match error {
        PoolError::Backend(error) => error,
        PoolError::Timeout(TimeoutType::Wait) => DatabaseError::timeout(
            "pool_timeout",
            format!(
                "no pooled connection became free within {} s (pool size {}); raise `pool_size` \
                 or shorten transactions",
                settings.pool_timeout.as_secs(),
                settings.size
            ),
        ),
        PoolError::Timeout(TimeoutType::Create | TimeoutType::Recycle) => DatabaseError::timeout(
            "connect_timeout",
            format!(
                "connecting to the server took longer than {} s",
                settings.connect_timeout.as_secs()
            ),
        ),
        PoolError::Closed => {
            DatabaseError::unreachable("unreachable", "the connection pool is closed")
        }
        PoolError::NoRuntimeSpecified | PoolError::PostCreateHook(_) => {
            DatabaseError::configuration(format!("connection pool: {error}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_future_past_its_deadline_ends_and_one_in_time_finishes() {
        let started = Instant::now();
        let never = within(Duration::from_millis(100), std::future::pending::<()>()).await;
        assert_eq!(never, None);
        assert!(started.elapsed() >= Duration::from_millis(100));
        let quick = within(Duration::from_secs(5), async { 7 }).await;
        assert_eq!(quick, Some(7));
        // Finished and given-up statements are no longer watched.
        assert!(Watchdog::global().lock().deadlines.is_empty());
    }
}
