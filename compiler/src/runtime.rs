//! The run-time half of the engine: heap objects, the execution context, and
//! the table of `extern "C"` runtime functions generated code calls.
//!
//! **Value model.** A heap value is an [`Rc<Obj>`]; generated code holds it as
//! the raw pointer `Rc::into_raw` gives (the `Ptr` representation). Objects
//! are created and dropped on the thread that runs the execution and never
//! leave it: values cross to the host only as the owned [`Value`](crate::Value)
//! enum, so `Rc` (not `Arc`) is enough and no atomic operation is paid. There
//! are no cycles to collect: records are immutable, `json` values are deep
//! copies (`serde_json::Value`), and the type system forbids a list or map
//! from containing itself, so plain reference counting frees everything.
//!
//! **Accounting.** Every object records an approximate size; a thread-local
//! counter tracks live objects and bytes (and the peak) of the execution
//! running on this thread. The heap limit is checked after every runtime
//! function that allocates, so one operation can overshoot by at most its own
//! allocation before the execution ends with `LIMIT`.
//!
//! **Runtime ABI.** Every runtime function is
//! `extern "C" fn(*mut ExecCtx, i64, ...) -> i64` with zero to six `i64`
//! arguments ([`RtFn`] lists them with their arity and whether they can
//! fail). Floats travel as bits, booleans as 0/1, heap values as pointers:
//! *borrowed* when passed in, a *new reference* when returned. A function that
//! fails sets the error in the context and returns 0 (never a reference).

pub(crate) mod convert;
pub(crate) mod ops;

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use indexmap::IndexMap;

use crate::engine::HostFunction;
use crate::exec::{LogLine, ScriptError};
use crate::ir::Repr;
use crate::value::HostObject;

/// A heap object. `bytes` is its accounted size.
pub(crate) struct Obj {
    bytes: Cell<usize>,
    pub(crate) body: Body,
}

pub(crate) enum Body {
    Str(String),
    List(RefCell<Vec<Val>>),
    Map(RefCell<IndexMap<String, Val>>),
    /// Fields in canonical (sorted by name) order.
    Record(Vec<Val>),
    Json(serde_json::Value),
    /// The boxes of `int?`, `float?` and `bool?` values that are not null.
    Int(i64),
    Float(f64),
    Bool(bool),
    Host(HostObject),
}

/// A value inside a container, or on its way between representations.
#[derive(Clone)]
pub(crate) enum Val {
    Int(i64),
    Float(f64),
    Bool(bool),
    /// The null pointer: an optional that is `null`.
    Null,
    Obj(Rc<Obj>),
}

pub(crate) const OBJECT_OVERHEAD: usize = 48;
pub(crate) const VAL_SIZE: usize = std::mem::size_of::<Val>();

#[derive(Clone, Copy, Default, Debug)]
pub(crate) struct HeapCounters {
    pub(crate) live_objects: i64,
    pub(crate) live_bytes: i64,
    pub(crate) peak_bytes: i64,
}

thread_local! {
    static HEAP: Cell<HeapCounters> = const { Cell::new(HeapCounters { live_objects: 0, live_bytes: 0, peak_bytes: 0 }) };
}

/// The live-object and byte counters of this thread.
pub(crate) fn heap_counters() -> HeapCounters {
    HEAP.with(|h| h.get())
}

/// Replaces this thread's counters (an execution starts from zero bytes and
/// restores the outer ones when it ends, so nested executions add up).
pub(crate) fn set_heap_counters(counters: HeapCounters) {
    HEAP.with(|h| h.set(counters));
}

fn account(bytes: i64, objects: i64) {
    HEAP.with(|h| {
        let mut c = h.get();
        c.live_bytes += bytes;
        c.live_objects += objects;
        if c.live_bytes > c.peak_bytes {
            c.peak_bytes = c.live_bytes;
        }
        h.set(c);
    });
}

/// The number of heap objects alive on this thread: what the leak tests watch.
pub fn live_objects() -> i64 {
    heap_counters().live_objects
}

impl Obj {
    pub(crate) fn new(body: Body) -> Rc<Obj> {
        let bytes = OBJECT_OVERHEAD + body_size(&body);
        account(bytes as i64, 1);
        Rc::new(Obj {
            bytes: Cell::new(bytes),
            body,
        })
    }

