//! Stage 1 output: the syntax tree of one file, as written.
//!
//! The parser always produces a tree, even for broken input: what it could not
//! parse becomes an `Error` node (and a diagnostic), so later stages can keep
//! going and report more than the first mistake.

use crate::span::Span;

pub mod dump;

pub use dump::dump;

/// An identifier with its position.
#[derive(Clone, Debug, PartialEq)]
pub struct Ident {
    pub name: String,
    pub span: Span,
}

/// One source file: a list of items in source order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct File {
    pub items: Vec<Item>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Item {
    Fn(FnDecl),
    Type(TypeDecl),
}

/// `fn name(a: T, ...) -> R { ... }`
#[derive(Clone, Debug, PartialEq)]
pub struct FnDecl {
    pub name: Ident,
    pub params: Vec<Param>,
    /// `None` when no `-> R` is written, which means `void`.
    pub ret: Option<TypeExpr>,
    pub body: Block,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Param {
    pub name: Ident,
    pub ty: TypeExpr,
    pub span: Span,
}

/// `type Name = T`
#[derive(Clone, Debug, PartialEq)]
pub struct TypeDecl {
    pub name: Ident,
    pub ty: TypeExpr,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub struct TypeExpr {
    pub kind: TypeExprKind,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum TypeExprKind {
    /// `int`, `float`, `bool`, `string`, `json`, `void`, or a `type` name.
    Named(Ident),
    /// `list<T>`
    List(Box<TypeExpr>),
    /// `map<T>`
    Map(Box<TypeExpr>),
    /// `{ a: T, b: U }`
    Record(Vec<FieldType>),
    /// `T?`
    Optional(Box<TypeExpr>),
    /// The parser could not read a type here (a diagnostic was reported).
    Error,
}

#[derive(Clone, Debug, PartialEq)]
pub struct FieldType {
    pub name: Ident,
    pub ty: TypeExpr,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Block {
    pub stmts: Vec<Stmt>,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Stmt {
    pub kind: StmtKind,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum StmtKind {
    /// `let x: T = e;` (`mutable == false`) or `var x: T = e;`
    Let {
        mutable: bool,
        name: Ident,
        ty: Option<TypeExpr>,
        init: Expr,
    },
    /// `target = value;` or `target op= value;`
    Assign {
        target: Expr,
        op: Option<BinOp>,
        value: Expr,
    },
    /// An expression statement, `e;`
    Expr(Expr),
    /// `if c { } else if d { } else { }`
    If {
        cond: Expr,
        then_block: Block,
        else_branch: Option<Box<ElseBranch>>,
    },
    While {
        cond: Expr,
        body: Block,
    },
    /// `for x in xs { }` or `for i in a..b { }`
    For {
        var: Ident,
        iter: ForIter,
        body: Block,
    },
    Break,
    Continue,
    Return(Option<Expr>),
    Throw(Expr),
    /// `try { } catch e { }`
    Try {
        body: Block,
        catch_var: Ident,
        handler: Block,
    },
    /// A bare block `{ ... }` is not a statement in SCL (a `{` starts a
    /// record literal); this variant is what the parser leaves where it
    /// skipped broken input.
    Error,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ElseBranch {
    If(Stmt),
    Block(Block),
}

#[derive(Clone, Debug, PartialEq)]
pub enum ForIter {
    /// `a..b`, exclusive of `b`.
    Range { start: Expr, end: Expr },
    /// Any list (or map: iterates keys) expression.
    Each(Expr),
}

/// Every expression has a file-unique id, so later stages can attach facts
/// to it (its type) without rebuilding the tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ExprId(pub u32);

#[derive(Clone, Debug, PartialEq)]
pub struct Expr {
    pub id: ExprId,
    pub kind: ExprKind,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ExprKind {
    Int(i64),
    Float(f64),
    Bool(bool),
    Null,
    /// A string literal; one `Text` part when there is no interpolation.
    Str(Vec<StrPart>),
    /// `[a, b, c]`
    List(Vec<Expr>),
    /// `{ a: e, "b c": f }`: a record, or a map / json object where one is expected.
    Record(Vec<FieldInit>),
    /// A name: a local, or a module name such as `Log` used as a receiver.
    Name(Ident),
    /// `base.field`
    Field {
        base: Box<Expr>,
        field: Ident,
    },
    /// `base[index]`
    Index {
        base: Box<Expr>,
        index: Box<Expr>,
    },
    /// `f(args)`: a script function, or a built-in such as `float`, `error`.
    Call {
        callee: Ident,
        args: Vec<Expr>,
    },
    /// `receiver.method(args)`: a method on a value, or `Module.Function(args)`.
    MethodCall {
        receiver: Box<Expr>,
        method: Ident,
        args: Vec<Expr>,
    },
    Unary {
        op: UnaryOp,
        operand: Box<Expr>,
    },
    Binary {
        op: BinOp,
        lhs: Box<Expr>,
        rhs: Box<Expr>,
    },
    /// `expr as T`
    As {
        expr: Box<Expr>,
        ty: TypeExpr,
    },
    /// The parser could not read an expression here (a diagnostic was reported).
    Error,
}

#[derive(Clone, Debug, PartialEq)]
pub enum StrPart {
    Text(String),
    Interp(Expr),
}

#[derive(Clone, Debug, PartialEq)]
pub struct FieldInit {
    /// Written as an identifier or a string literal.
    pub name: Ident,
    pub value: Expr,
    pub span: Span,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UnaryOp {
    Neg,
    Not,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    And,
    Or,
    /// `??`
    Coalesce,
}

impl BinOp {
    pub fn symbol(self) -> &'static str {
        match self {
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Rem => "%",
            BinOp::Eq => "==",
            BinOp::Ne => "!=",
            BinOp::Lt => "<",
            BinOp::Le => "<=",
            BinOp::Gt => ">",
            BinOp::Ge => ">=",
            BinOp::And => "&&",
            BinOp::Or => "||",
            BinOp::Coalesce => "??",
        }
    }
}
