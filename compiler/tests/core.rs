//! Ints, floats, bools, arithmetic, control flow, calls and errors, from SCL source.

mod common;

use common::*;
use scl_compiler::Value;

#[test]
fn int_arithmetic() {
    assert_eq!(eval("int", "1 + 2 * 3"), Value::Int(7));
    assert_eq!(eval("int", "7 / 2"), Value::Int(3));
    assert_eq!(eval("int", "-7 / 2"), Value::Int(-3));
    assert_eq!(eval("int", "-7 % 3"), Value::Int(-1));
    assert_eq!(eval("int", "7 % -3"), Value::Int(1));
}

#[test]
fn fib() {
    let src = "fn fib(n: int) -> int { if n < 2 { return n; } return fib(n - 1) + fib(n - 2); }\nfn main(n: int) -> int { return fib(n); }";
    assert_eq!(ok(src, vec![Value::Int(20)]), Value::Int(6765));
}