    pub(crate) fn str(text: String) -> Rc<Obj> {
        Obj::new(Body::Str(text))
    }

    pub(crate) fn list(items: Vec<Val>) -> Rc<Obj> {
        Obj::new(Body::List(RefCell::new(items)))
    }

    pub(crate) fn map(entries: IndexMap<String, Val>) -> Rc<Obj> {
        Obj::new(Body::Map(RefCell::new(entries)))
    }

    pub(crate) fn json(value: serde_json::Value) -> Rc<Obj> {
        Obj::new(Body::Json(value))
    }

    /// Adjusts the accounted size of a container by one entry's worth
    /// (`map_entry_size`), without walking it: a map insert or remove is
    /// then O(1) in accounting, where [`Obj::remeasure`] is O(entries) and
    /// made filling a map quadratic (found by the runaway-script tests: a
    /// map growing in a loop ran into its timeout long before its heap limit).
    pub(crate) fn adjust(&self, delta: i64) {
        let bytes = (self.bytes.get() as i64 + delta).max(0) as usize;
        let old = self.bytes.replace(bytes);
        account(bytes as i64 - old as i64, 0);
    }

    /// Re-measures a container after it changed size.
    pub(crate) fn remeasure(&self) {
        let bytes = OBJECT_OVERHEAD + body_size(&self.body);
        let old = self.bytes.replace(bytes);
        account(bytes as i64 - old as i64, 0);
    }

    pub(crate) fn as_str(&self) -> Option<&str> {
        match &self.body {
            Body::Str(s) => Some(s),
            _ => None,
        }
    }
}

impl Drop for Obj {
    fn drop(&mut self) {
        account(-(self.bytes.get() as i64), -1);
    }
}

fn body_size(body: &Body) -> usize {
    match body {
        Body::Str(s) => s.len(),
        Body::List(items) => items.try_borrow().map_or(0, |v| v.capacity() * VAL_SIZE),
        Body::Map(entries) => entries
            .try_borrow()
            .map_or(0, |m| m.keys().map(|k| map_entry_size(k)).sum()),
        Body::Record(fields) => fields.len() * VAL_SIZE,
        Body::Json(value) => json_size(value),
        Body::Int(_) | Body::Float(_) | Body::Bool(_) | Body::Host(_) => 8,
    }
}

/// The accounted size of one map entry with this key.
pub(crate) fn map_entry_size(key: &str) -> usize {
    key.len() + 24 + VAL_SIZE + 8
}

fn json_size(value: &serde_json::Value) -> usize {
    use serde_json::Value as J;
    32 + match value {
        J::String(s) => s.len(),
        J::Array(items) => items.iter().map(json_size).sum(),
        J::Object(entries) => entries.iter().map(|(k, v)| k.len() + json_size(v)).sum(),
        _ => 0,
    }
}

impl Val {
    /// Reads an argument: `bits` in representation `repr`, borrowed (a
    /// pointer gets a new reference for the returned `Val`).
    pub(crate) fn from_bits(bits: i64, repr: Repr) -> Val {
        match repr {
            Repr::Int => Val::Int(bits),
            Repr::Float => Val::Float(f64::from_bits(bits as u64)),
            Repr::Bool => Val::Bool(bits & 1 != 0),
            Repr::Ptr => match borrow_ptr(bits) {
                None => Val::Null,
                Some(obj) => {
                    retain(bits);
                    // SAFETY: `bits` came from `Rc::into_raw` (see `borrow_ptr`)
                    // and the retain above paid for the `Rc` made here.
                    Val::Obj(unsafe { Rc::from_raw(obj as *const Obj) })
                }
            },
        }
    }

    /// Turns the value into a result for generated code: a pointer is handed
    /// over as a new reference.
    pub(crate) fn into_bits(self) -> i64 {
        match self {
            Val::Int(i) => i,
            Val::Float(x) => x.to_bits() as i64,
            Val::Bool(b) => b as i64,
            Val::Null => 0,
            Val::Obj(obj) => Rc::into_raw(obj) as i64,
        }
    }

    pub(crate) fn obj(&self) -> Option<&Obj> {
        match self {
            Val::Obj(obj) => Some(obj),
            _ => None,
        }
    }
}

