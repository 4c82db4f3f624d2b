//! The `extern "C"` runtime functions generated code calls (see [`RtFn`](super::RtFn)).
//!
//! Conventions, for every function here: the first argument is the
//! execution context; heap arguments are borrowed pointers; a heap result is
//! a new reference; on failure the error is set in the context and the
//! result is 0. No function panics on anything a script can do: a `RefCell`
//! already borrowed, an index out of range or a bad argument becomes an error.

use std::cmp::Ordering;
use std::fmt::Write as _;
use std::sync::atomic::Ordering as AtomicOrdering;
use std::time::Instant;

use indexmap::IndexMap;
use scl_lang::types::Type;

use super::convert::{
    Trail, as_convert, box_val, format_val, repr_of, val_cmp, val_eq, val_to_json, val_to_value,
    value_to_val,
};
use super::{
    Body, ExecCtx, OBJECT_OVERHEAD, Obj, STATUS_OK, VAL_SIZE, Val, borrow_ptr, map_entry_size,
    release, retain, with_ctx,
};
use crate::exec::{ScriptError, Status};
use crate::ir::Repr;
use crate::value::Value;

type Ctx<'a> = *mut ExecCtx<'a>;

/// Whether the run's status is already set. The quick tier checks the
/// status once after a run of the allocating functions that call this
/// first ([`RtFn::checked_in_runs`](crate::runtime::RtFn::checked_in_runs),
/// [`RtFn::ends_runs`](crate::runtime::RtFn::ends_runs)),
/// so after one of them failed the rest of the run must do nothing and
/// return 0 (which is also how the generated code finds the one that failed).
fn failed_before(ctx: Ctx<'_>) -> bool {
    with_ctx(ctx, |ctx| ctx.status != STATUS_OK)
}

fn str_of<'a>(bits: i64) -> &'a str {
    borrow_ptr(bits).and_then(|o| o.as_str()).unwrap_or("")
}

/// Reads `n` values generated code stored in a row at `argv`.
fn argv<'a>(pointer: i64, n: i64) -> &'a [i64] {
    if pointer == 0 || n <= 0 {
        return &[];
    }
    // SAFETY: generated code (and the evaluator) pass the address of a row
    // of exactly `n` initialised `i64`s that lives until the call returns.
    unsafe { std::slice::from_raw_parts(pointer as *const i64, n as usize) }
}

fn type_at<'s>(ctx: &ExecCtx<'s>, index: i64) -> &'s Type {
    const VOID: &Type = &Type::Void;
    ctx.inner.tables.types.get(index as usize).unwrap_or(VOID)
}

// ---------------------------------------------------------------- memory

pub(crate) extern "C" fn rt_retain(_ctx: Ctx<'_>, pointer: i64) -> i64 {
    retain(pointer);
    0
}

pub(crate) extern "C" fn rt_release(_ctx: Ctx<'_>, pointer: i64) -> i64 {
    release(pointer);
    0
}

pub(crate) extern "C" fn rt_release_slots(_ctx: Ctx<'_>, base: i64, n: i64) -> i64 {
    for &pointer in argv(base, n) {
        release(pointer);
    }
    0
}

// ---------------------------------------------------------------- limits and errors

/// Called when the inline check at a function entry tripped: `depth_left`
/// is the entering function's hidden depth argument (0: one call too deep),
/// or the stack reached its budget, or the budget went below zero.
pub(crate) extern "C" fn rt_enter_slow(ctx: Ctx<'_>, depth_left: i64) -> i64 {
    with_ctx(ctx, |ctx| {
        if depth_left <= 0 || super::stack_address() < ctx.stack_limit {
            let max = ctx.max_depth;
            ctx.raise_limit(
                Status::Limit,
                "call_depth",
                format!(
                    "calls nested too deeply (the limits are {max} calls and the stack budget)"
                ),
            );
            return 0;
        }
        poll(ctx);
        0
    })
}

pub(crate) extern "C" fn rt_poll_slow(ctx: Ctx<'_>) -> i64 {
    with_ctx(ctx, |ctx| {
        poll(ctx);
        0
    })
}

/// The budget check tripped (or a depth check called): the deadline passed,
/// the fuel is used up, or (without a fuel limit) it needs a refill.
fn poll(ctx: &mut ExecCtx<'_>) {
    let budget = ctx.budget();
    if budget.interrupted()
        && let Some(deadline) = ctx.inner.deadline
        && Instant::now() >= deadline
    {
        let ms = ctx.inner.timeout_ms;
        ctx.raise_limit(
            Status::Timeout,
            "timeout",
            format!("the script ran longer than {ms} ms"),
        );
        return;
    }
    if budget.fuel.load(AtomicOrdering::Relaxed) >= 0 {
        return;
    }
    match ctx.inner.fuel_limit {
        Some(limit) => ctx.raise_limit(
            Status::Limit,
            "fuel",
            format!("the script used up its fuel ({limit} steps)"),
        ),
        None => budget.fuel.store(i64::MAX, AtomicOrdering::Relaxed),
    }
}

