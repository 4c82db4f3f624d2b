//! IDE analysis of one SCL file: pure functions from (source, position) to
//! answers — diagnostics, hover text, completion lists, signatures,
//! definitions and references, symbols, highlighting, fixes.
//!
//! Stage: on top of the front end (`scl_lang`: parse, check) and the module
//! table (`scl_stdlib::signatures`). **Invariant:** no protocol types and no
//! I/O here: positions are byte offsets into the source, results are plain
//! data; the protocol layer (`crate::server`) converts both ways. Nothing here
//! panics on any input (the front end never does, and every lookup here is
//! checked).
//!
//! [`analyze`] runs the front end once and keeps what the features need:
//! the tree, the checked program, the tokens and comments, a symbol
//! [`index`] (which name refers to which declaration) and the type of every
//! checked expression.

pub mod actions;
mod call_context;
pub mod completion;
pub mod deployment;
pub mod hover;
pub mod index;
pub mod navigation;
pub mod semantic;
pub mod signature;
pub mod symbols;

use std::cell::OnceCell;
use std::collections::HashMap;

use scl_lang::checker::{CheckOptions, Checked, check};
use scl_lang::hir;
use scl_lang::lexer::{self, Comment, Token};
use scl_lang::modules::{DeploymentNames, ModuleTable, ScriptKind};
use scl_lang::types::Type;
use scl_lang::{Diagnostic, Parsed, Span, parse};

use index::Index;

/// What a file is analysed against: the host modules and what the deployment
/// says of it.
#[derive(Clone, Copy, Debug)]
pub struct World<'a> {
    pub modules: &'a ModuleTable,
    /// The kind the deployment gives the file; when `None`, a `// kind: api`
    /// first-line comment is used (as `scl check` does).
    pub kind: Option<ScriptKind>,
    /// The deployment's names, when a deployment file was found.
    pub names: Option<&'a DeploymentNames>,
    /// The template of the instance scripts this file implements.
    pub template: Option<&'a str>,
}

impl<'a> World<'a> {
    /// A world with the module table only: no deployment, kind from the comment.
    pub fn new(modules: &'a ModuleTable) -> World<'a> {
        World {
            modules,
            kind: None,
            names: None,
            template: None,
        }
    }
}

/// Everything the features need to know about one version of a file. The
/// diagnostics need only the parse and the check, which are done at once;
/// the tokens, the symbol index and the expression types are computed when
/// a feature first asks, so that publishing diagnostics stays fast.
#[derive(Debug)]
pub struct Analysis {
    pub source: String,
    pub kind: Option<ScriptKind>,
    pub parsed: Parsed,
    pub checked: Checked,
    modules: ModuleTable,
    tokens: OnceCell<(Vec<Token>, Vec<Comment>)>,
    index: OnceCell<Index>,
    /// The type of every checked expression by its span (the type before
    /// any implicit conversion), and of every local by its name's span.
    types: OnceCell<Types>,
}

#[derive(Debug, Default)]
struct Types {
    expressions: HashMap<(u32, u32), Type>,
    locals: HashMap<(u32, u32), Type>,
}

/// Parses and checks `source` as `scl check` does.
pub fn analyze(source: &str, world: &World) -> Analysis {
    let kind = world.kind.or_else(|| scl_lang::kind_from_comment(source));
    let parsed = parse(source);
    let options = CheckOptions {
        modules: world.modules,
        kind,
        names: world.names,
        template: world.template,
        require_main: true,
    };
    let checked = check(&parsed, &options);
    Analysis {
        source: source.to_string(),
        kind,
        parsed,
        checked,
        modules: world.modules.clone(),
        tokens: OnceCell::new(),
        index: OnceCell::new(),
        types: OnceCell::new(),
    }
}

impl Analysis {
    /// Every diagnostic of the file, as `scl check` reports them: the
    /// parser's and the checker's, in source order.
    pub fn diagnostics(&self) -> Vec<Diagnostic> {
        let mut diagnostics = self.parsed.diagnostics.clone();
        diagnostics.extend(self.checked.diagnostics.iter().cloned());
        diagnostics.sort_by_key(|d| (d.primary.span.start, d.primary.span.end));
        diagnostics
    }