/// Hands a new object to generated code as a new reference.
pub(crate) fn give(obj: Rc<Obj>) -> i64 {
    Rc::into_raw(obj) as i64
}

/// Looks at the object behind a pointer generated code passed in.
///
/// Every non-null `Ptr` value generated code holds came from `Rc::into_raw`
/// of an `Rc<Obj>` that some slot keeps alive for at least the duration of
/// the runtime call (the ownership rule of `ir`). The returned reference must
/// not outlive the runtime function that asked for it.
pub(crate) fn borrow_ptr<'a>(bits: i64) -> Option<&'a Obj> {
    if bits == 0 {
        return None;
    }
    // SAFETY: see above; a non-null pointer is a live `Obj` owned by a slot.
    Some(unsafe { &*(bits as *const Obj) })
}

pub(crate) fn retain(bits: i64) {
    if bits != 0 {
        // SAFETY: a non-null pointer from generated code is a live `Rc<Obj>`
        // (see `borrow_ptr`); adding a reference keeps it so.
        unsafe { Rc::increment_strong_count(bits as *const Obj) }
    }
}

pub(crate) fn release(bits: i64) {
    if bits != 0 {
        // SAFETY: the caller owned one reference to this live `Rc<Obj>` (a
        // slot's value), which is given up here exactly once.
        unsafe { Rc::decrement_strong_count(bits as *const Obj) }
    }
}

/// Everything an execution reads from its compiled script.
pub(crate) struct ScriptTables {
    pub(crate) strings: Vec<String>,
    pub(crate) types: Vec<scl_lang::types::Type>,
    pub(crate) host_functions: Arc<[HostFunction]>,
    pub(crate) source: Arc<str>,
}

/// The per-execution context. Generated code receives a `*mut ExecCtx` as
/// its first argument and reads and writes the `#[repr(C)]` head directly (at
/// the offsets [`CtxOffsets`] gives); everything else is for the runtime.
#[repr(C)]
pub struct ExecCtx<'s> {
    /// 0 = running, 1 = a catchable error is pending, 2 = a limit error
    /// (timeout, fuel, heap, depth) is pending: no `catch` may take it.
    pub(crate) status: u64,
    /// The run's step budget ([`Budget`](crate::exec::Budget)): generated
    /// code decrements the fuel (optimized code keeps it in a register) at every
    /// function entry and loop head and calls the runtime when it goes below
    /// the budget's floor (fuel used up, or the deadline passed and the
    /// ticker raised the floor).
    pub(crate) budget: *const crate::exec::Budget,
    /// The lowest stack address calls may reach (the stack budget).
    pub(crate) stack_limit: u64,
    /// The call depth a run starts with: the entry trampoline passes it as
    /// the hidden `depth_left` argument; each call passes one less.
    pub(crate) max_depth: u64,
    /// Nested calls of the reference evaluator (generated code keeps its
    /// depth in the hidden argument instead).
    pub(crate) depth: u64,
    pub(crate) inner: CtxInner<'s>,
}

pub(crate) struct CtxInner<'s> {
    pub(crate) tables: &'s ScriptTables,
    pub(crate) host_data: Option<&'s (dyn Any + Sync)>,
    pub(crate) error: Option<ScriptError>,
    pub(crate) deadline: Option<Instant>,
    pub(crate) timeout_ms: u64,
    pub(crate) fuel_limit: Option<u64>,
    pub(crate) heap_limit: Option<i64>,
    pub(crate) counters: Vec<(String, u64)>,
    pub(crate) caps: Vec<(String, u64)>,
    pub(crate) logs: Vec<LogLine>,
    /// Bytes of the messages in `logs`.
    pub(crate) log_bytes: usize,
    /// Lines refused because `logs` was full (see [`crate::exec::MAX_LOG_LINES`]).
    pub(crate) logs_dropped: u64,
    pub(crate) dry_run: bool,
}

/// Byte offsets of the [`ExecCtx`] fields generated code touches.
#[derive(Clone, Copy, Debug)]
pub(crate) struct CtxOffsets {
    pub(crate) status: i32,
    pub(crate) budget: i32,
    pub(crate) max_depth: i32,
    pub(crate) stack_limit: i32,
}

