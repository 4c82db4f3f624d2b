//! The symbol index of one file: every declaration (functions, types,
//! parameters, locals, loop and catch variables) and every name in the
//! source with its role — which declaration it refers to, or that it is a
//! module, a member after `.`, a built-in, a record key.
//!
//! Scoping follows the checker: a function's parameters and its body's
//! top-level statements share one scope, every other block opens a scope, a
//! `let` is visible after its statement (so `let x = x + 1;` reads an outer
//! `x`), a loop variable in its loop's body, a catch variable in its handler.
//! The index is built from the syntax tree alone, so it works on files with
//! errors (whatever parsed is indexed).

use std::collections::HashMap;

use scl_lang::Span;
use scl_lang::ast::{
    Block, ElseBranch, Expr, ExprKind, File, ForIter, Ident, Item, Stmt, StmtKind, StrPart,
    TypeExpr, TypeExprKind,
};
use scl_lang::modules::{ModuleTable, Owner};
use scl_lang::types::Type;

use super::{BUILTIN_FUNCTIONS, BUILTIN_TYPES, CONTAINER_TYPES};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SymbolId(pub usize);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SymbolKind {
    Function,
    Type,
    Parameter,
    Let,
    Var,
    LoopVariable,
    CatchVariable,
}

impl SymbolKind {
    pub fn is_local(self) -> bool {
        !matches!(self, SymbolKind::Function | SymbolKind::Type)
    }
}

/// One declaration.
#[derive(Clone, Debug)]
pub struct Symbol {
    pub name: String,
    pub kind: SymbolKind,
    /// The declared name.
    pub span: Span,
    /// The whole declaration (a function with its body, a `let` statement).
    pub declaration: Span,
    /// Where a local can be used (empty for functions and types).
    pub visible: Span,
    /// For a local, the function it belongs to (by its name's span).
    pub function: Option<Span>,
}

/// What a name in the source is.
#[derive(Clone, Debug, PartialEq)]
pub enum Role {
    /// The name of a declaration.
    Definition(SymbolId),
    /// A use of a declaration.
    Reference(SymbolId),
    /// A built-in module used as a receiver, such as `Log` in `Log.Info(...)`.
    Module,
    /// A function of a built-in module: `Info` in `Log.Info(...)`.
    ModuleMember { module: String },
    /// A method (`call`) or a field after `.` on a value; the receiver's
    /// type decides what it is.
    Member { receiver: Span, call: bool },
    /// `float`, `int`, `string`, `error`.
    BuiltinFunction,
    /// `int`, `list`, `Delivery`, `Connection`, ... in a type.
    BuiltinType,
    /// A key of a record literal or record type.
    RecordKey,
    /// A name in expression position that resolves to nothing.
    Unresolved,
    /// A name in type position that resolves to nothing.
    UnresolvedType,
}

/// One name in the source.
#[derive(Clone, Debug)]
pub struct Occurrence {
    pub span: Span,
    pub name: String,
    pub role: Role,
}

#[derive(Clone, Debug, Default)]
pub struct Index {
    pub symbols: Vec<Symbol>,
    /// In source order.
    pub occurrences: Vec<Occurrence>,
}

impl Index {
    pub fn symbol(&self, id: SymbolId) -> &Symbol {
        &self.symbols[id.0]
    }

    /// The name at `offset` (on it, or just after its last character).
    pub fn at(&self, offset: usize) -> Option<&Occurrence> {
        let offset = offset as u32;
        let after = self.occurrences.partition_point(|o| o.span.start <= offset);
        // Names never overlap: only the last one starting before can contain it.
        self.occurrences[..after]
            .last()
            .filter(|o| o.span.end >= offset)
    }

    /// The declaration a name at `offset` declares or refers to.
    pub fn symbol_at(&self, offset: usize) -> Option<SymbolId> {
        match self.at(offset)?.role {
            Role::Definition(id) | Role::Reference(id) => Some(id),
            _ => None,
        }
    }