pub(crate) extern "C" fn rt_raise_overflow(ctx: Ctx<'_>) -> i64 {
    with_ctx(ctx, |ctx| ctx.script_error("overflow", "integer overflow"));
    0
}

pub(crate) extern "C" fn rt_raise_division_by_zero(ctx: Ctx<'_>) -> i64 {
    with_ctx(ctx, |ctx| {
        ctx.script_error("division_by_zero", "division by zero")
    });
    0
}

pub(crate) extern "C" fn rt_raise_unreachable(ctx: Ctx<'_>) -> i64 {
    with_ctx(ctx, |ctx| {
        ctx.script_error("internal", "reached code the compiler thought unreachable")
    });
    0
}

/// Records where the pending error happened, unless a deeper frame already did.
pub(crate) extern "C" fn rt_locate(ctx: Ctx<'_>, start: i64, end: i64) -> i64 {
    with_ctx(ctx, |ctx| {
        let source = ctx.inner.tables.source.clone();
        if let Some(error) = &mut ctx.inner.error
            && error.span.is_none()
        {
            error.set_location(scl_lang::Span::new(start as usize, end as usize), &source);
        }
    });
    0
}

fn error_fields(ty: &Type) -> [usize; 4] {
    let mut indices = [0, 1, 2, 3];
    if let Type::Record(record) = ty {
        for (slot, name) in ["kind", "code", "message", "status"].iter().enumerate() {
            if let Some((index, _)) = record.field(name) {
                indices[slot] = index;
            }
        }
    }
    indices
}

fn error_record(error: &ScriptError, ty: &Type) -> Val {
    let [kind, code, message, status] = error_fields(ty);
    let mut fields = vec![Val::Null; 4];
    fields[kind] = Val::Obj(Obj::str(error.kind.clone()));
    fields[code] = Val::Obj(Obj::str(error.code.clone()));
    fields[message] = Val::Obj(Obj::str(error.message.clone()));
    fields[status] = match error.status {
        Some(s) => box_val(Val::Int(s)),
        None => Val::Null,
    };
    Val::Obj(Obj::new(Body::Record(fields)))
}

/// `catch e`: hands the pending error over as an `Error` record and clears it.
pub(crate) extern "C" fn rt_take_error(ctx: Ctx<'_>, error_type: i64) -> i64 {
    with_ctx(ctx, |ctx| {
        let ty = type_at(ctx, error_type);
        let error = ctx
            .inner
            .error
            .take()
            .unwrap_or_else(|| ScriptError::new("script", "internal", "no error"));
        ctx.status = STATUS_OK;
        error_record(&error, ty).into_bits()
    })
}

/// `throw e` with an `Error` record.
pub(crate) extern "C" fn rt_throw(ctx: Ctx<'_>, record: i64, error_type: i64) -> i64 {
    with_ctx(ctx, |ctx| {
        let [kind, code, message, status] = error_fields(type_at(ctx, error_type));
        let Some(Body::Record(fields)) = borrow_ptr(record).map(|o| &o.body) else {
            ctx.script_error("internal", "throw of a value that is not an Error");
            return 0;
        };
        let text = |i: usize| match fields.get(i) {
            Some(Val::Obj(o)) => o.as_str().unwrap_or("").to_string(),
            _ => String::new(),
        };
        let mut error = ScriptError::new(&text(kind), &text(code), text(message));
        error.status = match fields.get(status).and_then(Val::obj).map(|o| &o.body) {
            Some(Body::Int(s)) => Some(*s),
            _ => None,
        };
        ctx.raise_error(error);
        0
    })
}

/// `error(code, message)`: an `Error` of kind `script`.
pub(crate) extern "C" fn rt_make_error(
    ctx: Ctx<'_>,
    code: i64,
    message: i64,
    error_type: i64,
) -> i64 {
    with_ctx(ctx, |ctx| {
        let error = ScriptError::new("script", str_of(code), str_of(message));
        let record = error_record(&error, type_at(ctx, error_type));
        ctx.give_val(record)
    })
}

// ---------------------------------------------------------------- scalars

pub(crate) extern "C" fn rt_float_rem(_ctx: Ctx<'_>, a: i64, b: i64) -> i64 {
    (f64::from_bits(a as u64) % f64::from_bits(b as u64)).to_bits() as i64
}

