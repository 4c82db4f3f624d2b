//! Running compiled code: limits, the deadline ticker, execution statistics,
//! errors with source locations, and the host side of the host-call door.
//!
//! **How limits interrupt generated code.** Nothing ever preempts a script
//! from outside. Generated code checks, inline, at every loop head
//! `fuel - 1 < floor` against the run's [`Budget`] (optimized code keeps the
//! fuel itself in a register, see [`Budget`]), and at every function entry
//! that as well as `depth_left == 0` (the remaining call depth travels as a
//! hidden argument of every script function) and `sp < stack_limit`. The
//! deadline is folded into that compare: while an execution with a timeout
//! runs, a ticker thread looks at its deadline every millisecond and, once
//! it has passed, raises the budget's `floor` from 0 to `i64::MAX`, so the
//! next check trips. Only when a check trips does the code call into the
//! runtime, which tells the causes apart (the floor and the real clock, the
//! fuel limit, the depth and stack) and sets a limit error (status 2, which
//! no `catch` takes) or refills the budget. A `while true {}` therefore stops within
//! about one tick (1 ms, plus the scheduler's delay) of its deadline. Heap
//! bytes are checked after each allocating runtime call; host-call counters
//! when the host function runs.

use std::any::Any;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use scl_lang::Span;

use crate::engine::HostFunction;
use crate::runtime::{CtxInner, ExecCtx};
use crate::value::Value;

/// How an execution ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Status {
    Success,
    /// An uncaught script error (any kind except the limits).
    Failure,
    Timeout,
    /// Fuel, heap, call depth or a host-call cap.
    Limit,
}

impl Status {
    pub fn name(self) -> &'static str {
        match self {
            Status::Success => "SUCCESS",
            Status::Failure => "FAILURE",
            Status::Timeout => "TIMEOUT",
            Status::Limit => "LIMIT",
        }
    }
}

/// An error a script raised or ran into, as the host sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct ScriptError {
    /// `"script"`, `"type"`, `"transient"`, `"limit"`, `"timeout"`, ...
    pub kind: String,
    /// `overflow`, `division_by_zero`, `missing_key`, a host's code, ...
    pub code: String,
    pub message: String,
    /// An HTTP-like status a host function gave, if any.
    pub status: Option<i64>,
    /// Where in the source the error happened (where it was first raised).
    pub span: Option<Span>,
    /// 1-based line and column of `span`'s start.
    pub line: Option<u32>,
    pub column: Option<u32>,
    /// Set for the errors that end an execution with `TIMEOUT` or `LIMIT`.
    pub limit: Option<Status>,
}

impl ScriptError {
    pub fn new(kind: &str, code: &str, message: impl Into<String>) -> ScriptError {
        ScriptError {
            kind: kind.to_string(),
            code: code.to_string(),
            message: message.into(),
            status: None,
            span: None,
            line: None,
            column: None,
            limit: None,
        }
    }

    pub(crate) fn set_location(&mut self, span: Span, source: &str) {
        let (line, column) = scl_lang::span::line_column(source, span.start as usize);
        self.span = Some(span);
        self.line = Some(line as u32);
        self.column = Some(column as u32);
    }

    /// The execution status this error ends a run with.
    pub fn exec_status(&self) -> Status {
        self.limit.unwrap_or(Status::Failure)
    }
}

impl std::fmt::Display for ScriptError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} error `{}`: {}", self.kind, self.code, self.message)?;
        if let (Some(line), Some(column)) = (self.line, self.column) {
            write!(f, " (at {line}:{column})")?;
        }
        Ok(())
    }
}

impl std::error::Error for ScriptError {}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Info,
    Warn,
    Error,
}

/// A log line a script wrote (through a host function such as `Log.Info`).
#[derive(Clone, Debug, PartialEq)]
pub struct LogLine {
    pub level: LogLevel,
    pub message: String,
}

/// The most log lines one run keeps (see [`HostContext::log`]).
pub const MAX_LOG_LINES: usize = 1_000;