pub(crate) const CTX_OFFSETS: CtxOffsets = CtxOffsets {
    status: std::mem::offset_of!(ExecCtx<'static>, status) as i32,
    budget: std::mem::offset_of!(ExecCtx<'static>, budget) as i32,
    max_depth: std::mem::offset_of!(ExecCtx<'static>, max_depth) as i32,
    stack_limit: std::mem::offset_of!(ExecCtx<'static>, stack_limit) as i32,
};

/// An address on the current stack (to measure how deep calls went).
#[inline(never)]
pub(crate) fn stack_address() -> u64 {
    let marker = 0u8;
    std::hint::black_box(&marker) as *const u8 as u64
}

pub(crate) const STATUS_OK: u64 = 0;
pub(crate) const STATUS_ERROR: u64 = 1;
pub(crate) const STATUS_LIMIT: u64 = 2;

/// Runs `f` on the context behind the pointer generated code passed.
pub(crate) fn with_ctx<R>(ctx: *mut ExecCtx<'_>, f: impl FnOnce(&mut ExecCtx<'_>) -> R) -> R {
    // SAFETY: generated code only ever passes the pointer `exec::run` made
    // from a `&mut ExecCtx` that outlives the whole call, and no Rust
    // reference to it is alive while generated code runs.
    let ctx = unsafe { &mut *ctx };
    f(ctx)
}

impl ExecCtx<'_> {
    /// The run's step budget.
    pub(crate) fn budget(&self) -> &crate::exec::Budget {
        // SAFETY: `engine::Script::call_index` points `budget` at a `Budget`
        // (a local or an `Arc` it holds) that outlives the whole execution,
        // and the context never outlives that call.
        unsafe { &*self.budget }
    }

    /// Sets a catchable error (unless one is already pending).
    pub(crate) fn raise(&mut self, kind: &str, code: &str, message: impl Into<String>) {
        if self.status != STATUS_OK {
            return;
        }
        self.inner.error = Some(ScriptError::new(kind, code, message));
        self.status = STATUS_ERROR;
    }

    pub(crate) fn raise_error(&mut self, error: ScriptError) {
        if self.status != STATUS_OK {
            return;
        }
        self.inner.error = Some(error);
        self.status = STATUS_ERROR;
    }

    /// Sets a limit error: the execution ends with `status` and no `catch` sees it.
    pub(crate) fn raise_limit(&mut self, status: crate::exec::Status, code: &str, message: String) {
        if self.status == STATUS_LIMIT {
            return;
        }
        let kind = if status == crate::exec::Status::Timeout {
            "timeout"
        } else {
            "limit"
        };
        let mut error = ScriptError::new(kind, code, message);
        error.limit = Some(status);
        self.inner.error = Some(error);
        self.status = STATUS_LIMIT;
    }

    pub(crate) fn script_error(&mut self, code: &str, message: impl Into<String>) {
        self.raise("script", code, message);
    }

    /// Ends the run with `LIMIT` when the heap grew past its limit.
    pub(crate) fn heap_exceeded(&mut self) -> bool {
        let Some(limit) = self.inner.heap_limit else {
            return false;
        };
        let live = heap_counters().live_bytes;
        if live > limit {
            self.raise_limit(
                crate::exec::Status::Limit,
                "heap",
                format!("the script used more than {limit} bytes of heap"),
            );
            true
        } else {
            false
        }
    }

    /// Ends the run with `LIMIT` when allocating `extra` more bytes would
    /// take the heap past its limit: called *before* an operation whose
    /// result size is known up front and may dwarf its inputs
    /// (`replace`, `join`, `split`), so that one call cannot ask the
    /// allocator for far more memory than the limit (and abort the process).
    pub(crate) fn heap_would_exceed(&mut self, extra: usize) -> bool {
        let Some(limit) = self.inner.heap_limit else {
            return false;
        };
        let live = heap_counters().live_bytes;
        let extra = i64::try_from(extra).unwrap_or(i64::MAX);
        if live.saturating_add(extra) > limit {
            self.raise_limit(
                crate::exec::Status::Limit,
                "heap",
                format!("the script used more than {limit} bytes of heap"),
            );
            true
        } else {
            false
        }
    }

    /// Hands a new object to generated code, unless the heap limit is now
    /// exceeded (then the object is dropped and 0 returned with the error set).
    pub(crate) fn give(&mut self, obj: Rc<Obj>) -> i64 {
        if self.heap_exceeded() {
            return 0;
        }
        give(obj)
    }

    pub(crate) fn give_val(&mut self, val: Val) -> i64 {
        if matches!(val, Val::Obj(_)) && self.heap_exceeded() {
            return 0;
        }
        val.into_bits()
    }
}

/// A runtime function pointer, by arity.
#[derive(Clone, Copy)]
pub(crate) enum RtPtr {
    A0(for<'a> extern "C" fn(*mut ExecCtx<'a>) -> i64),
    A1(for<'a> extern "C" fn(*mut ExecCtx<'a>, i64) -> i64),
    A2(for<'a> extern "C" fn(*mut ExecCtx<'a>, i64, i64) -> i64),
    A3(for<'a> extern "C" fn(*mut ExecCtx<'a>, i64, i64, i64) -> i64),
    A4(for<'a> extern "C" fn(*mut ExecCtx<'a>, i64, i64, i64, i64) -> i64),
}