pub(crate) extern "C" fn rt_float_to_int(ctx: Ctx<'_>, bits: i64) -> i64 {
    let x = f64::from_bits(bits as u64).trunc();
    if x.is_finite() && (-9.223_372_036_854_776e18..9.223_372_036_854_776e18).contains(&x) {
        x as i64
    } else {
        with_ctx(ctx, |ctx| {
            ctx.script_error(
                "invalid_conversion",
                format!("cannot convert {} to int", f64::from_bits(bits as u64)),
            )
        });
        0
    }
}

pub(crate) extern "C" fn rt_str_to_int(ctx: Ctx<'_>, s: i64) -> i64 {
    let text = str_of(s).trim();
    match text.replace('_', "").parse::<i64>() {
        Ok(i) if !text.is_empty() => i,
        _ => {
            with_ctx(ctx, |ctx| {
                ctx.script_error(
                    "invalid_conversion",
                    format!("cannot convert \"{text}\" to int"),
                )
            });
            0
        }
    }
}

pub(crate) extern "C" fn rt_str_to_float(ctx: Ctx<'_>, s: i64) -> i64 {
    let text = str_of(s).trim();
    match text.parse::<f64>() {
        Ok(x)
            if !text.is_empty()
                && !text
                    .chars()
                    .any(|c| c.is_ascii_alphabetic() && c != 'e' && c != 'E') =>
        {
            x.to_bits() as i64
        }
        _ => {
            with_ctx(ctx, |ctx| {
                ctx.script_error(
                    "invalid_conversion",
                    format!("cannot convert \"{text}\" to float"),
                )
            });
            0
        }
    }
}

/// `T` to `T?` for a primitive `T`.
pub(crate) extern "C" fn rt_box(ctx: Ctx<'_>, bits: i64, repr: i64) -> i64 {
    let repr = Repr::from_code(repr);
    let val = Val::from_bits(bits, repr);
    with_ctx(ctx, |ctx| ctx.give_val(box_val(val)))
}

/// The primitive inside a non-null `T?`.
pub(crate) extern "C" fn rt_unbox(ctx: Ctx<'_>, pointer: i64, repr: i64) -> i64 {
    match borrow_ptr(pointer).map(|o| &o.body) {
        Some(Body::Int(i)) => *i,
        Some(Body::Float(x)) => x.to_bits() as i64,
        Some(Body::Bool(b)) => *b as i64,
        Some(_) if Repr::from_code(repr) == Repr::Ptr => {
            retain(pointer);
            pointer
        }
        _ => {
            with_ctx(ctx, |ctx| {
                ctx.script_error("null_value", "the value is null")
            });
            0
        }
    }
}

pub(crate) extern "C" fn rt_to_string(ctx: Ctx<'_>, bits: i64, ty: i64) -> i64 {
    if failed_before(ctx) {
        return 0;
    }
    with_ctx(ctx, |ctx| {
        let ty = type_at(ctx, ty);
        let val = Val::from_bits(bits, repr_of(ty));
        let text = format_val(&val, ty);
        ctx.give(Obj::str(text))
    })
}

pub(crate) extern "C" fn rt_to_json(ctx: Ctx<'_>, bits: i64, ty: i64) -> i64 {
    with_ctx(ctx, |ctx| {
        let ty = type_at(ctx, ty);
        let val = Val::from_bits(bits, repr_of(ty));
        let json = val_to_json(&val, ty);
        ctx.give(Obj::json(json))
    })
}

pub(crate) extern "C" fn rt_as(ctx: Ctx<'_>, bits: i64, from: i64, to: i64) -> i64 {
    with_ctx(ctx, |ctx| {
        let (from, to) = (type_at(ctx, from), type_at(ctx, to));
        let val = Val::from_bits(bits, repr_of(from));
        // The position of a failure is only named (by converting again) when
        // one happens.
        match as_convert(&val, from, to, &mut Trail::off()) {
            Ok(converted) => ctx.give_val(converted),
            Err(_) => {
                let message = as_convert(&val, from, to, &mut Trail::at("$"))
                    .err()
                    .unwrap_or_else(|| "$: cannot be converted".to_owned());
                ctx.raise("type", "invalid_conversion", message);
                0
            }
        }
    })
}

pub(crate) extern "C" fn rt_equal(_ctx: Ctx<'_>, a: i64, b: i64, repr: i64) -> i64 {
    let repr = Repr::from_code(repr);
    val_eq(&Val::from_bits(a, repr), &Val::from_bits(b, repr)) as i64
}

/// Compares two strings: -1, 0 or 1.
pub(crate) extern "C" fn rt_compare(_ctx: Ctx<'_>, a: i64, b: i64) -> i64 {
    match str_of(a).cmp(str_of(b)) {
        Ordering::Less => -1,
        Ordering::Equal => 0,
        Ordering::Greater => 1,
    }
}