/// The most bytes of log messages one run keeps (see [`HostContext::log`]).
pub const MAX_LOG_BYTES: usize = 256 * 1024;

/// The warning that ends the log of a run that logged past the bounds.
pub(crate) fn dropped_logs_line(dropped: u64) -> LogLine {
    LogLine {
        level: LogLevel::Warn,
        message: format!(
            "{dropped} more log lines were dropped: a run keeps at most {MAX_LOG_LINES} lines \
             and {MAX_LOG_BYTES} bytes of log messages"
        ),
    }
}

/// The limits of one execution. `Default` is: no timeout, no fuel limit, no
/// heap limit, a call depth of 1,000 within 1 MiB of stack, no caps.
#[derive(Clone, Debug)]
pub struct Limits {
    pub timeout: Option<Duration>,
    /// Steps: one per function entry and per loop iteration.
    pub fuel: Option<u64>,
    pub heap_bytes: Option<usize>,
    /// Nested script calls. 1,000 frames of generated code need well under
    /// 1 MiB of stack.
    pub max_call_depth: u32,
    /// How much of the calling thread's stack script calls may use (on top
    /// of what the thread had used when the call started): a second guard
    /// besides `max_call_depth`, so a deep recursion is a `LIMIT` error on
    /// any thread, never a stack overflow. Default 1 MiB.
    pub stack_bytes: usize,
    /// Caps on host-call counters by category (`callouts`, `queries`,
    /// `dml_rows`, `notifications`, or any a host counts).
    pub caps: Vec<(String, u64)>,
    /// Passed to host functions ([`HostContext::dry_run`]).
    pub dry_run: bool,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            timeout: None,
            fuel: None,
            heap_bytes: None,
            max_call_depth: 1000,
            stack_bytes: 1 << 20,
            caps: Vec::new(),
            dry_run: false,
        }
    }
}

/// What one execution did.
#[derive(Clone, Debug)]
pub struct ExecStats {
    pub status: Status,
    pub duration: Duration,
    /// CPU time of the executing thread, exact to within 100 µs: a run
    /// shorter than that reports its wall time (see `CpuMeter` in `exec.rs`).
    pub cpu_time: Duration,
    /// Steps used (function entries and loop iterations).
    pub fuel_used: u64,
    pub heap_peak_bytes: u64,
    /// Host-call counters by category.
    pub counters: Vec<(String, u64)>,
    pub logs: Vec<LogLine>,
}

/// The result of an execution together with its statistics.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub result: Result<Value, ScriptError>,
    pub stats: ExecStats,
}

impl Outcome {
    pub fn status(&self) -> Status {
        self.stats.status
    }
}

/// An error a host function reports to the script; catchable, except the
/// ones made with [`HostError::limit`].
#[derive(Clone, Debug, PartialEq)]
pub struct HostError {
    pub kind: String,
    pub code: String,
    pub message: String,
    pub status: Option<i64>,
    limit: bool,
}

impl HostError {
    pub fn new(kind: &str, code: &str, message: impl Into<String>) -> HostError {
        HostError {
            kind: kind.into(),
            code: code.into(),
            message: message.into(),
            status: None,
            limit: false,
        }
    }

    pub fn transient(code: &str, message: impl Into<String>) -> HostError {
        HostError::new("transient", code, message)
    }

    pub fn permanent(code: &str, message: impl Into<String>) -> HostError {
        HostError::new("permanent", code, message)
    }

    /// Ends the execution with status `LIMIT`; no `catch` sees it.
    pub fn limit(code: &str, message: impl Into<String>) -> HostError {
        HostError {
            limit: true,
            ..HostError::new("limit", code, message)
        }
    }

    pub fn with_status(mut self, status: i64) -> HostError {
        self.status = Some(status);
        self
    }
}

impl std::fmt::Display for HostError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} error `{}`: {}", self.kind, self.code, self.message)
    }
}

impl std::error::Error for HostError {}

/// What a host function sees of the execution calling it.
pub struct HostContext<'a, 's> {
    inner: &'a mut CtxInner<'s>,
}