    /// Every occurrence of a symbol: its definition and its references.
    pub fn occurrences_of(&self, id: SymbolId) -> impl Iterator<Item = &Occurrence> {
        self.occurrences
            .iter()
            .filter(move |o| matches!(o.role, Role::Definition(d) | Role::Reference(d) if d == id))
    }

    /// The locals usable at `offset`, the innermost declaration of each name.
    pub fn locals_at(&self, offset: usize) -> Vec<&Symbol> {
        let offset = offset as u32;
        let mut visible: Vec<&Symbol> = self
            .symbols
            .iter()
            .filter(|s| s.kind.is_local() && s.visible.start <= offset && offset <= s.visible.end)
            .collect();
        // Later (inner) declarations shadow earlier ones.
        visible.sort_by_key(|s| std::cmp::Reverse(s.span.start));
        let mut seen: Vec<&str> = Vec::new();
        visible.retain(|s| {
            if seen.contains(&s.name.as_str()) {
                false
            } else {
                seen.push(&s.name);
                true
            }
        });
        visible
    }

    /// The functions and types of the file (first declaration of each name).
    pub fn items(&self) -> impl Iterator<Item = &Symbol> {
        self.symbols.iter().filter(|s| !s.kind.is_local())
    }
}

/// Indexes a file.
pub fn build(file: &File, modules: &ModuleTable) -> Index {
    let mut builder = Builder {
        modules,
        host_types: host_type_names(modules),
        index: Index::default(),
        functions: HashMap::new(),
        types: HashMap::new(),
        scopes: Vec::new(),
        function: None,
    };
    builder.file(file);
    builder
        .index
        .occurrences
        .sort_by_key(|o| (o.span.start, o.span.end));
    builder.index
}

/// Host type names (`Connection`, `RouteTarget`, ...) and the module table's
/// named types (`Delivery`, ...).
fn host_type_names(modules: &ModuleTable) -> Vec<String> {
    let mut names: Vec<String> = modules.types.iter().map(|(name, _)| name.clone()).collect();
    for function in &modules.functions {
        if let Owner::HostType(name) = &function.owner
            && !names.contains(name)
        {
            names.push(name.clone());
        }
        if let Type::Host(name) = &function.ret
            && !names.contains(name)
        {
            names.push(name.clone());
        }
    }
    if !names.iter().any(|n| n == "Error") {
        names.push("Error".to_string());
    }
    names
}

struct Builder<'a> {
    modules: &'a ModuleTable,
    host_types: Vec<String>,
    index: Index,
    functions: HashMap<String, SymbolId>,
    types: HashMap<String, SymbolId>,
    /// Innermost last; names in declaration order.
    scopes: Vec<Vec<(String, SymbolId)>>,
    /// The name span of the function being indexed.
    function: Option<Span>,
}