// ---------------------------------------------------------------- strings

pub(crate) extern "C" fn rt_str_lit(ctx: Ctx<'_>, index: i64) -> i64 {
    if failed_before(ctx) {
        return 0;
    }
    with_ctx(ctx, |ctx| {
        let text = ctx
            .inner
            .tables
            .strings
            .get(index as usize)
            .cloned()
            .unwrap_or_default();
        ctx.give(Obj::str(text))
    })
}

pub(crate) extern "C" fn rt_concat(ctx: Ctx<'_>, parts: i64, n: i64) -> i64 {
    if failed_before(ctx) {
        return 0;
    }
    let parts = argv(parts, n);
    let mut out = String::with_capacity(parts.iter().map(|&p| str_of(p).len()).sum());
    for &p in parts {
        out.push_str(str_of(p));
    }
    with_ctx(ctx, |ctx| ctx.give(Obj::str(out)))
}

pub(crate) extern "C" fn rt_str_len(_ctx: Ctx<'_>, s: i64) -> i64 {
    str_of(s).chars().count() as i64
}

pub(crate) extern "C" fn rt_str_upper(ctx: Ctx<'_>, s: i64) -> i64 {
    with_ctx(ctx, |ctx| ctx.give(Obj::str(str_of(s).to_uppercase())))
}

pub(crate) extern "C" fn rt_str_lower(ctx: Ctx<'_>, s: i64) -> i64 {
    with_ctx(ctx, |ctx| ctx.give(Obj::str(str_of(s).to_lowercase())))
}

pub(crate) extern "C" fn rt_str_trim(ctx: Ctx<'_>, s: i64) -> i64 {
    with_ctx(ctx, |ctx| ctx.give(Obj::str(str_of(s).trim().to_string())))
}

pub(crate) extern "C" fn rt_str_contains(_ctx: Ctx<'_>, s: i64, t: i64) -> i64 {
    str_of(s).contains(str_of(t)) as i64
}

pub(crate) extern "C" fn rt_str_starts_with(_ctx: Ctx<'_>, s: i64, t: i64) -> i64 {
    str_of(s).starts_with(str_of(t)) as i64
}

pub(crate) extern "C" fn rt_str_ends_with(_ctx: Ctx<'_>, s: i64, t: i64) -> i64 {
    str_of(s).ends_with(str_of(t)) as i64
}

pub(crate) extern "C" fn rt_str_split(ctx: Ctx<'_>, s: i64, separator: i64) -> i64 {
    let (text, separator) = (str_of(s), str_of(separator));
    // Splitting into characters makes one object per character: check the
    // limit before making them.
    if separator.is_empty() {
        let pieces = text.chars().count();
        let size = pieces.saturating_mul(OBJECT_OVERHEAD + VAL_SIZE + 4);
        if with_ctx(ctx, |ctx| i64::from(ctx.heap_would_exceed(size))) != 0 {
            return 0;
        }
    }
    let parts: Vec<Val> = if separator.is_empty() {
        text.chars()
            .map(|c| Val::Obj(Obj::str(c.to_string())))
            .collect()
    } else {
        text.split(separator)
            .map(|p| Val::Obj(Obj::str(p.to_string())))
            .collect()
    };
    with_ctx(ctx, |ctx| ctx.give(Obj::list(parts)))
}

pub(crate) extern "C" fn rt_str_replace(ctx: Ctx<'_>, s: i64, from: i64, to: i64) -> i64 {
    let (text, from, to) = (str_of(s), str_of(from), str_of(to));
    if !from.is_empty() && to.len() > from.len() {
        // The result's size is known before it is made: a replacement that
        // multiplies the text is stopped by the heap limit, not the allocator.
        let matches = text.matches(from).count();
        let size = text
            .len()
            .saturating_add(matches.saturating_mul(to.len() - from.len()));
        if with_ctx(ctx, |ctx| i64::from(ctx.heap_would_exceed(size))) != 0 {
            return 0;
        }
    }
    let out = if from.is_empty() {
        text.to_string()
    } else {
        text.replace(from, to)
    };
    with_ctx(ctx, |ctx| ctx.give(Obj::str(out)))
}

/// Checks `start..end` against a length; the error names the bounds.
fn check_range(
    ctx: &mut ExecCtx<'_>,
    start: i64,
    end: Option<i64>,
    len: usize,
) -> Option<(usize, usize)> {
    let end = end.unwrap_or(len as i64);
    if start < 0 || end < start || end > len as i64 {
        ctx.script_error(
            "index_out_of_range",
            format!("range {start}..{end} is out of bounds for length {len}"),
        );
        return None;
    }
    Some((start as usize, end as usize))
}