    /// The tokens of the file (ending with `Eof`).
    pub fn tokens(&self) -> &[Token] {
        &self.lexed().0
    }

    /// The comments of the file, in source order.
    pub fn comments(&self) -> &[Comment] {
        &self.lexed().1
    }

    fn lexed(&self) -> &(Vec<Token>, Vec<Comment>) {
        self.tokens.get_or_init(|| {
            let tokens = lexer::lex(&self.source).tokens;
            let comments = lexer::comments(&self.source, &tokens);
            (tokens, comments)
        })
    }

    /// The symbol index: declarations and what every name refers to.
    pub fn index(&self) -> &Index {
        self.index
            .get_or_init(|| index::build(&self.parsed.file, &self.modules))
    }

    fn types(&self) -> &Types {
        self.types.get_or_init(|| {
            let mut types = Types::default();
            for function in &self.checked.program.functions {
                for local in &function.locals {
                    types
                        .locals
                        .insert((local.span.start, local.span.end), local.ty.clone());
                }
                record_block(&function.body, &mut types.expressions);
            }
            types
        })
    }

    /// The type of the checked expression that spans exactly `span`.
    pub fn type_of(&self, span: Span) -> Option<&Type> {
        self.types()
            .expressions
            .get(&(span.start, span.end))
            .filter(|ty| !ty.is_error())
    }

    /// The type of the local declared with the name at `span`.
    pub fn local_type(&self, span: Span) -> Option<&Type> {
        self.types()
            .locals
            .get(&(span.start, span.end))
            .filter(|ty| !ty.is_error())
    }

    pub fn text(&self, span: Span) -> &str {
        self.source.get(span.range()).unwrap_or("")
    }