impl RtPtr {
    pub(crate) fn arity(self) -> usize {
        match self {
            RtPtr::A0(_) => 0,
            RtPtr::A1(_) => 1,
            RtPtr::A2(_) => 2,
            RtPtr::A3(_) => 3,
            RtPtr::A4(_) => 4,
        }
    }

    pub(crate) fn address(self) -> *const u8 {
        match self {
            RtPtr::A0(f) => f as *const u8,
            RtPtr::A1(f) => f as *const u8,
            RtPtr::A2(f) => f as *const u8,
            RtPtr::A3(f) => f as *const u8,
            RtPtr::A4(f) => f as *const u8,
        }
    }

    /// Calls the function with `args` (the evaluator's way in).
    pub(crate) fn call(self, ctx: *mut ExecCtx<'_>, args: &[i64]) -> i64 {
        let a = |i: usize| args.get(i).copied().unwrap_or(0);
        match self {
            RtPtr::A0(f) => f(ctx),
            RtPtr::A1(f) => f(ctx, a(0)),
            RtPtr::A2(f) => f(ctx, a(0), a(1)),
            RtPtr::A3(f) => f(ctx, a(0), a(1), a(2)),
            RtPtr::A4(f) => f(ctx, a(0), a(1), a(2), a(3)),
        }
    }
}

macro_rules! runtime_functions {
    ($($variant:ident = $arity:ident($func:path), $fallible:literal;)*) => {
        /// The runtime functions generated code may call.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum RtFn {
            $($variant,)*
        }

        impl RtFn {
            pub const ALL: &[RtFn] = &[$(RtFn::$variant,)*];

            pub(crate) fn pointer(self) -> RtPtr {
                match self {
                    $(RtFn::$variant => RtPtr::$arity($func),)*
                }
            }

            /// Whether the function can fail (then generated code checks the status after it).
            pub fn can_fail(self) -> bool {
                match self {
                    $(RtFn::$variant => $fallible,)*
                }
            }
        }
    };
}