/// `s.substring(start)` or `s.substring(start, end)`, in characters.
pub(crate) extern "C" fn rt_str_substring(
    ctx: Ctx<'_>,
    s: i64,
    start: i64,
    end: i64,
    has_end: i64,
) -> i64 {
    let text = str_of(s);
    let chars = text.chars().count();
    with_ctx(ctx, |ctx| {
        let Some((start, end)) = check_range(ctx, start, (has_end != 0).then_some(end), chars)
        else {
            return 0;
        };
        let out: String = text.chars().skip(start).take(end - start).collect();
        ctx.give(Obj::str(out))
    })
}

/// The character index of the first occurrence, or -1.
pub(crate) extern "C" fn rt_str_index_of(_ctx: Ctx<'_>, s: i64, t: i64) -> i64 {
    let text = str_of(s);
    match text.find(str_of(t)) {
        Some(byte) => text[..byte].chars().count() as i64,
        None => -1,
    }
}

// ---------------------------------------------------------------- lists

fn list_of<'a>(ctx: &mut ExecCtx<'_>, bits: i64) -> Option<&'a std::cell::RefCell<Vec<Val>>> {
    match borrow_ptr(bits).map(|o| &o.body) {
        Some(Body::List(items)) => Some(items),
        _ => {
            ctx.script_error("internal", "not a list");
            None
        }
    }
}

fn busy(ctx: &mut ExecCtx<'_>) -> i64 {
    ctx.script_error(
        "internal",
        "a list or map was changed while it was being read",
    );
    0
}

pub(crate) extern "C" fn rt_list_new(ctx: Ctx<'_>, items: i64, n: i64, repr: i64) -> i64 {
    if failed_before(ctx) {
        return 0;
    }
    let repr = Repr::from_code(repr);
    let items: Vec<Val> = argv(items, n)
        .iter()
        .map(|&bits| Val::from_bits(bits, repr))
        .collect();
    with_ctx(ctx, |ctx| ctx.give(Obj::list(items)))
}

pub(crate) extern "C" fn rt_list_len(_ctx: Ctx<'_>, list: i64) -> i64 {
    match borrow_ptr(list).map(|o| &o.body) {
        Some(Body::List(items)) => items.try_borrow().map_or(0, |v| v.len() as i64),
        _ => 0,
    }
}

fn index_error(ctx: &mut ExecCtx<'_>, index: i64, len: usize) -> i64 {
    ctx.script_error(
        "index_out_of_range",
        format!("index {index} is out of range for length {len}"),
    );
    0
}

pub(crate) extern "C" fn rt_list_get(ctx: Ctx<'_>, list: i64, index: i64, _repr: i64) -> i64 {
    with_ctx(ctx, |ctx| {
        let Some(items) = list_of(ctx, list) else {
            return 0;
        };
        let Ok(items) = items.try_borrow() else {
            return busy(ctx);
        };
        match usize::try_from(index).ok().and_then(|i| items.get(i)) {
            Some(val) => val.clone().into_bits(),
            None => index_error(ctx, index, items.len()),
        }
    })
}

pub(crate) extern "C" fn rt_list_set(
    ctx: Ctx<'_>,
    list: i64,
    index: i64,
    bits: i64,
    repr: i64,
) -> i64 {
    with_ctx(ctx, |ctx| {
        let Some(items) = list_of(ctx, list) else {
            return 0;
        };
        let Ok(mut items) = items.try_borrow_mut() else {
            return busy(ctx);
        };
        let len = items.len();
        match usize::try_from(index).ok().and_then(|i| items.get_mut(i)) {
            Some(slot) => {
                let old = std::mem::replace(slot, Val::from_bits(bits, Repr::from_code(repr)));
                drop(items);
                drop(old);
                0
            }
            None => index_error(ctx, index, len),
        }
    })
}

pub(crate) extern "C" fn rt_list_push(ctx: Ctx<'_>, list: i64, bits: i64, repr: i64) -> i64 {
    if failed_before(ctx) {
        return 0;
    }
    with_ctx(ctx, |ctx| {
        let Some(items) = list_of(ctx, list) else {
            return 0;
        };
        let Ok(mut items) = items.try_borrow_mut() else {
            return busy(ctx);
        };
        items.push(Val::from_bits(bits, Repr::from_code(repr)));
        drop(items);
        if let Some(obj) = borrow_ptr(list) {
            obj.remeasure();
        }
        ctx.heap_exceeded();
        0
    })
}