impl Builder<'_> {
    fn add_symbol(&mut self, symbol: Symbol) -> SymbolId {
        let id = SymbolId(self.index.symbols.len());
        self.occur(symbol.span, &symbol.name, Role::Definition(id));
        self.index.symbols.push(symbol);
        id
    }

    fn occur(&mut self, span: Span, name: &str, role: Role) {
        self.index.occurrences.push(Occurrence {
            span,
            name: name.to_string(),
            role,
        });
    }

    fn file(&mut self, file: &File) {
        for item in &file.items {
            let (name, kind, declaration) = match item {
                Item::Fn(function) => (&function.name, SymbolKind::Function, function.span),
                Item::Type(declaration) => (&declaration.name, SymbolKind::Type, declaration.span),
            };
            let id = self.add_symbol(Symbol {
                name: name.name.clone(),
                kind,
                span: name.span,
                declaration,
                visible: Span::default(),
                function: None,
            });
            let table = if kind == SymbolKind::Function {
                &mut self.functions
            } else {
                &mut self.types
            };
            table.entry(name.name.clone()).or_insert(id);
        }
        for item in &file.items {
            match item {
                Item::Type(declaration) => self.type_expr(&declaration.ty),
                Item::Fn(function) => {
                    self.function = Some(function.name.span);
                    self.scopes = vec![Vec::new()];
                    for param in &function.params {
                        self.type_expr(&param.ty);
                        self.declare(
                            &param.name,
                            SymbolKind::Parameter,
                            param.span,
                            function.body.span,
                        );
                    }
                    if let Some(ret) = &function.ret {
                        self.type_expr(ret);
                    }
                    // The body's top level shares the parameters' scope.
                    self.statements(&function.body.stmts, function.body.span.end);
                    self.scopes.clear();
                    self.function = None;
                }
            }
        }
    }

    fn declare(&mut self, name: &Ident, kind: SymbolKind, declaration: Span, visible: Span) {
        let id = self.add_symbol(Symbol {
            name: name.name.clone(),
            kind,
            span: name.span,
            declaration,
            visible,
            function: self.function,
        });
        if name.name != "_"
            && let Some(scope) = self.scopes.last_mut()
        {
            scope.push((name.name.clone(), id));
        }
    }

    fn lookup_local(&self, name: &str) -> Option<SymbolId> {
        self.scopes.iter().rev().find_map(|scope| {
            scope
                .iter()
                .rev()
                .find(|(n, _)| n == name)
                .map(|(_, id)| *id)
        })
    }

    fn block(&mut self, block: &Block) {
        self.scopes.push(Vec::new());
        self.statements(&block.stmts, block.span.end);
        self.scopes.pop();
    }

    /// The statements of a block whose scope ends at `scope_end`.
    fn statements(&mut self, statements: &[Stmt], scope_end: u32) {
        for statement in statements {
            self.statement(statement, scope_end);
        }
    }

    fn statement(&mut self, statement: &Stmt, scope_end: u32) {
        match &statement.kind {
            StmtKind::Let {
                mutable,
                name,
                ty,
                init,
            } => {
                if let Some(ty) = ty {
                    self.type_expr(ty);
                }
                self.expr(init);
                let kind = if *mutable {
                    SymbolKind::Var
                } else {
                    SymbolKind::Let
                };
                let visible = Span {
                    start: statement.span.end,
                    end: scope_end.max(statement.span.end),
                };
                self.declare(name, kind, statement.span, visible);
            }
            StmtKind::Assign { target, value, .. } => {
                self.expr(target);
                self.expr(value);
            }
            StmtKind::Expr(expr) | StmtKind::Throw(expr) | StmtKind::Return(Some(expr)) => {
                self.expr(expr);
            }
            StmtKind::If {
                cond,
                then_block,
                else_branch,
            } => {
                self.expr(cond);
                self.block(then_block);
                match else_branch.as_deref() {
                    Some(ElseBranch::If(statement)) => self.statement(statement, scope_end),
                    Some(ElseBranch::Block(block)) => self.block(block),
                    None => {}
                }
            }
            StmtKind::While { cond, body } => {
                self.expr(cond);
                self.block(body);
            }
            StmtKind::For { var, iter, body } => {
                match iter {
                    ForIter::Range { start, end } => {
                        self.expr(start);
                        self.expr(end);
                    }
                    ForIter::Each(expr) => self.expr(expr),
                }
                self.scopes.push(Vec::new());
                self.declare(var, SymbolKind::LoopVariable, statement.span, body.span);
                self.block(body);
                self.scopes.pop();
            }
            StmtKind::Try {
                body,
                catch_var,
                handler,
            } => {
                self.block(body);
                self.scopes.push(Vec::new());
                self.declare(
                    catch_var,
                    SymbolKind::CatchVariable,
                    statement.span,
                    handler.span,
                );
                self.block(handler);
                self.scopes.pop();
            }
            StmtKind::Break | StmtKind::Continue | StmtKind::Return(None) | StmtKind::Error => {}
        }
    }

    /// A name used as the receiver of `.`: a local, else a module.
    fn receiver_is_module(&self, receiver: &Expr) -> Option<String> {
        let ExprKind::Name(name) = &receiver.kind else {
            return None;
        };
        if self.lookup_local(&name.name).is_some() || !self.modules.is_module(&name.name) {
            return None;
        }
        Some(name.name.clone())
    }

    fn expr(&mut self, expr: &Expr) {
        match &expr.kind {
            ExprKind::Int(_)
            | ExprKind::Float(_)
            | ExprKind::Bool(_)
            | ExprKind::Null
            | ExprKind::Error => {}
            ExprKind::Str(parts) => {
                for part in parts {
                    if let StrPart::Interp(inner) = part {
                        self.expr(inner);
                    }
                }
            }
            ExprKind::List(elements) => {
                for element in elements {
                    self.expr(element);
                }
            }
            ExprKind::Record(fields) => {
                for field in fields {
                    self.occur(field.name.span, &field.name.name, Role::RecordKey);
                    self.expr(&field.value);
                }
            }
            ExprKind::Name(name) => {
                let role = match self.lookup_local(&name.name) {
                    Some(id) => Role::Reference(id),
                    None if self.modules.is_module(&name.name) => Role::Module,
                    None => Role::Unresolved,
                };
                self.occur(name.span, &name.name, role);
            }
            ExprKind::Field { base, field } => {
                if let Some(module) = self.receiver_is_module(base) {
                    self.expr(base);
                    self.occur(field.span, &field.name, Role::ModuleMember { module });
                } else {
                    self.expr(base);
                    let role = Role::Member {
                        receiver: base.span,
                        call: false,
                    };
                    self.occur(field.span, &field.name, role);
                }
            }
            ExprKind::Index { base, index } => {
                self.expr(base);
                self.expr(index);
            }
            ExprKind::Call { callee, args } => {
                let role = match self.functions.get(&callee.name) {
                    Some(id) => Role::Reference(*id),
                    None if BUILTIN_FUNCTIONS.iter().any(|(n, _, _)| *n == callee.name) => {
                        Role::BuiltinFunction
                    }
                    None => Role::Unresolved,
                };
                self.occur(callee.span, &callee.name, role);
                for arg in args {
                    self.expr(arg);
                }
            }
            ExprKind::MethodCall {
                receiver,
                method,
                args,
            } => {
                self.expr(receiver);
                let role = match self.receiver_is_module(receiver) {
                    Some(module) => Role::ModuleMember { module },
                    None => Role::Member {
                        receiver: receiver.span,
                        call: true,
                    },
                };
                self.occur(method.span, &method.name, role);
                for arg in args {
                    self.expr(arg);
                }
            }
            ExprKind::Unary { operand, .. } => self.expr(operand),
            ExprKind::Binary { lhs, rhs, .. } => {
                self.expr(lhs);
                self.expr(rhs);
            }
            ExprKind::As { expr: inner, ty } => {
                self.expr(inner);
                self.type_expr(ty);
            }
        }
    }

    fn type_expr(&mut self, ty: &TypeExpr) {
        match &ty.kind {
            TypeExprKind::Named(name) => {
                let role = if let Some(id) = self.types.get(&name.name) {
                    Role::Reference(*id)
                } else if BUILTIN_TYPES.iter().any(|(n, _)| *n == name.name)
                    || self.host_types.contains(&name.name)
                {
                    Role::BuiltinType
                } else {
                    Role::UnresolvedType
                };
                self.occur(name.span, &name.name, role);
            }
            TypeExprKind::List(inner) | TypeExprKind::Map(inner) => {
                let word = if matches!(ty.kind, TypeExprKind::List(_)) {
                    "list"
                } else {
                    "map"
                };
                if CONTAINER_TYPES.iter().any(|(n, _)| *n == word) {
                    let span = Span {
                        start: ty.span.start,
                        end: ty.span.start + word.len() as u32,
                    };
                    self.occur(span, word, Role::BuiltinType);
                }
                self.type_expr(inner);
            }
            TypeExprKind::Optional(inner) => self.type_expr(inner),
            TypeExprKind::Record(fields) => {
                for field in fields {
                    self.occur(field.name.span, &field.name.name, Role::RecordKey);
                    self.type_expr(&field.ty);
                }
            }
            TypeExprKind::Error => {}
        }
    }
}