    /// The index of the first token that ends after `offset` (the token the
    /// offset is in or before).
    pub fn token_index_at(&self, offset: usize) -> usize {
        self.tokens()
            .partition_point(|token| (token.span.end as usize) <= offset)
    }
}

fn record_block(block: &hir::Block, types: &mut HashMap<(u32, u32), Type>) {
    for statement in &block.stmts {
        record_statement(statement, types);
    }
}

fn record_statement(statement: &hir::Stmt, types: &mut HashMap<(u32, u32), Type>) {
    use hir::StmtKind;
    match &statement.kind {
        StmtKind::Let { init, .. } => record_expr(init, types),
        StmtKind::Assign { place, value, .. } => {
            match place {
                hir::Place::Local(_) => {}
                hir::Place::ListElement { list, index } => {
                    record_expr(list, types);
                    record_expr(index, types);
                }
                hir::Place::MapEntry { map, key } => {
                    record_expr(map, types);
                    record_expr(key, types);
                }
            }
            record_expr(value, types);
        }
        StmtKind::Expr(expr) | StmtKind::Throw(expr) | StmtKind::Return(Some(expr)) => {
            record_expr(expr, types);
        }
        StmtKind::If {
            cond,
            then_block,
            else_block,
        } => {
            record_expr(cond, types);
            record_block(then_block, types);
            if let Some(block) = else_block {
                record_block(block, types);
            }
        }
        StmtKind::While { cond, body } => {
            record_expr(cond, types);
            record_block(body, types);
        }
        StmtKind::ForRange {
            start, end, body, ..
        } => {
            record_expr(start, types);
            record_expr(end, types);
            record_block(body, types);
        }
        StmtKind::ForEach { iterable, body, .. } => {
            record_expr(iterable, types);
            record_block(body, types);
        }
        StmtKind::Try { body, handler, .. } => {
            record_block(body, types);
            record_block(handler, types);
        }
        StmtKind::Break | StmtKind::Continue | StmtKind::Return(None) => {}
    }
}

/// Records `expr` and then its children, so that an inner expression with
/// the same span (the operand of an implicit conversion) wins.
fn record_expr(expr: &hir::Expr, types: &mut HashMap<(u32, u32), Type>) {
    use hir::ExprKind;
    types.insert((expr.span.start, expr.span.end), expr.ty.clone());
    match &expr.kind {
        ExprKind::Int(_)
        | ExprKind::Float(_)
        | ExprKind::Bool(_)
        | ExprKind::Null
        | ExprKind::Str(_)
        | ExprKind::Local(_) => {}
        ExprKind::Concat(parts)
        | ExprKind::List(parts)
        | ExprKind::Record(parts)
        | ExprKind::Call { args: parts, .. }
        | ExprKind::Builtin { args: parts, .. }
        | ExprKind::Method { args: parts, .. }
        | ExprKind::Host { args: parts, .. } => {
            for part in parts {
                record_expr(part, types);
            }
        }
        ExprKind::Map(entries) => {
            for (_, value) in entries {
                record_expr(value, types);
            }
        }
        ExprKind::Field { base, .. } => record_expr(base, types),
        ExprKind::Index { base, index } => {
            record_expr(base, types);
            record_expr(index, types);
        }
        ExprKind::Unary { operand, .. } => record_expr(operand, types),
        ExprKind::Binary { lhs, rhs, .. } | ExprKind::Logical { lhs, rhs, .. } => {
            record_expr(lhs, types);
            record_expr(rhs, types);
        }
        ExprKind::Coalesce { value, default } => {
            record_expr(value, types);
            record_expr(default, types);
        }
        ExprKind::Convert { expr: inner, .. } | ExprKind::As { expr: inner } => {
            record_expr(inner, types);
        }
    }
}

/// Whether `text` can be a name (an identifier that is not a keyword).
pub fn is_identifier(text: &str) -> bool {
    let mut characters = text.chars();
    let Some(first) = characters.next() else {
        return false;
    };
    (first.is_ascii_alphabetic() || first == '_')
        && characters.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !KEYWORDS.contains(&text)
}

/// The language's keywords.
pub const KEYWORDS: [&str; 19] = [
    "fn", "let", "var", "if", "else", "while", "for", "in", "break", "continue", "return", "try",
    "catch", "throw", "type", "true", "false", "null", "as",
];

/// The built-in type names.
pub const BUILTIN_TYPES: [(&str, &str); 6] = [
    (
        "int",
        "A 64-bit signed integer; overflow is a run-time error.",
    ),
    ("float", "A 64-bit IEEE floating-point number."),
    ("bool", "`true` or `false`."),
    ("string", "Immutable UTF-8 text."),
    (
        "json",
        "Any JSON value, checked at run time when converted with `as`.",
    ),
    (
        "void",
        "No value: the result of a function that returns nothing.",
    ),
];

/// The generic built-in types, written `list<T>` and `map<T>`.
pub const CONTAINER_TYPES: [(&str, &str); 2] = [
    ("list", "`list<T>`: a growable list."),
    ("map", "`map<T>`: string keys to `T`, in insertion order."),
];

/// Signatures and docs of the built-in functions called by plain name.
pub const BUILTIN_FUNCTIONS: [(&str, &str, &str); 4] = [
    (
        "float",
        "float(value: int | string) -> float",
        "Converts an `int`, or parses a `string`, to a `float`.",
    ),
    (
        "int",
        "int(value: float | string) -> int",
        "Truncates a `float` toward zero (NaN and infinities are errors), or parses a `string`.",
    ),
    (
        "string",
        "string(value: any) -> string",
        "The text of any value, as string interpolation prints it.",
    ),
    (
        "error",
        "error(code: string, message: string) -> Error",
        "Makes an `Error` of kind `script` with this code and message, for `throw`.",
    ),
];