impl HostContext<'_, '_> {
    /// The embedder's data for this execution ([`CallOptions::host_data`](crate::CallOptions)), if it is a `T`.
    pub fn host_data<T: Any>(&self) -> Option<&T> {
        self.inner
            .host_data
            .and_then(|d| (d as &dyn Any).downcast_ref::<T>())
    }

    /// Adds a line to the execution's captured log.
    ///
    /// A run keeps at most [`MAX_LOG_LINES`] lines and [`MAX_LOG_BYTES`] bytes
    /// of messages: log lines are not script heap, so a script logging in a
    /// loop must not be able to fill the host's memory. Lines past either
    /// bound are counted, and one warning at the end of the run says how many
    /// were dropped.
    pub fn log(&mut self, level: LogLevel, message: impl Into<String>) {
        let message = message.into();
        let inner = &mut *self.inner;
        if inner.logs.len() >= MAX_LOG_LINES
            || inner.log_bytes.saturating_add(message.len()) > MAX_LOG_BYTES
        {
            inner.logs_dropped += 1;
            return;
        }
        inner.log_bytes += message.len();
        inner.logs.push(LogLine { level, message });
    }

    /// Adds `n` to a counter; past its cap this returns a limit error the
    /// host function should return.
    pub fn count(&mut self, category: &str, n: u64) -> Result<(), HostError> {
        count(self.inner, category, n)
    }

    /// Whether the run is a dry run (no outbound effects wanted).
    pub fn dry_run(&self) -> bool {
        self.inner.dry_run
    }
}

fn count(inner: &mut CtxInner<'_>, category: &str, n: u64) -> Result<(), HostError> {
    let total = match inner.counters.iter_mut().find(|(c, _)| c == category) {
        Some((_, value)) => {
            *value += n;
            *value
        }
        None => {
            inner.counters.push((category.to_string(), n));
            n
        }
    };
    match inner.caps.iter().find(|(c, _)| c == category) {
        Some((_, cap)) if total > *cap => Err(HostError::limit(
            category,
            format!("more than {cap} {category} in one execution"),
        )),
        _ => Ok(()),
    }
}

/// Calls a host function for `rt_host_call`; `None` when it failed (the
/// error is then set in the context).
pub(crate) fn call_host(
    ctx: &mut ExecCtx<'_>,
    host: &HostFunction,
    args: Vec<Value>,
) -> Option<Value> {
    let counted = match &host.category {
        Some(category) => count(&mut ctx.inner, category, 1),
        None => Ok(()),
    };
    let result = counted.and_then(|()| {
        let mut host_context = HostContext {
            inner: &mut ctx.inner,
        };
        (host.implementation)(&mut host_context, args)
    });
    match result {
        Ok(value) => Some(value),
        Err(error) if error.limit => {
            ctx.raise_limit(Status::Limit, &error.code, error.message);
            None
        }
        Err(error) => {
            let mut script_error = ScriptError::new(&error.kind, &error.code, error.message);
            script_error.status = error.status;
            ctx.raise_error(script_error);
            None
        }
    }
}

// ---------------------------------------------------------------- the budget and the deadline ticker

/// The step budget of one execution, which generated code decrements at
/// every function entry and loop head: `fuel - 1 < floor` calls the runtime.
///
/// Quick code and the reference evaluator decrement `fuel` itself. While
/// optimized code runs, the count is in cranelift's pinned register, not in
/// `fuel`: the entry trampoline loads it from here and stores it back when
/// the call returns, and the slow path of a check stores it before it calls
/// the runtime and loads it again after (the runtime reads it and may refill
/// it). So Rust code sees the current count whenever generated code calls it
/// for a tripped check, and the final count after the run; during an
/// optimized run, host functions see the count as it was when the run
/// started.
///
/// `floor` carries the deadline: it is 0 until a timed execution passes its
/// deadline, when the ticker thread sets it to `i64::MAX`, so the next check
/// trips whatever fuel is left. Generated code only reads `floor` and only
/// this execution's thread writes `fuel`, so no store of one side can undo
/// the other's (a ticker writing into `fuel` itself would race with the
/// running code's decrement, and in a tight loop lose nearly always). The
/// budget is its own allocation, not part of [`ExecCtx`] (which Rust code
/// borrows `&mut`), because the ticker writes it while the execution runs.
#[repr(C)]
pub(crate) struct Budget {
    pub(crate) fuel: AtomicI64,
    pub(crate) floor: AtomicI64,
}

