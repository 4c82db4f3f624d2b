//! Stage 1: tokens → [`ast::File`].
//!
//! [`parse`] never fails and never panics: it always returns a tree, in which
//! the parts it could not read are `Error` nodes, together with every lexical
//! and syntax diagnostic of the file. Each mistake is reported once:
//!
//! - **Panic mode.** The first error in a statement (or item, or delimited
//!   list) is reported and sets `panicking`; later errors are dropped until
//!   the parser has re-synchronised: at a `;` or the `}` of a block for
//!   statements, at the closing delimiter for `( )`, `[ ]` and `{ }` lists,
//!   and at the next `fn` / `type` for items. Skipping is bracket-balanced.
//! - **Lexer errors are not reported twice.** A diagnostic is dropped when
//!   the current or the previous token is a lexer `Error` token.
//! - **Dedupe.** At most one diagnostic per source position.
//! - **Missing `;`** (SCL0012) is reported just after the previous token when
//!   the next token begins a new line, a statement or a block's end; the
//!   statement is kept. Otherwise the unexpected token is reported (SCL0010).
//! - **Unclosed delimiters** (SCL0011) are reported where a closing
//!   delimiter was expected but a `;`, another closer, a statement keyword
//!   or the end of the file was found, with a label on the opening one.
//!
//! Expression ids are renumbered after parsing so that they run from 0 in
//! the order of a pre-order walk of the tree (parents before children, in
//! source order), unique within the file.
//!
//! # Why a hand-written parser and not chumsky
//!
//! The design card names chumsky; this parser is hand-written recursive
//! descent because the recovery contract above could not be met with
//! chumsky 0.13's recovery machinery:
//!
//! - Its `Strategy` trait is sealed ("cannot be implemented by other
//!   crates", `chumsky::recovery`), so recovery must be built from
//!   `via_parser`, `skip_then_retry_until` and `nested_delimiters`.
//! - On recovery those strategies emit chumsky's merged "alt" error: the
//!   furthest failure among all alternatives tried (`ViaParser::recover`
//!   calls `inp.emit(alt.err)`). Which diagnostic a mistake produces is thus
//!   decided by the combinator, while we need a specific code per situation
//!   (missing `;` at the end of the previous token, unclosed delimiter with
//!   a label at the opener, unexpected token otherwise), exactly one per
//!   mistake, and none for tokens the lexer already reported.
//! - Keeping that bookkeeping in parser state would need an `Inspector`
//!   that rewinds it on every backtrack, for every alternative.
//!
//! A hand-written parser makes each of these decisions explicitly at the
//! point where the mistake is found, which is also what rust-analyzer, Gleam,
//! Ruff and Oxc do for the same reason.
//!
//! Recursion is bounded ([`MAX_NESTING`]) and so is the depth of expression
//! trees ([`MAX_EXPRESSION_DEPTH`]), so hostile input cannot overflow the
//! stack here or in later stages that walk the tree recursively.

use crate::ast::{
    BinOp, Block, ElseBranch, Expr, ExprId, ExprKind, FieldInit, FieldType, File, FnDecl, ForIter,
    Ident, Item, Param, Stmt, StmtKind, StrPart, TypeDecl, TypeExpr, TypeExprKind, UnaryOp,
};
use crate::codes;
use crate::diagnostics::Diagnostic;
use crate::lexer::{self, Token, TokenKind, span};
use crate::span::Span;

/// How deeply blocks, parentheses, types and prefix operators may nest.
pub const MAX_NESTING: u32 = 96;

/// How deep an expression tree may become (a long `a + b + c + …` chain is
/// as deep as it is long).
pub const MAX_EXPRESSION_DEPTH: u32 = 256;

/// The result of parsing one file: always a tree, plus every diagnostic of
/// the lexer and the parser, ordered by position.
#[derive(Clone, Debug, Default)]
pub struct Parsed {
    pub file: File,
    pub diagnostics: Vec<Diagnostic>,
}

impl Parsed {
    /// Whether the file has any error (warnings do not count).
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }
}

/// Parses one source file. Never fails: see the module documentation.
pub fn parse(source: &str) -> Parsed {
    let lexed = lexer::lex(source);
    let mut parser = Parser::new(source, lexed.tokens);
    let mut file = parser.parse_file();
    renumber_expressions(&mut file);
    let mut diagnostics = lexed.diagnostics;
    diagnostics.extend(parser.diagnostics);
    diagnostics.sort_by_key(|diagnostic| diagnostic.primary.span.start);
    diagnostics.dedup_by_key(|diagnostic| diagnostic.primary.span.start);
    Parsed { file, diagnostics }
}

/// Which list a comma-separated parse is reading; decides the closer and the
/// wording of messages.
#[derive(Clone, Copy)]
struct ListShape {
    close: &'static TokenKind,
    close_text: &'static str,
    open_text: &'static str,
}

const PARENS: ListShape = ListShape {
    close: &TokenKind::RParen,
    close_text: ")",
    open_text: "(",
};
const BRACKETS: ListShape = ListShape {
    close: &TokenKind::RBracket,
    close_text: "]",
    open_text: "[",
};
const BRACES: ListShape = ListShape {
    close: &TokenKind::RBrace,
    close_text: "}",
    open_text: "{",
};

struct Parser<'source> {
    source: &'source str,
    tokens: Vec<Token>,
    /// Returned by `current` past the end; the token list always ends with
    /// `Eof` anyway.
    eof: Token,
    position: usize,
    diagnostics: Vec<Diagnostic>,
    /// Set by the first error of a syntactic unit; further errors are
    /// dropped until the parser re-synchronises.
    panicking: bool,
    /// Current recursion depth (see [`MAX_NESTING`]).
    nesting: u32,
    /// The tree depth of every expression built so far, indexed by its
    /// provisional id.
    expression_depths: Vec<u32>,
}

