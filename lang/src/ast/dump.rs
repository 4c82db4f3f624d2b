//! A compact S-expression rendering of a syntax tree, for tests and
//! debugging: one line per item, spans and ids left out.
//!
//! ```text
//! fn main(x: int) -> int { return x + 1; }
//! (fn main ((x int)) int (block (return (+ x 1))))
//! ```

use std::fmt::Write;

use super::{
    Block, ElseBranch, Expr, ExprKind, File, ForIter, Item, Stmt, StmtKind, StrPart, TypeExpr,
    TypeExprKind, UnaryOp,
};

/// Renders every item of the file, one per line.
pub fn dump(file: &File) -> String {
    let mut out = String::new();
    for item in &file.items {
        match item {
            Item::Fn(function) => {
                out.push_str("(fn ");
                out.push_str(&function.name.name);
                out.push_str(" (");
                for (index, param) in function.params.iter().enumerate() {
                    if index > 0 {
                        out.push(' ');
                    }
                    out.push('(');
                    out.push_str(&param.name.name);
                    out.push(' ');
                    dump_type(&param.ty, &mut out);
                    out.push(')');
                }
                out.push_str(") ");
                match &function.ret {
                    Some(ty) => dump_type(ty, &mut out),
                    None => out.push_str("void"),
                }
                out.push(' ');
                dump_block(&function.body, &mut out);
                out.push_str(")\n");
            }
            Item::Type(declaration) => {
                out.push_str("(type ");
                out.push_str(&declaration.name.name);
                out.push(' ');
                dump_type(&declaration.ty, &mut out);
                out.push_str(")\n");
            }
        }
    }
    out
}

/// Renders one expression.
pub fn dump_expr(expr: &Expr) -> String {
    let mut out = String::new();
    write_expr(expr, &mut out);
    out
}

/// Renders one type expression.
pub fn dump_type_expr(ty: &TypeExpr) -> String {
    let mut out = String::new();
    dump_type(ty, &mut out);
    out
}

fn dump_type(ty: &TypeExpr, out: &mut String) {
    match &ty.kind {
        TypeExprKind::Named(name) => out.push_str(&name.name),
        TypeExprKind::List(element) => {
            out.push_str("(list ");
            dump_type(element, out);
            out.push(')');
        }
        TypeExprKind::Map(element) => {
            out.push_str("(map ");
            dump_type(element, out);
            out.push(')');
        }
        TypeExprKind::Record(fields) => {
            out.push_str("(record");
            for field in fields {
                out.push_str(" (");
                out.push_str(&field.name.name);
                out.push(' ');
                dump_type(&field.ty, out);
                out.push(')');
            }
            out.push(')');
        }
        TypeExprKind::Optional(inner) => {
            out.push_str("(opt ");
            dump_type(inner, out);
            out.push(')');
        }
        TypeExprKind::Error => out.push_str("<error>"),
    }
}

fn dump_block(block: &Block, out: &mut String) {
    out.push_str("(block");
    for stmt in &block.stmts {
        out.push(' ');
        dump_stmt(stmt, out);
    }
    out.push(')');
}

fn dump_stmt(stmt: &Stmt, out: &mut String) {
    match &stmt.kind {
        StmtKind::Let {
            mutable,
            name,
            ty,
            init,
        } => {
            out.push_str(if *mutable { "(var " } else { "(let " });
            out.push_str(&name.name);
            if let Some(ty) = ty {
                out.push(' ');
                dump_type(ty, out);
            }
            out.push(' ');
            write_expr(init, out);
            out.push(')');
        }
        StmtKind::Assign { target, op, value } => {
            out.push_str("(=");
            if let Some(op) = op {
                out.push_str(op.symbol());
            }
            out.push(' ');
            write_expr(target, out);
            out.push(' ');
            write_expr(value, out);
            out.push(')');
        }
        StmtKind::Expr(expr) => {
            out.push_str("(expr ");
            write_expr(expr, out);
            out.push(')');
        }
        StmtKind::If {
            cond,
            then_block,
            else_branch,
        } => {
            out.push_str("(if ");
            write_expr(cond, out);
            out.push(' ');
            dump_block(then_block, out);
            match else_branch.as_deref() {
                Some(ElseBranch::If(stmt)) => {
                    out.push_str(" (else ");
                    dump_stmt(stmt, out);
                    out.push(')');
                }
                Some(ElseBranch::Block(block)) => {
                    out.push_str(" (else ");
                    dump_block(block, out);
                    out.push(')');
                }
                None => {}
            }
            out.push(')');
        }
        StmtKind::While { cond, body } => {
            out.push_str("(while ");
            write_expr(cond, out);
            out.push(' ');
            dump_block(body, out);
            out.push(')');
        }
        StmtKind::For { var, iter, body } => {
            out.push_str("(for ");
            out.push_str(&var.name);
            match iter {
                ForIter::Range { start, end } => {
                    out.push_str(" (range ");
                    write_expr(start, out);
                    out.push(' ');
                    write_expr(end, out);
                    out.push_str(") ");
                }
                ForIter::Each(expr) => {
                    out.push_str(" (each ");
                    write_expr(expr, out);
                    out.push_str(") ");
                }
            }
            dump_block(body, out);
            out.push(')');
        }
        StmtKind::Break => out.push_str("(break)"),
        StmtKind::Continue => out.push_str("(continue)"),
        StmtKind::Return(value) => {
            out.push_str("(return");
            if let Some(value) = value {
                out.push(' ');
                write_expr(value, out);
            }
            out.push(')');
        }
        StmtKind::Throw(value) => {
            out.push_str("(throw ");
            write_expr(value, out);
            out.push(')');
        }
        StmtKind::Try {
            body,
            catch_var,
            handler,
        } => {
            out.push_str("(try ");
            dump_block(body, out);
            out.push_str(" (catch ");
            out.push_str(&catch_var.name);
            out.push(' ');
            dump_block(handler, out);
            out.push_str("))");
        }
        StmtKind::Error => out.push_str("<error-stmt>"),
    }
}

