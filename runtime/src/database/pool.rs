//! What the three drivers' pools share: building a deadpool pool from [`PoolSettings`],
//! borrowing from it on a script thread, and turning pool failures into typed errors.
//!
//! Every pool is a `deadpool::managed::Pool` with the connection's size, a wait timeout (no free
//! connection), a create timeout (connecting) and a recycle timeout (the liveness check before
//! reuse). Borrowing blocks the calling thread on the runtime handle: callers are script
//! threads or the forwarder's blocking pool, never a task on the reactor.

use std::future::Future;
use std::time::Duration;

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
pub async fn within<F: Future>(limit: Duration, future: F) -> Option<F::Output> {
    tokio::time::timeout(limit, future).await.ok()
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