runtime_functions! {
    // Memory.
    Retain = A1(ops::rt_retain), false;
    Release = A1(ops::rt_release), false;
    ReleaseSlots = A2(ops::rt_release_slots), false;
    // Limits and errors.
    EnterSlow = A1(ops::rt_enter_slow), true;
    PollSlow = A0(ops::rt_poll_slow), true;
    RaiseOverflow = A0(ops::rt_raise_overflow), true;
    RaiseDivisionByZero = A0(ops::rt_raise_division_by_zero), true;
    RaiseUnreachable = A0(ops::rt_raise_unreachable), true;
    Locate = A2(ops::rt_locate), false;
    TakeError = A1(ops::rt_take_error), false;
    Throw = A2(ops::rt_throw), true;
    MakeError = A3(ops::rt_make_error), true;
    // Scalars.
    FloatRem = A2(ops::rt_float_rem), false;
    FloatToInt = A1(ops::rt_float_to_int), true;
    StrToInt = A1(ops::rt_str_to_int), true;
    StrToFloat = A1(ops::rt_str_to_float), true;
    Box = A2(ops::rt_box), true;
    Unbox = A2(ops::rt_unbox), true;
    ToString = A2(ops::rt_to_string), true;
    ToJson = A2(ops::rt_to_json), true;
    As = A3(ops::rt_as), true;
    Equal = A3(ops::rt_equal), false;
    Compare = A2(ops::rt_compare), false;
    // Strings.
    StrLit = A1(ops::rt_str_lit), true;
    Concat = A2(ops::rt_concat), true;
    StrLen = A1(ops::rt_str_len), false;
    StrUpper = A1(ops::rt_str_upper), true;
    StrLower = A1(ops::rt_str_lower), true;
    StrTrim = A1(ops::rt_str_trim), true;
    StrContains = A2(ops::rt_str_contains), false;
    StrStartsWith = A2(ops::rt_str_starts_with), false;
    StrEndsWith = A2(ops::rt_str_ends_with), false;
    StrSplit = A2(ops::rt_str_split), true;
    StrReplace = A3(ops::rt_str_replace), true;
    StrSubstring = A4(ops::rt_str_substring), true;
    StrIndexOf = A2(ops::rt_str_index_of), false;
    // Lists.
    ListNew = A3(ops::rt_list_new), true;
    ListLen = A1(ops::rt_list_len), false;
    ListGet = A3(ops::rt_list_get), true;
    ListSet = A4(ops::rt_list_set), true;
    ListPush = A3(ops::rt_list_push), true;
    ListPop = A3(ops::rt_list_pop), true;
    ListContains = A3(ops::rt_list_contains), false;
    ListSort = A1(ops::rt_list_sort), true;
    ListReverse = A1(ops::rt_list_reverse), true;
    ListJoin = A3(ops::rt_list_join), true;
    ListSlice = A4(ops::rt_list_slice), true;
    // Maps.
    MapNew = A0(ops::rt_map_new), true;
    MapInsert = A4(ops::rt_map_insert), true;
    MapGet = A3(ops::rt_map_get), true;
    MapGetOptional = A3(ops::rt_map_get_optional), true;
    MapLen = A1(ops::rt_map_len), false;
    MapKeys = A1(ops::rt_map_keys), true;
    MapValues = A1(ops::rt_map_values), true;
    MapContainsKey = A2(ops::rt_map_contains_key), false;
    MapRemove = A3(ops::rt_map_remove), true;
    MapKeyAt = A2(ops::rt_map_key_at), true;
    // Records and json.
    RecordNew = A3(ops::rt_record_new), true;
    RecordGet = A3(ops::rt_record_get), false;
    JsonNull = A0(ops::rt_json_null), true;
    JsonIsNull = A1(ops::rt_json_is_null), false;
    JsonIndex = A3(ops::rt_json_index), true;
    // The host door.
    HostCall = A3(ops::rt_host_call), true;
}

impl RtFn {
    /// Functions the quick tier may call one after another with a single
    /// status check after the last one: each only allocates its result
    /// (never null on success), has no other effect, and returns 0 at once
    /// when the status is already set (see `ops::failed_before`).
    pub(crate) fn checked_in_runs(self) -> bool {
        matches!(
            self,
            RtFn::StrLit
                | RtFn::ToString
                | RtFn::Concat
                | RtFn::ListNew
                | RtFn::MapNew
                | RtFn::MapKeys
                | RtFn::MapValues
                | RtFn::RecordNew
        )
    }

    /// Functions that may end such a run (the status is checked right
    /// after them): they change a list or map, so they must not run after
    /// a failed call (they return 0 at once then, like the others), and they
    /// may return 0 on success, so a run has at most one of them, last
    /// (when the run failed and no earlier call returned 0, it was this one).
    pub(crate) fn ends_runs(self) -> bool {
        matches!(self, RtFn::ListPush | RtFn::MapInsert)
    }

    /// The function's name in printed IR (`rt.name`).
    pub fn name(self) -> String {
        let debug = format!("{self:?}");
        let mut out = String::with_capacity(debug.len() + 4);
        for (i, c) in debug.chars().enumerate() {
            if c.is_ascii_uppercase() {
                if i > 0 {
                    out.push('_');
                }
                out.push(c.to_ascii_lowercase());
            } else {
                out.push(c);
            }
        }
        out
    }
}