impl<'source> Parser<'source> {
    fn new(source: &'source str, tokens: Vec<Token>) -> Parser<'source> {
        let end = span(source.len(), source.len());
        Parser {
            source,
            tokens,
            eof: Token {
                kind: TokenKind::Eof,
                span: end,
            },
            position: 0,
            diagnostics: Vec::new(),
            panicking: false,
            nesting: 0,
            expression_depths: Vec::new(),
        }
    }

    // ----- Token access -----

    fn current(&self) -> &Token {
        self.tokens.get(self.position).unwrap_or(&self.eof)
    }

    fn kind(&self) -> &TokenKind {
        &self.current().kind
    }

    fn peek_kind(&self, offset: usize) -> &TokenKind {
        self.tokens
            .get(self.position + offset)
            .map_or(&TokenKind::Eof, |token| &token.kind)
    }

    fn at(&self, kind: &TokenKind) -> bool {
        self.kind() == kind
    }

    fn at_eof(&self) -> bool {
        self.at(&TokenKind::Eof)
    }

    /// Consumes the current token and gives its span (the token itself
    /// stays readable through [`Parser::previous`]; cloning it here would
    /// copy every identifier's text once more).
    fn bump(&mut self) -> Span {
        let token = self.current();
        let span = token.span;
        if self.position < self.tokens.len() && token.kind != TokenKind::Eof {
            self.position += 1;
        }
        span
    }

    fn eat(&mut self, kind: &TokenKind) -> bool {
        if self.at(kind) {
            self.bump();
            true
        } else {
            false
        }
    }

    fn previous(&self) -> Option<&Token> {
        self.position
            .checked_sub(1)
            .and_then(|index| self.tokens.get(index))
    }

    /// The end of the last consumed token (the start of the file before any).
    fn previous_end(&self) -> u32 {
        self.previous().map_or(0, |token| token.span.end)
    }

    /// The span from `start` to the end of the last consumed token.
    fn span_from(&self, start: u32) -> Span {
        Span {
            start,
            end: self.previous_end().max(start),
        }
    }

    fn current_start(&self) -> u32 {
        self.current().span.start
    }

    /// Whether a line break separates the previous token from the current one.
    fn newline_before_current(&self) -> bool {
        let start = self.previous_end() as usize;
        let end = self.current_start() as usize;
        self.source
            .get(start..end)
            .is_some_and(|between| between.contains('\n'))
    }

    /// `fn name` or `type Name =`: the start of the next item.
    fn at_item_start(&self) -> bool {
        match self.kind() {
            TokenKind::Fn => matches!(self.peek_kind(1), TokenKind::Ident(_)),
            TokenKind::Type => {
                matches!(self.peek_kind(1), TokenKind::Ident(_))
                    && matches!(self.peek_kind(2), TokenKind::Eq)
            }
            _ => false,
        }
    }

    fn at_statement_keyword(&self) -> bool {
        use TokenKind::*;
        matches!(
            self.kind(),
            Let | Var | If | While | For | Break | Continue | Return | Throw | Try
        )
    }

    // ----- Diagnostics -----

    /// Whether a diagnostic at the current token would repeat a lexer error.
    fn near_lexer_error(&self) -> bool {
        self.at(&TokenKind::Error)
            || self
                .previous()
                .is_some_and(|token| token.kind == TokenKind::Error)
    }

    /// Records a diagnostic unless the parser is panicking, the mistake is a
    /// lexer error already reported, or a diagnostic exists at that position.
    fn report(&mut self, diagnostic: Diagnostic) {
        if self.panicking || self.near_lexer_error() {
            return;
        }
        let start = diagnostic.primary.span.start;
        if self
            .diagnostics
            .iter()
            .any(|existing| existing.primary.span.start == start)
        {
            return;
        }
        self.diagnostics.push(diagnostic);
    }

    /// Reports and enters panic mode.
    fn fail(&mut self, diagnostic: Diagnostic) {
        self.report(diagnostic);
        self.panicking = true;
    }

    /// "expected X, found Y" at the current token, entering panic mode.
    fn unexpected(&mut self, expected: &str) {
        self.unexpected_with_help(expected, None);
    }

    fn unexpected_with_help(&mut self, expected: &str, help: Option<&str>) {
        let token = self.current().clone();
        let found = token.describe(self.source);
        let mut diagnostic = Diagnostic::error(
            codes::UNEXPECTED_TOKEN,
            token.span,
            format!("expected {expected}, found {found}"),
        )
        .with_primary_label(format!("expected {expected}"));
        if let Some(help) = help {
            diagnostic = diagnostic.with_help(help);
        }
        self.fail(diagnostic);
    }

    /// Reports an opening delimiter at `open` that was never closed; the
    /// current token is where the closer was expected.
    fn unclosed(&mut self, open: Span, shape: ListShape) {
        let token = self.current().clone();
        let found = token.describe(self.source);
        let diagnostic = Diagnostic::error(
            codes::UNCLOSED_DELIMITER,
            token.span,
            format!(
                "unclosed `{}`: expected `{}`, found {found}",
                shape.open_text, shape.close_text
            ),
        )
        .with_primary_label(format!("expected `{}` before this", shape.close_text))
        .with_label(open, format!("this `{}` is never closed", shape.open_text));
        self.fail(diagnostic);
    }

    /// Whether the current token cannot be inside an unfinished list and
    /// so shows that its closing delimiter is missing.
    fn at_list_terminator(&self, shape: ListShape) -> bool {
        use TokenKind::*;
        let kind = self.kind();
        if kind == shape.close {
            return false;
        }
        matches!(
            kind,
            Eof | Semi | RParen | RBracket | RBrace | InterpEnd | StrEnd
        ) || self.at_statement_keyword()
            || self.at_item_start()
    }

    // ----- Recovery -----

    /// Skips tokens, keeping brackets balanced, until `stop` holds outside
    /// any bracket opened during the skip, or the end of the file.
    fn skip_until(&mut self, stop: impl Fn(&Parser) -> bool) {
        let mut depth = 0usize;
        while !self.at_eof() {
            if depth == 0 && stop(self) {
                return;
            }
            match self.kind() {
                TokenKind::LParen
                | TokenKind::LBracket
                | TokenKind::LBrace
                | TokenKind::InterpStart => depth += 1,
                TokenKind::RParen
                | TokenKind::RBracket
                | TokenKind::RBrace
                | TokenKind::InterpEnd => depth = depth.saturating_sub(1),
                _ => {}
            }
            self.bump();
        }
    }

    /// Re-synchronises after a broken statement: skips to its `;` (eaten),
    /// the `}` of the enclosing block, the next statement keyword or item.
    fn recover_statement(&mut self) {
        self.skip_until(|parser| {
            matches!(parser.kind(), TokenKind::Semi | TokenKind::RBrace)
                || parser.at_statement_keyword()
                || parser.at_item_start()
        });
        self.eat(&TokenKind::Semi);
        self.panicking = false;
    }

    /// Ends a simple statement: expects `;`, or recovers.
    fn end_statement(&mut self, after_expression: bool) {
        if self.panicking {
            self.recover_statement();
            return;
        }
        if self.eat(&TokenKind::Semi) {
            return;
        }
        let semicolon_was_forgotten = self.newline_before_current()
            || self.at_statement_keyword()
            || self.at_item_start()
            || matches!(self.kind(), TokenKind::RBrace | TokenKind::Eof);
        if semicolon_was_forgotten {
            let end = self.previous_end();
            let found = self.current().describe(self.source);
            self.report(
                Diagnostic::error(
                    codes::MISSING_SEMICOLON,
                    Span { start: end, end },
                    format!("expected `;` after the statement, found {found}"),
                )
                .with_primary_label("add `;` here"),
            );
            return;
        }
        let expected = if after_expression {
            "`;` or an operator"
        } else {
            "`;`"
        };
        self.unexpected(expected);
        self.recover_statement();
    }

    // ----- Nesting -----

    /// Enters one level of recursion; reports and returns false when the
    /// input nests too deeply.
    fn enter(&mut self) -> bool {
        if self.nesting >= MAX_NESTING {
            let token_span = self.current().span;
            self.fail(
                Diagnostic::error(
                    codes::UNEXPECTED_TOKEN,
                    token_span,
                    format!("the code nests more than {MAX_NESTING} levels deep here"),
                )
                .with_primary_label("nested too deeply")
                .with_help("split the expression or block into smaller parts"),
            );
            return false;
        }
        self.nesting += 1;
        true
    }

    fn leave(&mut self) {
        self.nesting = self.nesting.saturating_sub(1);
    }

    // ----- Items -----

    fn parse_file(&mut self) -> File {
        let mut items = Vec::new();
        while !self.at_eof() {
            self.panicking = false;
            match self.kind() {
                TokenKind::Fn => {
                    if let Some(item) = self.parse_fn() {
                        items.push(Item::Fn(item));
                    }
                }
                TokenKind::Type => {
                    if let Some(item) = self.parse_type_decl() {
                        items.push(Item::Type(item));
                    }
                }
                _ => self.not_an_item(),
            }
        }
        File { items }
    }

    /// Reports something other than `fn` / `type` at the top level and skips
    /// to the next item.
    fn not_an_item(&mut self) {
        let start = self.current_start();
        let found = self.current().describe(self.source);
        let quiet = self.near_lexer_error();
        let looks_like_statement = self.at_statement_keyword()
            || matches!(self.kind(), TokenKind::Ident(_) | TokenKind::LBrace);
        self.bump();
        self.skip_until(|parser| parser.at_named_item_keyword());
        if quiet {
            return;
        }
        let mut diagnostic = Diagnostic::error(
            codes::EXPECTED_ITEM,
            self.span_from(start),
            format!("expected `fn` or `type`, found {found}"),
        )
        .with_primary_label("only `fn` and `type` declarations may appear at the top level");
        if looks_like_statement {
            diagnostic = diagnostic
                .with_help("statements belong inside a function, such as `fn main() { ... }`");
        }
        self.report(diagnostic);
    }

    /// Skips a broken item up to the next `fn name` or `type Name` (a stray
    /// `fn` keyword without a name does not count: it was just reported).
    fn recover_item(&mut self) {
        self.skip_until(|parser| parser.at_named_item_keyword());
    }

    fn at_named_item_keyword(&self) -> bool {
        matches!(self.kind(), TokenKind::Fn | TokenKind::Type)
            && matches!(self.peek_kind(1), TokenKind::Ident(_))
    }

    fn parse_fn(&mut self) -> Option<FnDecl> {
        let start = self.bump().start;
        let Some(name) = self.expect_ident("a function name") else {
            self.recover_item();
            return None;
        };
        if !self.at(&TokenKind::LParen) {
            self.unexpected("`(` and the parameter list");
            self.recover_item();
            return None;
        }
        let open = self.bump();
        let params = self.parse_comma_list(open, PARENS, Parser::parse_param);
        let ret = if self.eat(&TokenKind::Arrow) {
            Some(self.parse_type())
        } else {
            None
        };
        if !self.at(&TokenKind::LBrace) {
            let expected = if ret.is_some() { "`{`" } else { "`->` or `{`" };
            self.unexpected(expected);
            self.recover_item();
            return None;
        }
        let body = self.parse_block();
        Some(FnDecl {
            name,
            params,
            ret,
            body,
            span: self.span_from(start),
        })
    }

    fn parse_param(&mut self) -> Option<Param> {
        let name = self.expect_ident("a parameter name")?;
        if !self.eat(&TokenKind::Colon) {
            self.unexpected_with_help(
                "`:` and the parameter's type",
                Some("parameters are written `name: type`"),
            );
            return None;
        }
        let ty = self.parse_type();
        let span = name.span.to(ty.span);
        Some(Param { name, ty, span })
    }

    fn parse_type_decl(&mut self) -> Option<TypeDecl> {
        let start = self.bump().start;
        let Some(name) = self.expect_ident("a type name") else {
            self.recover_item();
            return None;
        };
        if !self.eat(&TokenKind::Eq) {
            self.unexpected("`=`");
            self.recover_item();
            return None;
        }
        let ty = self.parse_type();
        // A `;` after a type declaration is tolerated.
        self.eat(&TokenKind::Semi);
        if self.panicking {
            self.recover_item();
        }
        Some(TypeDecl {
            name,
            ty,
            span: self.span_from(start),
        })
    }

    /// Reads a field or method name: an identifier or a keyword (`r.type`,
    /// `{ in: 1 }`), since data from other systems uses such keys.
    fn expect_field_name(&mut self, expected: &str) -> Option<Ident> {
        let token = self.current().clone();
        let keyword = token.kind.fixed_text().filter(|_| token.kind.is_keyword());
        if let Some(keyword) = keyword {
            self.bump();
            return Some(Ident {
                name: keyword.to_string(),
                span: token.span,
            });
        }
        self.expect_ident(expected)
    }

    /// Reads an identifier, or reports `expected` and returns `None`.
    fn expect_ident(&mut self, expected: &str) -> Option<Ident> {
        if let TokenKind::Ident(name) = self.kind() {
            let ident = Ident {
                name: name.clone(),
                span: self.current().span,
            };
            self.bump();
            return Some(ident);
        }
        let help = self
            .kind()
            .is_keyword()
            .then_some("keywords cannot be used as names");
        self.unexpected_with_help(expected, help);
        None
    }

    /// Parses `element, element, ...` up to the closing delimiter of `shape`
    /// (its opener at `open` already consumed). Broken elements are dropped;
    /// the list re-synchronises at `,` and at the closer.
    fn parse_comma_list<T>(
        &mut self,
        open: Span,
        shape: ListShape,
        mut element: impl FnMut(&mut Parser<'source>) -> Option<T>,
    ) -> Vec<T> {
        let mut elements = Vec::new();
        loop {
            if self.at(shape.close) {
                self.bump();
                // The list is closed: whatever went wrong inside is over.
                self.panicking = false;
                return elements;
            }
            if self.at_list_terminator(shape) {
                self.unclosed(open, shape);
                return elements;
            }
            let before = self.position;
            if let Some(value) = element(self) {
                elements.push(value);
            }
            if self.eat(&TokenKind::Comma) || self.at(shape.close) || self.at_list_terminator(shape)
            {
                continue;
            }
            if self.position == before || !self.panicking {
                self.unexpected(&format!("`,` or `{}`", shape.close_text));
            }
            self.skip_until(|parser| {
                parser.at(&TokenKind::Comma)
                    || parser.at(shape.close)
                    || parser.at_list_terminator(shape)
            });
            self.eat(&TokenKind::Comma);
        }
    }

    // ----- Types -----

    fn parse_type(&mut self) -> TypeExpr {
        let start = self.current_start();
        if !self.enter() {
            return TypeExpr {
                kind: TypeExprKind::Error,
                span: self.current().span,
            };
        }
        let kind = self.parse_type_kind();
        self.leave();
        let mut ty = TypeExpr {
            kind,
            span: self.span_from(start),
        };
        if !matches!(ty.kind, TypeExprKind::Error) && self.eat(&TokenKind::Question) {
            ty = TypeExpr {
                kind: TypeExprKind::Optional(Box::new(ty)),
                span: self.span_from(start),
            };
        }
        ty
    }

    fn parse_type_kind(&mut self) -> TypeExprKind {
        match self.kind().clone() {
            TokenKind::Ident(name) => {
                let ident = Ident {
                    name,
                    span: self.bump(),
                };
                let is_container = ident.name == "list" || ident.name == "map";
                if !(is_container && self.at(&TokenKind::Lt)) {
                    return TypeExprKind::Named(ident);
                }
                self.bump();
                let element = self.parse_type();
                if !self.eat(&TokenKind::Gt) {
                    self.unexpected(&format!("`>` to close `{}<...>`", ident.name));
                    return TypeExprKind::Error;
                }
                if ident.name == "list" {
                    TypeExprKind::List(Box::new(element))
                } else {
                    TypeExprKind::Map(Box::new(element))
                }
            }
            TokenKind::LBrace => {
                let open = self.bump();
                TypeExprKind::Record(self.parse_comma_list(open, BRACES, Parser::parse_field_type))
            }
            TokenKind::Error => {
                self.bump();
                TypeExprKind::Error
            }
            _ => {
                self.unexpected("a type");
                TypeExprKind::Error
            }
        }
    }

    fn parse_field_type(&mut self) -> Option<FieldType> {
        let name = self.expect_field_name("a field name")?;
        if !self.eat(&TokenKind::Colon) {
            self.unexpected("`:` and the field's type");
            return None;
        }
        let ty = self.parse_type();
        let span = name.span.to(ty.span);
        Some(FieldType { name, ty, span })
    }

    // ----- Statements -----

    /// Parses `{ statements }` (at its `{`).
    fn parse_block(&mut self) -> Block {
        let open = self.bump();
        // A `{` that opens a block is a synchronisation point.
        self.panicking = false;
        if !self.enter() {
            self.skip_until(|parser| parser.at(&TokenKind::RBrace));
            self.eat(&TokenKind::RBrace);
            return Block {
                stmts: Vec::new(),
                span: self.span_from(open.start),
            };
        }
        let mut stmts = Vec::new();
        loop {
            if self.eat(&TokenKind::RBrace) {
                break;
            }
            if self.at_eof() || self.at_item_start() {
                self.unclosed(open, BRACES);
                break;
            }
            let before = self.position;
            stmts.push(self.parse_statement());
            self.panicking = false;
            if self.position == before {
                self.bump();
            }
        }
        self.leave();
        Block {
            stmts,
            span: self.span_from(open.start),
        }
    }

    fn parse_statement(&mut self) -> Stmt {
        let start = self.current_start();
        let kind = match self.kind() {
            TokenKind::Let | TokenKind::Var => self.parse_let(),
            TokenKind::If => return self.parse_if(),
            TokenKind::While => self.parse_while(),
            TokenKind::For => self.parse_for(),
            TokenKind::Try => self.parse_try(),
            TokenKind::Break | TokenKind::Continue => {
                let kind = if self.at(&TokenKind::Break) {
                    StmtKind::Break
                } else {
                    StmtKind::Continue
                };
                self.bump();
                self.end_statement(false);
                kind
            }
            TokenKind::Return => {
                self.bump();
                let value = if matches!(self.kind(), TokenKind::Semi | TokenKind::RBrace) {
                    None
                } else {
                    Some(self.parse_expr())
                };
                self.end_statement(value.is_some());
                StmtKind::Return(value)
            }
            TokenKind::Throw => {
                self.bump();
                let value = self.parse_expr();
                self.end_statement(true);
                StmtKind::Throw(value)
            }
            TokenKind::LBrace if self.at_bare_block() => self.skip_bare_block(),
            _ if self.at_expression_start() => self.parse_expression_statement(),
            _ => {
                let help = match self.kind() {
                    TokenKind::Else => Some("`else` must follow the `}` of an `if`"),
                    TokenKind::Catch => Some("`catch` must follow the `}` of a `try`"),
                    _ => None,
                };
                self.unexpected_with_help("a statement", help);
                self.recover_statement();
                StmtKind::Error
            }
        };
        Stmt {
            kind,
            span: self.span_from(start),
        }
    }

    /// Whether a `{` at the start of a statement cannot be a record literal
    /// (it is not followed by `}` or by `key:`), so it was meant as a block.
    fn at_bare_block(&self) -> bool {
        match self.peek_kind(1) {
            TokenKind::RBrace | TokenKind::StrStart => false,
            TokenKind::Ident(_) => !matches!(self.peek_kind(2), TokenKind::Colon),
            _ => true,
        }
    }

    /// Reports a bare block `{ ... }` used as a statement and skips it whole.
    fn skip_bare_block(&mut self) -> StmtKind {
        let open = self.current().span;
        self.report(
            Diagnostic::error(
                codes::UNEXPECTED_TOKEN,
                open,
                "expected a statement, found `{`",
            )
            .with_primary_label("SCL has no bare blocks")
            .with_help(
                "a `{` at the start of a statement begins a record literal; \
                     remove the braces, or use `if`, `while` or `for`",
            ),
        );
        self.bump();
        self.skip_until(|parser| parser.at(&TokenKind::RBrace));
        self.eat(&TokenKind::RBrace);
        StmtKind::Error
    }

    fn at_expression_start(&self) -> bool {
        use TokenKind::*;
        matches!(
            self.kind(),
            Ident(_)
                | Int(_)
                | Float(_)
                | StrStart
                | True
                | False
                | Null
                | LParen
                | LBracket
                | LBrace
                | Minus
                | Bang
                | Error
        )
    }

    fn parse_let(&mut self) -> StmtKind {
        let mutable = self.at(&TokenKind::Var);
        self.bump();
        let Some(name) = self.expect_ident("a variable name") else {
            self.recover_statement();
            return StmtKind::Error;
        };
        let ty = if self.eat(&TokenKind::Colon) {
            Some(self.parse_type())
        } else {
            None
        };
        if !self.panicking && !self.eat(&TokenKind::Eq) {
            let expected = if ty.is_some() { "`=`" } else { "`:` or `=`" };
            self.unexpected_with_help(
                expected,
                Some("a variable needs an initial value: `let x = ...;`"),
            );
        }
        if self.panicking {
            self.recover_statement();
            return StmtKind::Error;
        }
        let init = self.parse_expr();
        self.end_statement(true);
        StmtKind::Let {
            mutable,
            name,
            ty,
            init,
        }
    }

    fn parse_expression_statement(&mut self) -> StmtKind {
        let target = self.parse_expr();
        let op = match self.kind() {
            TokenKind::Eq => Some(None),
            TokenKind::PlusEq => Some(Some(BinOp::Add)),
            TokenKind::MinusEq => Some(Some(BinOp::Sub)),
            TokenKind::StarEq => Some(Some(BinOp::Mul)),
            TokenKind::SlashEq => Some(Some(BinOp::Div)),
            TokenKind::PercentEq => Some(Some(BinOp::Rem)),
            _ => None,
        };
        let Some(op) = op else {
            self.end_statement(true);
            return StmtKind::Expr(target);
        };
        if self.panicking {
            self.recover_statement();
            return StmtKind::Expr(target);
        }
        self.bump();
        let value = self.parse_expr();
        let valid_target = matches!(
            target.kind,
            ExprKind::Name(_) | ExprKind::Index { .. } | ExprKind::Field { .. }
        );
        if !valid_target && !matches!(target.kind, ExprKind::Error) {
            self.report(
                Diagnostic::error(
                    codes::INVALID_ASSIGNMENT_TARGET,
                    target.span,
                    "invalid assignment target",
                )
                .with_primary_label("cannot assign to this expression")
                .with_help("only a variable, a field `r.f` or an element `xs[i]` / `m[k]` can be assigned to"),
            );
        }
        self.end_statement(true);
        if valid_target {
            StmtKind::Assign { target, op, value }
        } else {
            StmtKind::Error
        }
    }

    /// Parses the block of `if`, `while`, `for`, `try` or `catch`. When the
    /// `{` is missing, skips ahead to the next `{` on the same statement.
    fn parse_statement_block(&mut self) -> Option<Block> {
        if !self.at(&TokenKind::LBrace) {
            self.unexpected("`{`");
            self.skip_until(|parser| {
                matches!(
                    parser.kind(),
                    TokenKind::LBrace | TokenKind::Semi | TokenKind::RBrace
                ) || parser.at_statement_keyword()
                    || parser.at_item_start()
            });
            if !self.at(&TokenKind::LBrace) {
                self.recover_statement();
                return None;
            }
        }
        Some(self.parse_block())
    }

    fn parse_if(&mut self) -> Stmt {
        let start = self.bump().start;
        let cond = self.parse_expr();
        let Some(then_block) = self.parse_statement_block() else {
            return Stmt {
                kind: StmtKind::Error,
                span: self.span_from(start),
            };
        };
        let mut else_branch = None;
        if self.eat(&TokenKind::Else) {
            if self.at(&TokenKind::If) {
                if self.enter() {
                    else_branch = Some(Box::new(ElseBranch::If(self.parse_if())));
                    self.leave();
                } else {
                    self.recover_statement();
                }
            } else if let Some(block) = self.parse_statement_block() {
                else_branch = Some(Box::new(ElseBranch::Block(block)));
            }
        }
        Stmt {
            kind: StmtKind::If {
                cond,
                then_block,
                else_branch,
            },
            span: self.span_from(start),
        }
    }

    fn parse_while(&mut self) -> StmtKind {
        self.bump();
        let cond = self.parse_expr();
        match self.parse_statement_block() {
            Some(body) => StmtKind::While { cond, body },
            None => StmtKind::Error,
        }
    }

    fn parse_for(&mut self) -> StmtKind {
        self.bump();
        let Some(var) = self.expect_ident("a loop variable name") else {
            self.recover_statement();
            return StmtKind::Error;
        };
        if !self.eat(&TokenKind::In) {
            self.unexpected("`in`");
            self.recover_statement();
            return StmtKind::Error;
        }
        let first = self.parse_expr();
        let iter = if self.eat(&TokenKind::DotDot) {
            let end = self.parse_expr();
            ForIter::Range { start: first, end }
        } else {
            ForIter::Each(first)
        };
        match self.parse_statement_block() {
            Some(body) => StmtKind::For { var, iter, body },
            None => StmtKind::Error,
        }
    }

    fn parse_try(&mut self) -> StmtKind {
        self.bump();
        let Some(body) = self.parse_statement_block() else {
            return StmtKind::Error;
        };
        if !self.eat(&TokenKind::Catch) {
            self.unexpected_with_help("`catch`", Some("a `try` block needs `catch e { ... }`"));
            self.recover_statement();
            return StmtKind::Error;
        }
        let Some(catch_var) = self.expect_ident("the name of the caught error") else {
            self.recover_statement();
            return StmtKind::Error;
        };
        match self.parse_statement_block() {
            Some(handler) => StmtKind::Try {
                body,
                catch_var,
                handler,
            },
            None => StmtKind::Error,
        }
    }

    // ----- Expressions -----

    /// Builds an expression node, giving it a provisional id and checking
    /// the depth of the tree.
    fn make(&mut self, kind: ExprKind, span: Span) -> Expr {
        let depth = 1 + self.children_depth(&kind);
        if depth > MAX_EXPRESSION_DEPTH {
            self.fail(
                Diagnostic::error(
                    codes::UNEXPECTED_TOKEN,
                    span,
                    format!(
                        "this expression is nested more than {MAX_EXPRESSION_DEPTH} levels deep"
                    ),
                )
                .with_primary_label("expression too deep")
                .with_help("split it up with `let` bindings"),
            );
            return self.make(ExprKind::Error, span);
        }
        let id = ExprId(u32::try_from(self.expression_depths.len()).unwrap_or(u32::MAX));
        self.expression_depths.push(depth);
        Expr { id, kind, span }
    }

    fn depth_of(&self, expr: &Expr) -> u32 {
        self.expression_depths
            .get(expr.id.0 as usize)
            .copied()
            .unwrap_or(0)
    }

    fn children_depth(&self, kind: &ExprKind) -> u32 {
        let deepest = |exprs: &mut dyn Iterator<Item = &Expr>| {
            exprs.map(|expr| self.depth_of(expr)).max().unwrap_or(0)
        };
        match kind {
            ExprKind::Int(_)
            | ExprKind::Float(_)
            | ExprKind::Bool(_)
            | ExprKind::Null
            | ExprKind::Name(_)
            | ExprKind::Error => 0,
            ExprKind::Str(parts) => deepest(&mut parts.iter().filter_map(|part| match part {
                StrPart::Interp(expr) => Some(expr),
                StrPart::Text(_) => None,
            })),
            ExprKind::List(elements) => deepest(&mut elements.iter()),
            ExprKind::Record(fields) => deepest(&mut fields.iter().map(|field| &field.value)),
            ExprKind::Field { base, .. } => self.depth_of(base),
            ExprKind::Index { base, index } => self.depth_of(base).max(self.depth_of(index)),
            ExprKind::Call { args, .. } => deepest(&mut args.iter()),
            ExprKind::MethodCall { receiver, args, .. } => {
                self.depth_of(receiver).max(deepest(&mut args.iter()))
            }
            ExprKind::Unary { operand, .. } => self.depth_of(operand),
            ExprKind::Binary { lhs, rhs, .. } => self.depth_of(lhs).max(self.depth_of(rhs)),
            ExprKind::As { expr, .. } => self.depth_of(expr),
        }
    }

    fn error_expr(&mut self, span: Span) -> Expr {
        self.make(ExprKind::Error, span)
    }

    fn parse_expr(&mut self) -> Expr {
        if !self.enter() {
            let token_span = self.current().span;
            return self.error_expr(token_span);
        }
        let expr = self.parse_coalesce();
        self.leave();
        expr
    }

    /// `a ?? b ?? c` is `a ?? (b ?? c)`.
    fn parse_coalesce(&mut self) -> Expr {
        let mut operands = vec![self.parse_binary(0)];
        while self.at(&TokenKind::QuestionQuestion) {
            self.bump();
            operands.push(self.parse_binary(0));
        }
        let mut result = operands.pop();
        while let Some(lhs) = operands.pop() {
            let Some(rhs) = result.take() else { break };
            let span = lhs.span.to(rhs.span);
            let kind = ExprKind::Binary {
                op: BinOp::Coalesce,
                lhs: Box::new(lhs),
                rhs: Box::new(rhs),
            };
            result = Some(self.make(kind, span));
        }
        match result {
            Some(expr) => expr,
            None => {
                let token_span = self.current().span;
                self.error_expr(token_span)
            }
        }
    }

    /// The binary operators from `||` (level 0) to `* / %` (level 5), all
    /// left-associative.
    fn binary_operator(&self, level: usize) -> Option<BinOp> {
        use TokenKind::*;
        let op = match (level, self.kind()) {
            (0, OrOr) => BinOp::Or,
            (1, AndAnd) => BinOp::And,
            (2, EqEq) => BinOp::Eq,
            (2, NotEq) => BinOp::Ne,
            (3, Lt) => BinOp::Lt,
            (3, Le) => BinOp::Le,
            (3, Gt) => BinOp::Gt,
            (3, Ge) => BinOp::Ge,
            (4, Plus) => BinOp::Add,
            (4, Minus) => BinOp::Sub,
            (5, Star) => BinOp::Mul,
            (5, Slash) => BinOp::Div,
            (5, Percent) => BinOp::Rem,
            _ => return None,
        };
        Some(op)
    }

    fn parse_binary(&mut self, level: usize) -> Expr {
        if level > 5 {
            return self.parse_cast();
        }
        let mut lhs = self.parse_binary(level + 1);
        while let Some(op) = self.binary_operator(level) {
            self.bump();
            let rhs = self.parse_binary(level + 1);
            let span = lhs.span.to(rhs.span);
            lhs = self.make(
                ExprKind::Binary {
                    op,
                    lhs: Box::new(lhs),
                    rhs: Box::new(rhs),
                },
                span,
            );
        }
        lhs
    }

    /// `expr as T`, binding tighter than binary operators and looser than
    /// prefix operators.
    fn parse_cast(&mut self) -> Expr {
        let mut expr = self.parse_unary();
        while self.eat(&TokenKind::As) {
            let ty = self.parse_type();
            let span = expr.span.to(ty.span);
            expr = self.make(
                ExprKind::As {
                    expr: Box::new(expr),
                    ty,
                },
                span,
            );
        }
        expr
    }

    fn parse_unary(&mut self) -> Expr {
        let op = match self.kind() {
            TokenKind::Minus => UnaryOp::Neg,
            TokenKind::Bang => UnaryOp::Not,
            _ => return self.parse_postfix(),
        };
        let start = self.bump().start;
        if !self.enter() {
            let token_span = self.current().span;
            return self.error_expr(token_span);
        }
        let operand = self.parse_unary();
        self.leave();
        let span = Span {
            start,
            end: operand.span.end.max(start),
        };
        self.make(
            ExprKind::Unary {
                op,
                operand: Box::new(operand),
            },
            span,
        )
    }

    fn parse_postfix(&mut self) -> Expr {
        let mut expr = self.parse_primary();
        loop {
            match self.kind() {
                TokenKind::Dot => {
                    self.bump();
                    let Some(name) = self.expect_field_name("a field or method name after `.`")
                    else {
                        return expr;
                    };
                    if self.at(&TokenKind::LParen) {
                        let open = self.bump();
                        let args =
                            self.parse_comma_list(open, PARENS, |parser| Some(parser.parse_expr()));
                        let span = self.span_from(expr.span.start);
                        let kind = ExprKind::MethodCall {
                            receiver: Box::new(expr),
                            method: name,
                            args,
                        };
                        expr = self.make(kind, span);
                    } else {
                        let span = expr.span.to(name.span);
                        expr = self.make(
                            ExprKind::Field {
                                base: Box::new(expr),
                                field: name,
                            },
                            span,
                        );
                    }
                }
                TokenKind::LBracket => {
                    let open = self.bump();
                    let index = self.parse_expr();
                    if !self.eat(&TokenKind::RBracket) {
                        if self.at_list_terminator(BRACKETS) {
                            self.unclosed(open, BRACKETS);
                        } else {
                            self.unexpected("`]` or an operator");
                            self.skip_until(|parser| {
                                parser.at(&TokenKind::RBracket)
                                    || parser.at_list_terminator(BRACKETS)
                            });
                            if self.eat(&TokenKind::RBracket) {
                                self.panicking = false;
                            }
                        }
                    }
                    let span = self.span_from(expr.span.start);
                    expr = self.make(
                        ExprKind::Index {
                            base: Box::new(expr),
                            index: Box::new(index),
                        },
                        span,
                    );
                }
                TokenKind::LParen => {
                    let open = self.bump();
                    let args =
                        self.parse_comma_list(open, PARENS, |parser| Some(parser.parse_expr()));
                    let span = self.span_from(expr.span.start);
                    expr = match expr.kind {
                        ExprKind::Name(callee) => self.make(ExprKind::Call { callee, args }, span),
                        ExprKind::Error => self.error_expr(span),
                        _ => {
                            self.report(
                                Diagnostic::error(
                                    codes::UNEXPECTED_TOKEN,
                                    open,
                                    "only a function name can be called here",
                                )
                                .with_primary_label("this call's callee is not a name")
                                .with_help("functions are not values in SCL: call them by name, as in `f(x)` or `x.method(y)`"),
                            );
                            self.error_expr(span)
                        }
                    };
                }
                _ => return expr,
            }
        }
    }

    fn parse_primary(&mut self) -> Expr {
        let span = self.current().span;
        let literal = match self.kind() {
            TokenKind::Int(value) => Some(ExprKind::Int(*value)),
            TokenKind::Float(value) => Some(ExprKind::Float(*value)),
            TokenKind::True => Some(ExprKind::Bool(true)),
            TokenKind::False => Some(ExprKind::Bool(false)),
            TokenKind::Null => Some(ExprKind::Null),
            TokenKind::Ident(name) => Some(ExprKind::Name(Ident {
                name: name.clone(),
                span,
            })),
            // The lexer reported it already.
            TokenKind::Error => Some(ExprKind::Error),
            _ => None,
        };
        if let Some(kind) = literal {
            self.bump();
            return self.make(kind, span);
        }
        match self.kind() {
            TokenKind::StrStart => self.parse_string(),
            TokenKind::LParen => {
                let open = self.bump();
                let inner = self.parse_expr();
                if !self.eat(&TokenKind::RParen) {
                    if self.at_list_terminator(PARENS) {
                        self.unclosed(open, PARENS);
                    } else {
                        self.unexpected("`)` or an operator");
                        self.skip_until(|parser| {
                            parser.at(&TokenKind::RParen) || parser.at_list_terminator(PARENS)
                        });
                        if self.eat(&TokenKind::RParen) {
                            self.panicking = false;
                        }
                    }
                }
                inner
            }
            TokenKind::LBracket => {
                let open = self.bump();
                let elements =
                    self.parse_comma_list(open, BRACKETS, |parser| Some(parser.parse_expr()));
                let span = self.span_from(open.start);
                self.make(ExprKind::List(elements), span)
            }
            TokenKind::LBrace => {
                let open = self.bump();
                let fields = self.parse_comma_list(open, BRACES, Parser::parse_field_init);
                let span = self.span_from(open.start);
                self.make(ExprKind::Record(fields), span)
            }
            _ => {
                self.unexpected("an expression");
                self.error_expr(span)
            }
        }
    }

    fn parse_field_init(&mut self) -> Option<FieldInit> {
        let name = match self.kind().clone() {
            TokenKind::Ident(name) => Ident {
                name,
                span: self.bump(),
            },
            TokenKind::StrStart => self.parse_string_key()?,
            _ => self.expect_field_name("a field name")?,
        };
        if !self.eat(&TokenKind::Colon) {
            self.unexpected("`:` and the field's value");
            return None;
        }
        let value = self.parse_expr();
        let span = name.span.to(value.span);
        Some(FieldInit { name, value, span })
    }

    /// A quoted record key: a string without interpolation.
    fn parse_string_key(&mut self) -> Option<Ident> {
        let key = self.parse_string();
        let ExprKind::Str(parts) = key.kind else {
            return None;
        };
        let mut name = String::new();
        for part in parts {
            match part {
                StrPart::Text(text) => name.push_str(&text),
                StrPart::Interp(expr) => {
                    self.report(
                        Diagnostic::error(
                            codes::UNEXPECTED_TOKEN,
                            expr.span,
                            "a record key cannot be interpolated",
                        )
                        .with_primary_label("interpolation in a key")
                        .with_help(
                            "write the key as plain text, or build a `map` with `m[key] = value`",
                        ),
                    );
                }
            }
        }
        Some(Ident {
            name,
            span: key.span,
        })
    }

    /// Parses a string literal at its `StrStart`.
    fn parse_string(&mut self) -> Expr {
        let start = self.bump().start;
        let mut parts = Vec::new();
        loop {
            match self.kind().clone() {
                TokenKind::StrText(text) => {
                    self.bump();
                    parts.push(StrPart::Text(text));
                }
                TokenKind::InterpStart => {
                    self.bump();
                    let expr = self.parse_expr();
                    if !self.at(&TokenKind::InterpEnd) {
                        self.unexpected("`}` to end the interpolation, or an operator");
                        self.skip_until(|parser| {
                            matches!(parser.kind(), TokenKind::InterpEnd | TokenKind::StrEnd)
                        });
                    }
                    if self.eat(&TokenKind::InterpEnd) {
                        self.panicking = false;
                    }
                    parts.push(StrPart::Interp(expr));
                }
                TokenKind::StrEnd | TokenKind::Error => {
                    // `Error` is an unterminated string, reported by the lexer.
                    self.bump();
                    break;
                }
                _ => break,
            }
        }
        if parts.is_empty() {
            parts.push(StrPart::Text(String::new()));
        }
        let span = self.span_from(start);
        self.make(ExprKind::Str(parts), span)
    }
}

/// Gives every expression its final id: 0, 1, 2, … in pre-order (a parent
/// before its children, children in source order).
fn renumber_expressions(file: &mut File) {
    let mut next = 0u32;
    for item in &mut file.items {
        if let Item::Fn(function) = item {
            renumber_block(&mut function.body, &mut next);
        }
    }
}

fn renumber_block(block: &mut Block, next: &mut u32) {
    for stmt in &mut block.stmts {
        renumber_stmt(stmt, next);
    }
}

fn renumber_stmt(stmt: &mut Stmt, next: &mut u32) {
    match &mut stmt.kind {
        StmtKind::Let { init, .. } => renumber_expr(init, next),
        StmtKind::Assign { target, value, .. } => {
            renumber_expr(target, next);
            renumber_expr(value, next);
        }
        StmtKind::Expr(expr) | StmtKind::Throw(expr) | StmtKind::Return(Some(expr)) => {
            renumber_expr(expr, next);
        }
        StmtKind::If {
            cond,
            then_block,
            else_branch,
        } => {
            renumber_expr(cond, next);
            renumber_block(then_block, next);
            match else_branch.as_deref_mut() {
                Some(ElseBranch::If(stmt)) => renumber_stmt(stmt, next),
                Some(ElseBranch::Block(block)) => renumber_block(block, next),
                None => {}
            }
        }
        StmtKind::While { cond, body } => {
            renumber_expr(cond, next);
            renumber_block(body, next);
        }
        StmtKind::For { iter, body, .. } => {
            match iter {
                ForIter::Range { start, end } => {
                    renumber_expr(start, next);
                    renumber_expr(end, next);
                }
                ForIter::Each(expr) => renumber_expr(expr, next),
            }
            renumber_block(body, next);
        }
        StmtKind::Try { body, handler, .. } => {
            renumber_block(body, next);
            renumber_block(handler, next);
        }
        StmtKind::Break | StmtKind::Continue | StmtKind::Return(None) | StmtKind::Error => {}
    }
}

fn renumber_expr(expr: &mut Expr, next: &mut u32) {
    expr.id = ExprId(*next);
    *next = next.saturating_add(1);
    match &mut expr.kind {
        ExprKind::Int(_)
        | ExprKind::Float(_)
        | ExprKind::Bool(_)
        | ExprKind::Null
        | ExprKind::Name(_)
        | ExprKind::Error => {}
        ExprKind::Str(parts) => {
            for part in parts {
                if let StrPart::Interp(inner) = part {
                    renumber_expr(inner, next);
                }
            }
        }
        ExprKind::List(elements) | ExprKind::Call { args: elements, .. } => {
            for element in elements {
                renumber_expr(element, next);
            }
        }
        ExprKind::Record(fields) => {
            for field in fields {
                renumber_expr(&mut field.value, next);
            }
        }
        ExprKind::Field { base, .. } => renumber_expr(base, next),
        ExprKind::Index { base, index } => {
            renumber_expr(base, next);
            renumber_expr(index, next);
        }
        ExprKind::MethodCall { receiver, args, .. } => {
            renumber_expr(receiver, next);
            for arg in args {
                renumber_expr(arg, next);
            }
        }
        ExprKind::Unary { operand, .. } => renumber_expr(operand, next),
        ExprKind::Binary { lhs, rhs, .. } => {
            renumber_expr(lhs, next);
            renumber_expr(rhs, next);
        }
        ExprKind::As { expr: inner, .. } => renumber_expr(inner, next),
    }
}