/// `xs.pop()`: the last element; when `optional` is set the result is a
/// `T?` (null for an empty list), otherwise an empty list is an error.
pub(crate) extern "C" fn rt_list_pop(ctx: Ctx<'_>, list: i64, _repr: i64, optional: i64) -> i64 {
    with_ctx(ctx, |ctx| {
        let Some(items) = list_of(ctx, list) else {
            return 0;
        };
        let Ok(mut items) = items.try_borrow_mut() else {
            return busy(ctx);
        };
        let popped = items.pop();
        drop(items);
        match popped {
            Some(val) if optional != 0 => ctx.give_val(box_val(val)),
            Some(val) => val.into_bits(),
            None if optional != 0 => 0,
            None => {
                ctx.script_error("index_out_of_range", "pop from an empty list");
                0
            }
        }
    })
}

pub(crate) extern "C" fn rt_list_contains(_ctx: Ctx<'_>, list: i64, bits: i64, repr: i64) -> i64 {
    let needle = Val::from_bits(bits, Repr::from_code(repr));
    match borrow_ptr(list).map(|o| &o.body) {
        Some(Body::List(items)) => items
            .try_borrow()
            .is_ok_and(|v| v.iter().any(|x| val_eq(x, &needle)))
            as i64,
        _ => 0,
    }
}

pub(crate) extern "C" fn rt_list_sort(ctx: Ctx<'_>, list: i64) -> i64 {
    with_ctx(ctx, |ctx| {
        let Some(items) = list_of(ctx, list) else {
            return 0;
        };
        let Ok(mut items) = items.try_borrow_mut() else {
            return busy(ctx);
        };
        items.sort_by(val_cmp);
        0
    })
}

pub(crate) extern "C" fn rt_list_reverse(ctx: Ctx<'_>, list: i64) -> i64 {
    with_ctx(ctx, |ctx| {
        let Some(items) = list_of(ctx, list) else {
            return 0;
        };
        let Ok(mut items) = items.try_borrow_mut() else {
            return busy(ctx);
        };
        items.reverse();
        0
    })
}

pub(crate) extern "C" fn rt_list_join(
    ctx: Ctx<'_>,
    list: i64,
    separator: i64,
    element_type: i64,
) -> i64 {
    with_ctx(ctx, |ctx| {
        let ty = type_at(ctx, element_type);
        let Some(items) = list_of(ctx, list) else {
            return 0;
        };
        let Ok(items) = items.try_borrow() else {
            return busy(ctx);
        };
        let separators = items
            .len()
            .saturating_sub(1)
            .saturating_mul(str_of(separator).len());
        if ctx.heap_would_exceed(separators) {
            return 0;
        }
        let mut out = String::new();
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                out.push_str(str_of(separator));
            }
            let _ = write!(out, "{}", format_val(item, ty));
        }
        drop(items);
        ctx.give(Obj::str(out))
    })
}

pub(crate) extern "C" fn rt_list_slice(
    ctx: Ctx<'_>,
    list: i64,
    start: i64,
    end: i64,
    has_end: i64,
) -> i64 {
    with_ctx(ctx, |ctx| {
        let Some(items) = list_of(ctx, list) else {
            return 0;
        };
        let Ok(items) = items.try_borrow() else {
            return busy(ctx);
        };
        let len = items.len();
        let copied = items.clone();
        drop(items);
        let Some((start, end)) = check_range(ctx, start, (has_end != 0).then_some(end), len) else {
            return 0;
        };
        ctx.give(Obj::list(copied[start..end].to_vec()))
    })
}

// ---------------------------------------------------------------- maps

fn map_of<'a>(
    ctx: &mut ExecCtx<'_>,
    bits: i64,
) -> Option<&'a std::cell::RefCell<IndexMap<String, Val>>> {
    match borrow_ptr(bits).map(|o| &o.body) {
        Some(Body::Map(entries)) => Some(entries),
        _ => {
            ctx.script_error("internal", "not a map");
            None
        }
    }
}

pub(crate) extern "C" fn rt_map_new(ctx: Ctx<'_>) -> i64 {
    if failed_before(ctx) {
        return 0;
    }
    with_ctx(ctx, |ctx| ctx.give(Obj::map(IndexMap::new())))
}

pub(crate) extern "C" fn rt_map_insert(
    ctx: Ctx<'_>,
    map: i64,
    key: i64,
    bits: i64,
    repr: i64,
) -> i64 {
    if failed_before(ctx) {
        return 0;
    }
    with_ctx(ctx, |ctx| {
        let Some(entries) = map_of(ctx, map) else {
            return 0;
        };
        let Ok(mut entries) = entries.try_borrow_mut() else {
            return busy(ctx);
        };
        let old = entries.insert(
            str_of(key).to_string(),
            Val::from_bits(bits, Repr::from_code(repr)),
        );
        drop(entries);
        if old.is_none()
            && let Some(obj) = borrow_ptr(map)
        {
            obj.adjust(map_entry_size(str_of(key)) as i64);
        }
        drop(old);
        ctx.heap_exceeded();
        0
    })
}