/// Byte offsets of the [`Budget`] fields generated code reads.
pub(crate) const BUDGET_FUEL: i32 = std::mem::offset_of!(Budget, fuel) as i32;
pub(crate) const BUDGET_FLOOR: i32 = std::mem::offset_of!(Budget, floor) as i32;

impl Budget {
    pub(crate) fn new(fuel: i64) -> Budget {
        Budget {
            fuel: AtomicI64::new(fuel),
            floor: AtomicI64::new(0),
        }
    }

    /// The steps left.
    pub(crate) fn remaining(&self) -> i64 {
        self.fuel.load(Ordering::Relaxed)
    }

    /// Whether the ticker saw the deadline pass.
    pub(crate) fn interrupted(&self) -> bool {
        self.floor.load(Ordering::Relaxed) != 0
    }
}

struct Timed {
    id: u64,
    deadline: Instant,
    budget: Arc<Budget>,
}

/// The timed executions the ticker watches, and whether it sleeps on `wake`.
struct Watch {
    next_id: u64,
    runs: Vec<Timed>,
    parked: bool,
}

struct Ticker {
    watch: Mutex<Watch>,
    wake: Condvar,
}

/// How often the ticker looks at the deadlines of running executions.
const TICK: Duration = Duration::from_millis(1);

/// How long the ticker keeps ticking with nothing to watch before it sleeps
/// until an execution starts. Under load executions are short and come one
/// after another, so the list is empty between most of them: a ticker that slept
/// at once would be woken (a system call and a context switch) for nearly every
/// execution; one that lingers costs a wake-up per tick and none per execution.
const LINGER: Duration = Duration::from_millis(200);

fn ticker() -> &'static Ticker {
    static TICKER: OnceLock<Ticker> = OnceLock::new();
    static STARTED: std::sync::Once = std::sync::Once::new();
    let ticker = TICKER.get_or_init(|| Ticker {
        watch: Mutex::new(Watch {
            next_id: 0,
            runs: Vec::new(),
            parked: false,
        }),
        wake: Condvar::new(),
    });
    STARTED.call_once(|| {
        // Should the thread not start, no deadline trips the budget: the
        // runtime still sees a passed deadline whenever it is called
        // (fuel refills, host calls), and fuel and depth limits still hold.
        let spawned = std::thread::Builder::new()
            .name("scl-deadlines".into())
            .spawn(tick_forever);
        drop(spawned);
    });
    ticker
}

fn tick_forever() {
    let ticker = ticker();
    let mut watch = ticker.watch.lock().unwrap_or_else(|e| e.into_inner());
    let mut idle_since: Option<Instant> = None;
    loop {
        if watch.runs.is_empty() {
            let now = Instant::now();
            if now.duration_since(*idle_since.get_or_insert(now)) >= LINGER {
                // `parked` is set before every wait: a starter clears it when it
                // wakes us, and the run it added may be gone again by the time
                // this thread runs.
                while watch.runs.is_empty() {
                    watch.parked = true;
                    watch = ticker.wake.wait(watch).unwrap_or_else(|e| e.into_inner());
                }
                watch.parked = false;
                idle_since = None;
            }
        } else {
            idle_since = None;
        }
        drop(watch);
        std::thread::sleep(TICK);
        watch = ticker.watch.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        for run in watch.runs.iter().filter(|run| now >= run.deadline) {
            run.budget.floor.store(i64::MAX, Ordering::Relaxed);
        }
    }
}

/// Registers a timed execution with the ticker while it is alive.
pub(crate) struct TimedExecution {
    id: u64,
}

