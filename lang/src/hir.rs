//! Stage 2 output: the checked program. Every name is resolved, every
//! expression carries its type, and every implicit conversion is explicit.
//!
//! The compiler lowers this tree and never resolves a name or infers a type
//! again. A `Program` is only built for a file that checked without errors.

use crate::ast::{BinOp, UnaryOp};
use crate::modules::HostFnId;
use crate::span::Span;
use crate::types::Type;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FnId(pub u32);

/// Index into [`Function::locals`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LocalId(pub u32);

#[derive(Clone, Debug)]
pub struct Program {
    /// Indexed by [`FnId`].
    pub functions: Vec<Function>,
    /// The script's entry point, when it has a `main`.
    pub main: Option<FnId>,
}

impl Program {
    pub fn function(&self, id: FnId) -> &Function {
        &self.functions[id.0 as usize]
    }

    pub fn function_by_name(&self, name: &str) -> Option<FnId> {
        self.functions
            .iter()
            .position(|f| f.name == name)
            .map(|i| FnId(i as u32))
    }
}

#[derive(Clone, Debug)]
pub struct Function {
    pub name: String,
    /// The first `params.len()` locals, in order.
    pub params: Vec<LocalId>,
    pub ret: Type,
    /// Every local of the function (parameters, `let`/`var`, loop and catch
    /// variables), each declared once; shadowing makes a new local.
    pub locals: Vec<Local>,
    pub body: Block,
    pub span: Span,
}

impl Function {
    pub fn local(&self, id: LocalId) -> &Local {
        &self.locals[id.0 as usize]
    }
}

#[derive(Clone, Debug)]
pub struct Local {
    pub name: String,
    pub ty: Type,
    pub mutable: bool,
    pub span: Span,
}

#[derive(Clone, Debug, Default)]
pub struct Block {
    pub stmts: Vec<Stmt>,
}

#[derive(Clone, Debug)]
pub struct Stmt {
    pub kind: StmtKind,
    pub span: Span,
}

#[derive(Clone, Debug)]
pub enum StmtKind {
    Let {
        local: LocalId,
        init: Expr,
    },
    /// `place = value` when `op` is `None`, else `place = place op value`
    /// (the place's sub-expressions are evaluated once).
    Assign {
        place: Place,
        op: Option<BinOp>,
        value: Expr,
    },
    Expr(Expr),
    /// `else if` chains arrive as an `else` block holding one `If`.
    If {
        cond: Expr,
        then_block: Block,
        else_block: Option<Block>,
    },
    While {
        cond: Expr,
        body: Block,
    },
    /// `for var in start..end`, both `int`, `end` evaluated once.
    ForRange {
        var: LocalId,
        start: Expr,
        end: Expr,
        body: Block,
    },
    /// `for var in iterable`: the elements of a `list<T>`, or the keys of a `map<T>`.
    ForEach {
        var: LocalId,
        iterable: Expr,
        body: Block,
    },
    Break,
    Continue,
    Return(Option<Expr>),
    /// The value has the `Error` record type (a `throw "text"` was converted).
    Throw(Expr),
    Try {
        body: Block,
        catch_var: LocalId,
        handler: Block,
    },
}

#[derive(Clone, Debug)]
pub enum Place {
    Local(LocalId),
    /// `list[index]` on a `list<T>`.
    ListElement {
        list: Expr,
        index: Expr,
    },
    /// `map[key]` on a `map<T>` (inserts or replaces).
    MapEntry {
        map: Expr,
        key: Expr,
    },
}

#[derive(Clone, Debug)]
pub struct Expr {
    pub kind: ExprKind,
    pub ty: Type,
    pub span: Span,
}

#[derive(Clone, Debug)]
pub enum ExprKind {
    Int(i64),
    Float(f64),
    Bool(bool),
    /// `null`; `ty` is the optional (or `json`) type it stands for.
    Null,
    Str(String),
    /// String interpolation: the concatenation of the parts, each of type `string`.
    Concat(Vec<Expr>),
    /// `ty` is `list<T>`; elements already have type `T`.
    List(Vec<Expr>),
    /// A `map<T>` literal; values already have type `T`.
    Map(Vec<(String, Expr)>),
    /// A record literal with one value per field of `ty`, in canonical order.
    Record(Vec<Expr>),
    Local(LocalId),
    /// A record field by canonical index.
    Field {
        base: Box<Expr>,
        index: u32,
    },
    /// `base[index]`: a list by `int`, a map by `string`, or `json` by `int`
    /// or `string`. A missing element is an error at run time.
    Index {
        base: Box<Expr>,
        index: Box<Expr>,
    },
    Call {
        func: FnId,
        args: Vec<Expr>,
    },
    Builtin {
        func: Builtin,
        args: Vec<Expr>,
    },
    /// A method on a built-in value; the receiver is `args[0]`.
    Method {
        method: Method,
        args: Vec<Expr>,
    },
    /// A host function; for a host-type method the receiver is `args[0]`.
    Host {
        func: HostFnId,
        args: Vec<Expr>,
    },
    Unary {
        op: UnaryOp,
        operand: Box<Expr>,
    },
    /// Arithmetic and comparison; the operand type is `lhs.ty` (both sides
    /// have the same type, except `==`/`!=` against `null`). `&&`, `||`
    /// and `??` are not here: see `Logical` and `Coalesce`.
    Binary {
        op: BinOp,
        lhs: Box<Expr>,
        rhs: Box<Expr>,
    },
    /// Short-circuit `&&` (`and == true`) or `||`.
    Logical {
        and: bool,
        lhs: Box<Expr>,
        rhs: Box<Expr>,
    },
    /// `value ?? default`: `value` is `T?` (or `json`), `default` is `T`.
    Coalesce {
        value: Box<Expr>,
        default: Box<Expr>,
    },
    /// An implicit conversion the checker inserted.
    Convert {
        conversion: Conversion,
        expr: Box<Expr>,
    },
    /// `expr as ty`: a checked conversion from `json` (or a container of
    /// `json`) to `ty`; a mismatch is an error of kind `type` with a path.
    As {
        expr: Box<Expr>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Conversion {
    /// Any value to `json` (records become objects, `null` stays `null`).
    ToJson,
    /// `T` to `T?`.
    ToOptional,
}

/// Built-in functions called by plain name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Builtin {
    /// `float(int)`, `float(string)`
    ToFloat,
    /// `int(float)` truncates (NaN/inf is an error), `int(string)` parses.
    ToInt,
    /// `string(x)` for any value.
    ToString,
    /// `error(code, message)` makes an `Error` of kind `script`.
    MakeError,
}

/// Methods on built-in values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Method {
    StrLen,
    StrUpper,
    StrLower,
    StrTrim,
    StrContains,
    StrStartsWith,
    StrEndsWith,
    StrSplit,
    StrReplace,
    StrSubstring,
    StrIndexOf,
    ListLen,
    ListPush,
    ListPop,
    ListContains,
    ListSort,
    ListReverse,
    ListJoin,
    ListSlice,
    MapLen,
    MapGet,
    MapKeys,
    MapValues,
    MapContainsKey,
    MapRemove,
}