pub(crate) extern "C" fn rt_map_get(ctx: Ctx<'_>, map: i64, key: i64, _repr: i64) -> i64 {
    with_ctx(ctx, |ctx| {
        let Some(entries) = map_of(ctx, map) else {
            return 0;
        };
        let Ok(entries) = entries.try_borrow() else {
            return busy(ctx);
        };
        match entries.get(str_of(key)) {
            Some(val) => val.clone().into_bits(),
            None => {
                drop(entries);
                ctx.script_error(
                    "missing_key",
                    format!("the map has no key \"{}\"", str_of(key)),
                );
                0
            }
        }
    })
}

/// `m.get(k)`: a `T?`.
pub(crate) extern "C" fn rt_map_get_optional(ctx: Ctx<'_>, map: i64, key: i64, _repr: i64) -> i64 {
    with_ctx(ctx, |ctx| {
        let Some(entries) = map_of(ctx, map) else {
            return 0;
        };
        let Ok(entries) = entries.try_borrow() else {
            return busy(ctx);
        };
        let found = entries.get(str_of(key)).cloned();
        drop(entries);
        match found {
            Some(val) => ctx.give_val(box_val(val)),
            None => 0,
        }
    })
}

pub(crate) extern "C" fn rt_map_len(_ctx: Ctx<'_>, map: i64) -> i64 {
    match borrow_ptr(map).map(|o| &o.body) {
        Some(Body::Map(entries)) => entries.try_borrow().map_or(0, |m| m.len() as i64),
        _ => 0,
    }
}

pub(crate) extern "C" fn rt_map_keys(ctx: Ctx<'_>, map: i64) -> i64 {
    if failed_before(ctx) {
        return 0;
    }
    with_ctx(ctx, |ctx| {
        let Some(entries) = map_of(ctx, map) else {
            return 0;
        };
        let Ok(entries) = entries.try_borrow() else {
            return busy(ctx);
        };
        let keys: Vec<Val> = entries
            .keys()
            .map(|k| Val::Obj(Obj::str(k.clone())))
            .collect();
        drop(entries);
        ctx.give(Obj::list(keys))
    })
}

pub(crate) extern "C" fn rt_map_values(ctx: Ctx<'_>, map: i64) -> i64 {
    if failed_before(ctx) {
        return 0;
    }
    with_ctx(ctx, |ctx| {
        let Some(entries) = map_of(ctx, map) else {
            return 0;
        };
        let Ok(entries) = entries.try_borrow() else {
            return busy(ctx);
        };
        let values: Vec<Val> = entries.values().cloned().collect();
        drop(entries);
        ctx.give(Obj::list(values))
    })
}

pub(crate) extern "C" fn rt_map_contains_key(_ctx: Ctx<'_>, map: i64, key: i64) -> i64 {
    match borrow_ptr(map).map(|o| &o.body) {
        Some(Body::Map(entries)) => entries
            .try_borrow()
            .is_ok_and(|m| m.contains_key(str_of(key))) as i64,
        _ => 0,
    }
}

/// `m.remove(k)`: the removed value as a `T?` (null when there was none).
pub(crate) extern "C" fn rt_map_remove(ctx: Ctx<'_>, map: i64, key: i64, _repr: i64) -> i64 {
    with_ctx(ctx, |ctx| {
        let Some(entries) = map_of(ctx, map) else {
            return 0;
        };
        let Ok(mut entries) = entries.try_borrow_mut() else {
            return busy(ctx);
        };
        let removed = entries.shift_remove(str_of(key));
        drop(entries);
        if removed.is_some()
            && let Some(obj) = borrow_ptr(map)
        {
            obj.adjust(-(map_entry_size(str_of(key)) as i64));
        }
        match removed {
            Some(val) => ctx.give_val(box_val(val)),
            None => 0,
        }
    })
}

/// The key at position `index` (for `for k in m`).
pub(crate) extern "C" fn rt_map_key_at(ctx: Ctx<'_>, map: i64, index: i64) -> i64 {
    with_ctx(ctx, |ctx| {
        let Some(entries) = map_of(ctx, map) else {
            return 0;
        };
        let Ok(entries) = entries.try_borrow() else {
            return busy(ctx);
        };
        let key = usize::try_from(index)
            .ok()
            .and_then(|i| entries.get_index(i))
            .map(|(k, _)| k.clone());
        let len = entries.len();
        drop(entries);
        match key {
            Some(key) => ctx.give(Obj::str(key)),
            None => index_error(ctx, index, len),
        }
    })
}

// ---------------------------------------------------------------- records and json