impl TimedExecution {
    /// Trips `budget` once `deadline` has passed, until this is dropped.
    pub(crate) fn start(deadline: Instant, budget: Arc<Budget>) -> TimedExecution {
        let ticker = ticker();
        let mut watch = ticker.watch.lock().unwrap_or_else(|e| e.into_inner());
        watch.next_id += 1;
        let id = watch.next_id;
        watch.runs.push(Timed {
            id,
            deadline,
            budget,
        });
        // Only a parked ticker needs waking (a notify is a system call every
        // time, waiter or not); a ticking one sees the entry at its next tick.
        let wake = std::mem::replace(&mut watch.parked, false);
        drop(watch);
        if wake {
            ticker.wake.notify_all();
        }
        TimedExecution { id }
    }
}

impl Drop for TimedExecution {
    fn drop(&mut self) {
        let ticker = ticker();
        let mut watch = ticker.watch.lock().unwrap_or_else(|e| e.into_inner());
        watch.runs.retain(|run| run.id != self.id);
    }
}

/// CPU time of the calling thread, from the kernel.
fn thread_cpu_time() -> Duration {
    let mut time = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `clock_gettime` writes one `timespec` to the pointer we pass,
    // which points at a live local.
    let result = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut time) };
    if result != 0 {
        return Duration::ZERO;
    }
    Duration::new(time.tv_sec as u64, time.tv_nsec as u32)
}

/// Runs shorter than this report their wall time as CPU time.
pub(crate) const CPU_CLOCK_MIN_RUN: Duration = Duration::from_micros(100);
/// A thread-CPU reading younger than this stands in for a run's start reading.
const CPU_READING_MAX_AGE: Duration = Duration::from_micros(50);

thread_local! {
    /// The last thread-CPU reading of this thread: (wall time, CPU time).
    static CPU_READING: std::cell::Cell<Option<(Instant, Duration)>> =
        const { std::cell::Cell::new(None) };
}

fn read_cpu_clock(now: Instant) -> Duration {
    let cpu = thread_cpu_time();
    CPU_READING.with(|r| r.set(Some((now, cpu))));
    cpu
}

/// Measures one execution's wall and CPU time.
///
/// Reading the thread CPU clock is a system call that takes 0.4-0.7 µs on
/// the machines we measure on, more than a small script run costs, so the
/// meter reads it only where it changes the answer:
/// - a run shorter than [`CPU_CLOCK_MIN_RUN`] reports its wall time as CPU
///   time (one thread cannot use more CPU than wall time, and a run this
///   short is rarely descheduled); it reads no clock at its end;
/// - a run starting within [`CPU_READING_MAX_AGE`] of this thread's last
///   reading uses that reading as its start (back-to-back calls share one);
/// - otherwise the clock is read at the start, and at the end of every run
///   of [`CPU_CLOCK_MIN_RUN`] or more; the result is capped at the wall time.
///
/// So `cpu_time` is exact to within 100 µs, and a tight loop of small calls
/// reads the clock about once per 50 µs instead of twice per call.
pub(crate) struct CpuMeter {
    wall_start: Instant,
    cpu_start: Duration,
}

impl CpuMeter {
    pub(crate) fn start() -> CpuMeter {
        let wall_start = Instant::now();
        let recent = CPU_READING.with(|r| r.get()).and_then(|(wall, cpu)| {
            (wall_start.saturating_duration_since(wall) <= CPU_READING_MAX_AGE).then_some(cpu)
        });
        let cpu_start = recent.unwrap_or_else(|| read_cpu_clock(wall_start));
        CpuMeter {
            wall_start,
            cpu_start,
        }
    }

    pub(crate) fn wall_start(&self) -> Instant {
        self.wall_start
    }

    /// Wall time and CPU time since [`start`](CpuMeter::start).
    pub(crate) fn finish(&self) -> (Duration, Duration) {
        let now = Instant::now();
        let wall = now.saturating_duration_since(self.wall_start);
        if wall < CPU_CLOCK_MIN_RUN {
            return (wall, wall);
        }
        let cpu = read_cpu_clock(now).saturating_sub(self.cpu_start);
        (wall, cpu.min(wall))
    }
}