fn write_list(head: &str, exprs: &[Expr], out: &mut String) {
    out.push('(');
    out.push_str(head);
    for expr in exprs {
        out.push(' ');
        write_expr(expr, out);
    }
    out.push(')');
}

fn write_expr(expr: &Expr, out: &mut String) {
    match &expr.kind {
        ExprKind::Int(value) => {
            let _ = write!(out, "{value}");
        }
        ExprKind::Float(value) => {
            // `{:?}` always shows a `.` or an exponent, so floats and ints
            // are told apart.
            let _ = write!(out, "{value:?}");
        }
        ExprKind::Bool(value) => {
            let _ = write!(out, "{value}");
        }
        ExprKind::Null => out.push_str("null"),
        ExprKind::Str(parts) => match parts.as_slice() {
            [StrPart::Text(text)] => {
                let _ = write!(out, "{text:?}");
            }
            _ => {
                out.push_str("(str");
                for part in parts {
                    out.push(' ');
                    match part {
                        StrPart::Text(text) => {
                            let _ = write!(out, "{text:?}");
                        }
                        StrPart::Interp(inner) => write_expr(inner, out),
                    }
                }
                out.push(')');
            }
        },
        ExprKind::List(elements) => write_list("list", elements, out),
        ExprKind::Record(fields) => {
            out.push_str("(record");
            for field in fields {
                out.push_str(" (");
                write_key(&field.name.name, out);
                out.push(' ');
                write_expr(&field.value, out);
                out.push(')');
            }
            out.push(')');
        }
        ExprKind::Name(name) => out.push_str(&name.name),
        ExprKind::Field { base, field } => {
            out.push_str("(. ");
            write_expr(base, out);
            out.push(' ');
            out.push_str(&field.name);
            out.push(')');
        }
        ExprKind::Index { base, index } => {
            out.push_str("(index ");
            write_expr(base, out);
            out.push(' ');
            write_expr(index, out);
            out.push(')');
        }
        ExprKind::Call { callee, args } => write_list(&format!("call {}", callee.name), args, out),
        ExprKind::MethodCall {
            receiver,
            method,
            args,
        } => {
            out.push_str("(method ");
            write_expr(receiver, out);
            out.push(' ');
            out.push_str(&method.name);
            for arg in args {
                out.push(' ');
                write_expr(arg, out);
            }
            out.push(')');
        }
        ExprKind::Unary { op, operand } => {
            out.push_str(match op {
                UnaryOp::Neg => "(neg ",
                UnaryOp::Not => "(not ",
            });
            write_expr(operand, out);
            out.push(')');
        }
        ExprKind::Binary { op, lhs, rhs } => {
            out.push('(');
            out.push_str(op.symbol());
            out.push(' ');
            write_expr(lhs, out);
            out.push(' ');
            write_expr(rhs, out);
            out.push(')');
        }
        ExprKind::As { expr: inner, ty } => {
            out.push_str("(as ");
            write_expr(inner, out);
            out.push(' ');
            dump_type(ty, out);
            out.push(')');
        }
        ExprKind::Error => out.push_str("<error>"),
    }
}

/// A record key as written when it is a plain name, quoted otherwise.
fn write_key(key: &str, out: &mut String) {
    let plain = key
        .chars()
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic() || first == '_')
        && key
            .chars()
            .all(|character| character.is_ascii_alphanumeric() || character == '_');
    if plain {
        out.push_str(key);
    } else {
        let _ = write!(out, "{key:?}");
    }
}