pub(crate) extern "C" fn rt_record_new(ctx: Ctx<'_>, fields: i64, n: i64, ty: i64) -> i64 {
    if failed_before(ctx) {
        return 0;
    }
    with_ctx(ctx, |ctx| {
        let field_types: Vec<Repr> = match type_at(ctx, ty) {
            Type::Record(record) => record.fields.iter().map(|(_, t)| repr_of(t)).collect(),
            _ => Vec::new(),
        };
        let fields: Vec<Val> = argv(fields, n)
            .iter()
            .enumerate()
            .map(|(i, &bits)| {
                Val::from_bits(bits, field_types.get(i).copied().unwrap_or(Repr::Ptr))
            })
            .collect();
        ctx.give(Obj::new(Body::Record(fields)))
    })
}

pub(crate) extern "C" fn rt_record_get(_ctx: Ctx<'_>, record: i64, index: i64, _repr: i64) -> i64 {
    match borrow_ptr(record).map(|o| &o.body) {
        Some(Body::Record(fields)) => usize::try_from(index)
            .ok()
            .and_then(|i| fields.get(i))
            .map_or(0, |v| v.clone().into_bits()),
        _ => 0,
    }
}

pub(crate) extern "C" fn rt_json_null(ctx: Ctx<'_>) -> i64 {
    with_ctx(ctx, |ctx| ctx.give(Obj::json(serde_json::Value::Null)))
}

pub(crate) extern "C" fn rt_json_is_null(_ctx: Ctx<'_>, json: i64) -> i64 {
    match borrow_ptr(json).map(|o| &o.body) {
        Some(Body::Json(j)) => j.is_null() as i64,
        None => 1,
        _ => 0,
    }
}

/// `j[i]` or `j["k"]` on a `json` value.
pub(crate) extern "C" fn rt_json_index(ctx: Ctx<'_>, json: i64, key: i64, key_is_int: i64) -> i64 {
    with_ctx(ctx, |ctx| {
        let Some(Body::Json(value)) = borrow_ptr(json).map(|o| &o.body) else {
            ctx.script_error("internal", "not a json value");
            return 0;
        };
        let found = if key_is_int != 0 {
            match value {
                serde_json::Value::Array(items) => {
                    match usize::try_from(key).ok().and_then(|i| items.get(i)) {
                        Some(item) => Ok(item.clone()),
                        None => Err((
                            "script",
                            "index_out_of_range",
                            format!("index {key} is out of range for length {}", items.len()),
                        )),
                    }
                }
                _ => Err((
                    "type",
                    "type_mismatch",
                    format!("cannot index {} with an int", describe_json(value)),
                )),
            }
        } else {
            let key = str_of(key);
            match value {
                serde_json::Value::Object(entries) => match entries.get(key) {
                    Some(item) => Ok(item.clone()),
                    None => Err((
                        "script",
                        "missing_key",
                        format!("the object has no key \"{key}\""),
                    )),
                },
                _ => Err((
                    "type",
                    "type_mismatch",
                    format!("cannot index {} with a string", describe_json(value)),
                )),
            }
        };
        match found {
            Ok(item) => ctx.give(Obj::json(item)),
            Err((kind, code, message)) => {
                ctx.raise(kind, code, message);
                0
            }
        }
    })
}

fn describe_json(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a bool",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

// ---------------------------------------------------------------- the host door

/// The one door from generated code into host functions: converts the
/// arguments to [`Value`]s by the function's signature, calls it, counts it
/// against the caps, and converts the result back.
pub(crate) extern "C" fn rt_host_call(ctx: Ctx<'_>, function: i64, args: i64, n: i64) -> i64 {
    let raw_args = argv(args, n);
    with_ctx(ctx, |ctx| {
        let tables = ctx.inner.tables;
        let Some(host) = tables.host_functions.get(function as usize) else {
            ctx.script_error("internal", format!("no host function #{function}"));
            return 0;
        };
        let values: Vec<Value> = host
            .argument_types
            .iter()
            .zip(raw_args)
            .map(|(ty, &bits)| val_to_value(&Val::from_bits(bits, repr_of(ty)), ty))
            .collect();
        let result = crate::exec::call_host(ctx, host, values);
        let value = match result {
            Some(value) => value,
            None => return 0,
        };
        if host.signature.ret == Type::Void {
            return 0;
        }
        // The path that names where a conversion failed is only built (by
        // converting again) when one does: host calls are hot.
        match value_to_val(&value, &host.signature.ret, &mut Trail::off()) {
            Ok(val) => ctx.give_val(val),
            Err(_) => {
                let mut path = Trail::at(format!("result of {}", host.signature.qualified_name()));
                let message = value_to_val(&value, &host.signature.ret, &mut path)
                    .err()
                    .unwrap_or_else(|| format!("{path}: cannot be converted"));
                ctx.raise("type", "host_result", message);
                0
            }
        }
    })
}
