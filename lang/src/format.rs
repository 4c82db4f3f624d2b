//! `scl fmt`: the one canonical layout of SCL source.
//!
//! Stage: source text → source text, on top of the parser; pure (no I/O).
//!
//! What it promises:
//! - **One layout.** The output depends only on the syntax tree, the
//!   comments and where the source had blank lines: 4-space indentation, one
//!   statement per line, every block broken over lines (except an empty
//!   `{}`), spaces around binary operators, `{ a: 1 }` records, `[1, 2]`
//!   lists, lines of at most [`WIDTH`] columns where a break is possible
//!   (argument lists, lists, records and operator chains break, with a
//!   trailing comma when broken), at most one blank line between statements
//!   and items, one blank line around every function, a final newline.
//!   Parentheses are the ones precedence needs (the tree does not keep
//!   parentheses); literals and strings are written as in the source.
//! - **Idempotent**: formatting formatted text changes nothing.
//! - **Comments are kept**, in their order: a comment on the line of the
//!   code before it stays at the end of that line; a comment on its own line
//!   stays on its own line before the code that follows it.
//! - **Meaning is kept**: [`format`] re-parses its output and compares the
//!   syntax trees ([`crate::ast::dump`]) and the comments; should they ever
//!   differ (a bug), it returns the source unchanged rather than change a
//!   script. [`format_unverified`] skips that check, for tests of the
//!   printer itself.
//! - A file with syntax errors is not formatted: its diagnostics come back.
//!
//! How: the parser's tree gives the structure; the token list (with
//! [`crate::lexer::comments`]) gives every comment a place, before or after
//! a token. The formatter walks the tree in source order, emitting each
//! token through a cursor over the token list, and every comment is printed
//! with the token it belongs to (or with the next printed one, when its
//! token is not printed: a redundant parenthesis, a trailing comma). The
//! layout itself is a [`doc::Doc`] printed by a Wadler-style printer.

mod doc;

use std::mem;

use crate::ast::{
    BinOp, Block, ElseBranch, Expr, ExprKind, File, FnDecl, ForIter, Ident, Item, Stmt, StmtKind,
    TypeDecl, TypeExpr, TypeExprKind, UnaryOp,
};
use crate::diagnostics::Diagnostic;
use crate::lexer::{self, Comment, Token, TokenKind};
use crate::parser::parse;
use crate::span::Span;
use doc::Doc;

/// The line width the formatter aims for.
pub const WIDTH: usize = 100;

/// Formats a whole file, or returns its syntax errors. See the module
/// documentation for what the layout is and what is guaranteed.
pub fn format(source: &str) -> Result<String, Vec<Diagnostic>> {
    let formatted = format_unverified(source)?;
    match equivalent(source, &formatted) {
        Ok(()) => Ok(formatted),
        // Never change a script's meaning: a formatter bug leaves the text alone.
        Err(_) => Ok(source.to_string()),
    }
}

/// [`format`] without the final check that the output means the same.
pub fn format_unverified(source: &str) -> Result<String, Vec<Diagnostic>> {
    let parsed = parse(source);
    if parsed.has_errors() {
        return Err(parsed
            .diagnostics
            .into_iter()
            .filter(Diagnostic::is_error)
            .collect());
    }
    let tokens = lexer::lex(source).tokens;
    let comments = lexer::comments(source, &tokens);
    let mut formatter = Formatter::new(source, &tokens, &comments);
    let doc = formatter.file(&parsed.file);
    let printed = doc::print(&doc, WIDTH);
    let trimmed = printed.trim_end();
    if trimmed.is_empty() {
        return Ok(String::new());
    }
    Ok(format!("{trimmed}\n"))
}

/// Checks that `after` parses to the same syntax tree as `before` and keeps
/// its comments in order (trailing white space aside); the error says what
/// differs.
pub fn equivalent(before: &str, after: &str) -> Result<(), String> {
    let parsed_before = parse(before);
    let parsed_after = parse(after);
    if let Some(error) = parsed_after.diagnostics.iter().find(|d| d.is_error()) {
        return Err(format!(
            "the formatted text does not parse: {}",
            error.message
        ));
    }
    let dump_before = crate::ast::dump(&parsed_before.file);
    let dump_after = crate::ast::dump(&parsed_after.file);
    if dump_before != dump_after {
        return Err(format!(
            "the formatted text has a different syntax tree:\n{dump_before}\n---\n{dump_after}"
        ));
    }
    let comments_before = comment_texts(before);
    let comments_after = comment_texts(after);
    if comments_before != comments_after {
        return Err(format!(
            "the formatted text has different comments: {comments_before:?} became {comments_after:?}"
        ));
    }
    Ok(())
}

fn comment_texts(source: &str) -> Vec<String> {
    let tokens = lexer::lex(source).tokens;
    lexer::comments(source, &tokens)
        .iter()
        .map(|comment| {
            source
                .get(comment.span.range())
                .unwrap_or("")
                .trim_end()
                .to_string()
        })
        .collect()
}

/// Binding strength of an expression, for deciding where parentheses are
/// needed: a child binding less tightly than its place needs them.
mod precedence {
    pub(super) const COALESCE: u8 = 1;
    pub(super) const OR: u8 = 2;
    pub(super) const AND: u8 = 3;
    pub(super) const EQUALITY: u8 = 4;
    pub(super) const COMPARISON: u8 = 5;
    pub(super) const ADDITIVE: u8 = 6;
    pub(super) const MULTIPLICATIVE: u8 = 7;
    pub(super) const AS: u8 = 8;
    pub(super) const UNARY: u8 = 9;
    pub(super) const POSTFIX: u8 = 10;
}

fn binary_precedence(op: BinOp) -> u8 {
    use precedence::*;
    match op {
        BinOp::Coalesce => COALESCE,
        BinOp::Or => OR,
        BinOp::And => AND,
        BinOp::Eq | BinOp::Ne => EQUALITY,
        BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge => COMPARISON,
        BinOp::Add | BinOp::Sub => ADDITIVE,
        BinOp::Mul | BinOp::Div | BinOp::Rem => MULTIPLICATIVE,
    }
}

fn expr_precedence(expr: &Expr) -> u8 {
    match &expr.kind {
        ExprKind::Binary { op, .. } => binary_precedence(*op),
        ExprKind::As { .. } => precedence::AS,
        ExprKind::Unary { .. } => precedence::UNARY,
        _ => precedence::POSTFIX,
    }
}

fn binary_token(op: BinOp) -> TokenKind {
    match op {
        BinOp::Add => TokenKind::Plus,
        BinOp::Sub => TokenKind::Minus,
        BinOp::Mul => TokenKind::Star,
        BinOp::Div => TokenKind::Slash,
        BinOp::Rem => TokenKind::Percent,
        BinOp::Eq => TokenKind::EqEq,
        BinOp::Ne => TokenKind::NotEq,
        BinOp::Lt => TokenKind::Lt,
        BinOp::Le => TokenKind::Le,
        BinOp::Gt => TokenKind::Gt,
        BinOp::Ge => TokenKind::Ge,
        BinOp::And => TokenKind::AndAnd,
        BinOp::Or => TokenKind::OrOr,
        BinOp::Coalesce => TokenKind::QuestionQuestion,
    }
}

fn assignment_token(op: Option<BinOp>) -> (TokenKind, &'static str) {
    match op {
        None => (TokenKind::Eq, "="),
        Some(BinOp::Add) => (TokenKind::PlusEq, "+="),
        Some(BinOp::Sub) => (TokenKind::MinusEq, "-="),
        Some(BinOp::Mul) => (TokenKind::StarEq, "*="),
        Some(BinOp::Div) => (TokenKind::SlashEq, "/="),
        Some(_) => (TokenKind::PercentEq, "%="),
    }
}

fn same_kind(a: &TokenKind, b: &TokenKind) -> bool {
    mem::discriminant(a) == mem::discriminant(b)
}

struct Formatter<'a> {
    source: &'a str,
    tokens: &'a [Token],
    comments: &'a [Comment],
    /// Per token: the comments before it (on lines of their own, or after
    /// other comments).
    leading: Vec<Vec<usize>>,
    /// Per token: the comments after it on its line.
    trailing: Vec<Vec<usize>>,
    /// Per comment: line breaks between it and what precedes it.
    newlines_before: Vec<usize>,
    /// Per comment: line breaks between it and what follows it.
    newlines_after: Vec<usize>,
    /// The next token not yet printed or skipped.
    cursor: usize,
    /// Comments of skipped tokens, printed before the next printed token.
    carried: Vec<usize>,
}

impl<'a> Formatter<'a> {
    fn new(source: &'a str, tokens: &'a [Token], comments: &'a [Comment]) -> Formatter<'a> {
        let mut leading = vec![Vec::new(); tokens.len()];
        let mut trailing = vec![Vec::new(); tokens.len()];
        let mut newlines_before = Vec::with_capacity(comments.len());
        let mut newlines_after = Vec::with_capacity(comments.len());
        let count_newlines = |start: u32, end: u32| {
            source
                .get(start as usize..end as usize)
                .map_or(0, |gap| gap.matches('\n').count())
        };
        for (index, comment) in comments.iter().enumerate() {
            // The first token after the comment, and the last one before it.
            let next = tokens.partition_point(|token| token.span.start < comment.span.end);
            let previous = next.checked_sub(1);
            let previous_end = previous.map_or(0, |p| tokens[p].span.end);
            let before_end = match index.checked_sub(1).map(|i| comments[i].span.end) {
                Some(end) if end > previous_end => end,
                _ => previous_end,
            };
            newlines_before.push(count_newlines(before_end, comment.span.start));
            let next_start = tokens
                .get(next)
                .map_or(source.len() as u32, |t| t.span.start);
            let after_start = match comments.get(index + 1).map(|c| c.span.start) {
                Some(start) if start < next_start => start,
                _ => next_start,
            };
            newlines_after.push(count_newlines(comment.span.end, after_start));
            match previous {
                Some(p) if count_newlines(previous_end, comment.span.start) == 0 => {
                    trailing[p].push(index);
                }
                _ => {
                    if let Some(list) = leading.get_mut(next.min(tokens.len().saturating_sub(1))) {
                        list.push(index);
                    }
                }
            }
        }
        Formatter {
            source,
            tokens,
            comments,
            leading,
            trailing,
            newlines_before,
            newlines_after,
            cursor: 0,
            carried: Vec::new(),
        }
    }

    fn text_of(&self, span: Span) -> &'a str {
        self.source.get(span.range()).unwrap_or("")
    }

    // ----- Tokens and comments -----

    /// The token that starts at `offset`.
    fn index_at(&self, offset: u32) -> Option<usize> {
        let index = self
            .tokens
            .partition_point(|token| token.span.start < offset);
        self.tokens
            .get(index)
            .filter(|token| token.span.start == offset && token.kind != TokenKind::Eof)
            .map(|_| index)
    }

    /// The next token of this kind at or after the cursor.
    fn find_kind(&self, kind: &TokenKind) -> Option<usize> {
        (self.cursor..self.tokens.len()).find(|&index| same_kind(&self.tokens[index].kind, kind))
    }

    /// Takes the comments to print before token `index`: those of the
    /// tokens skipped since the cursor, and its own leading ones.
    fn take_before(&mut self, index: usize) -> Vec<usize> {
        if index < self.cursor {
            return Vec::new();
        }
        for skipped in self.cursor..index {
            let leading = mem::take(&mut self.leading[skipped]);
            self.carried.extend(leading);
            let trailing = mem::take(&mut self.trailing[skipped]);
            self.carried.extend(trailing);
        }
        self.cursor = index;
        let mut ids = mem::take(&mut self.carried);
        ids.extend(mem::take(&mut self.leading[index]));
        ids
    }

    /// The comments after token `index` on its line.
    fn trailing_doc(&mut self, index: usize) -> Doc {
        let ids = self
            .trailing
            .get_mut(index)
            .map(mem::take)
            .unwrap_or_default();
        let mut parts = Vec::new();
        for id in ids {
            let comment = self.comments[id];
            let text = self.text_of(comment.span).trim_end();
            parts.push(Doc::Space);
            parts.push(Doc::text(text));
            if !comment.block {
                // Whatever follows goes on the next line.
                parts.push(Doc::LineStart);
            }
        }
        Doc::Concat(parts)
    }

    /// A run of comments printed before something. `blank_first` allows a
    /// blank line before the first one (as in the source); `separate_after`
    /// ends the run with the break (or space) the source had before the
    /// code that follows, else the caller breaks the line.
    fn comment_run(&self, ids: &[usize], blank_first: bool, separate_after: bool) -> Doc {
        let mut parts = Vec::new();
        for (position, &id) in ids.iter().enumerate() {
            let comment = self.comments[id];
            let newlines = self.newlines_before[id];
            if newlines > 0 {
                parts.push(Doc::LineStart);
                if newlines > 1 && (position > 0 || blank_first) {
                    parts.push(Doc::Hard);
                }
            } else {
                parts.push(Doc::Space);
            }
            parts.push(Doc::text(self.text_of(comment.span).trim_end()));
            let last = position + 1 == ids.len();
            if !comment.block {
                parts.push(Doc::LineStart);
            }
            if last && separate_after {
                let after = self.newlines_after[id];
                if after > 0 {
                    parts.push(Doc::LineStart);
                    if after > 1 {
                        parts.push(Doc::Hard);
                    }
                } else {
                    parts.push(Doc::Space);
                }
            }
        }
        Doc::Concat(parts)
    }

    /// Prints token `index` as `text`, with its comments.
    fn token(&mut self, index: usize, text: Doc) -> Doc {
        if index < self.cursor {
            return text;
        }
        let before = self.take_before(index);
        let run = self.comment_run(&before, false, true);
        self.cursor = index + 1;
        let trailing = self.trailing_doc(index);
        Doc::Concat(vec![run, text, trailing])
    }

    /// Prints the token starting at `offset`.
    fn at(&mut self, offset: u32, text: &str) -> Doc {
        match self.index_at(offset) {
            Some(index) => self.token(index, Doc::text(text)),
            None => Doc::text(text),
        }
    }

    /// Prints the next token of kind `kind`.
    fn kind(&mut self, kind: &TokenKind, text: &str) -> Doc {
        match self.find_kind(kind) {
            Some(index) => self.token(index, Doc::text(text)),
            None => Doc::text(text),
        }
    }

    /// An identifier as written.
    fn ident(&mut self, ident: &Ident) -> Doc {
        let text = self.text_of(ident.span);
        let text = if text.is_empty() {
            ident.name.as_str()
        } else {
            text
        };
        self.at(ident.span.start, text)
    }

    /// A record key: an identifier, a keyword, or a quoted string.
    fn key(&mut self, ident: &Ident) -> Doc {
        if self.text_of(ident.span).starts_with('"') {
            self.verbatim(ident.span)
        } else {
            self.ident(ident)
        }
    }

    /// Prints the source text of `span` as it is (literals, strings); the
    /// comments inside it are part of that text.
    fn verbatim(&mut self, span: Span) -> Doc {
        let text = self.text_of(span);
        let Some(first) = self.index_at(span.start) else {
            return Doc::text(text);
        };
        let end = self
            .tokens
            .partition_point(|token| token.span.start < span.end);
        let last = end.saturating_sub(1).max(first);
        let before = self.take_before(first);
        let run = self.comment_run(&before, false, true);
        for inside in first..=last {
            if inside > first {
                self.leading[inside].clear();
            }
            if inside < last {
                self.trailing[inside].clear();
            }
        }
        self.cursor = last + 1;
        let trailing = self.trailing_doc(last);
        Doc::Concat(vec![run, Doc::text(text), trailing])
    }

    /// Prints a closing delimiter: the comments before it (to go inside the
    /// indented part) and the delimiter itself.
    fn close(&mut self, index: Option<usize>, text: &str, after_content: bool) -> (Doc, Doc) {
        let Some(index) = index else {
            return (Doc::nil(), Doc::text(text));
        };
        let before = self.take_before(index);
        let inner = if before.is_empty() {
            Doc::nil()
        } else {
            self.comment_run(&before, after_content, false)
        };
        if index >= self.cursor {
            self.cursor = index + 1;
        }
        let trailing = self.trailing_doc(index);
        (inner, Doc::Concat(vec![Doc::text(text), trailing]))
    }

    /// The closing token of kind `kind` that starts at `offset`, else the next one.
    fn closer(&self, offset: u32, kind: &TokenKind) -> Option<usize> {
        self.index_at(offset)
            .filter(|&index| same_kind(&self.tokens[index].kind, kind))
            .or_else(|| self.find_kind(kind))
    }

    /// Whether the source has a blank line between `end` and the start of
    /// the code at `start` (or of the comments leading it).
    fn blank_line_between(&self, end: u32, start: u32) -> bool {
        let comments_start = self
            .index_at(start)
            .and_then(|index| self.leading[index].first())
            .map_or(start, |&id| self.comments[id].span.start);
        let stop = comments_start.min(start).max(end);
        self.source
            .get(end as usize..stop as usize)
            .is_some_and(|gap| gap.matches('\n').count() > 1)
    }

    /// `open item, item, ... close`: flat when it fits, else one item per
    /// line with a trailing comma. `spaced` puts spaces inside the
    /// delimiters when flat (`{ a: 1 }`, not `[1]`).
    fn comma_list<T>(
        &mut self,
        open: Doc,
        items: &[T],
        mut item: impl FnMut(&mut Formatter<'a>, &T) -> Doc,
        close: (Option<usize>, &str),
        spaced: bool,
    ) -> Doc {
        let mut parts = Vec::new();
        for (position, element) in items.iter().enumerate() {
            if position > 0 {
                parts.push(self.kind(&TokenKind::Comma, ","));
                parts.push(Doc::line());
            }
            parts.push(item(self, element));
        }
        let (inner, close) = self.close(close.0, close.1, !items.is_empty());
        let inner_is_empty = matches!(&inner, Doc::Concat(parts) if parts.is_empty());
        if items.is_empty() && inner_is_empty {
            return Doc::Concat(vec![open, close]);
        }
        if !items.is_empty() {
            parts.push(Doc::if_broken(Doc::text(",")));
        }
        parts.push(inner);
        let line = if spaced {
            Doc::line()
        } else {
            Doc::soft_line()
        };
        Doc::group(Doc::Concat(vec![
            open,
            Doc::indent(Doc::Concat(vec![line.clone(), Doc::Concat(parts)])),
            line,
            close,
        ]))
    }

    // ----- Items -----

    fn file(&mut self, file: &File) -> Doc {
        let mut parts = Vec::new();
        let mut previous: Option<(&Item, Span)> = None;
        for item in &file.items {
            let span = item_span(item);
            if let Some((previous_item, previous_span)) = previous {
                parts.push(Doc::LineStart);
                let function_involved =
                    matches!(previous_item, Item::Fn(_)) || matches!(item, Item::Fn(_));
                if function_involved || self.blank_line_between(previous_span.end, span.start) {
                    parts.push(Doc::Hard);
                }
            }
            parts.push(match item {
                Item::Fn(function) => self.function(function),
                Item::Type(declaration) => self.type_declaration(declaration),
            });
            previous = Some((item, span));
        }
        let eof = self.tokens.len().saturating_sub(1);
        let (inner, _) = self.close(Some(eof), "", !file.items.is_empty());
        parts.push(inner);
        Doc::Concat(parts)
    }

    fn function(&mut self, function: &FnDecl) -> Doc {
        let keyword = self.at(function.span.start, "fn");
        let name = self.ident(&function.name);
        let open = self.kind(&TokenKind::LParen, "(");
        let close = self.find_kind(&TokenKind::RParen);
        let params = self.comma_list(
            open,
            &function.params,
            |formatter, param| {
                let name = formatter.ident(&param.name);
                let colon = formatter.kind(&TokenKind::Colon, ":");
                let ty = formatter.type_expr(&param.ty);
                Doc::Concat(vec![name, colon, Doc::Space, ty])
            },
            (close, ")"),
            false,
        );
        let mut parts = vec![keyword, Doc::Space, name, params];
        if let Some(ret) = &function.ret {
            parts.push(Doc::Space);
            parts.push(self.kind(&TokenKind::Arrow, "->"));
            parts.push(Doc::Space);
            parts.push(self.type_expr(ret));
        }
        parts.push(Doc::Space);
        parts.push(self.block(&function.body));
        Doc::Concat(parts)
    }

    fn type_declaration(&mut self, declaration: &TypeDecl) -> Doc {
        let keyword = self.at(declaration.span.start, "type");
        let name = self.ident(&declaration.name);
        let equals = self.kind(&TokenKind::Eq, "=");
        let ty = self.type_expr(&declaration.ty);
        Doc::Concat(vec![
            keyword,
            Doc::Space,
            name,
            Doc::Space,
            equals,
            Doc::Space,
            ty,
        ])
    }

    fn type_expr(&mut self, ty: &TypeExpr) -> Doc {
        match &ty.kind {
            TypeExprKind::Named(name) => self.ident(name),
            TypeExprKind::List(element) | TypeExprKind::Map(element) => {
                let word = if matches!(ty.kind, TypeExprKind::List(_)) {
                    "list"
                } else {
                    "map"
                };
                let head = self.at(ty.span.start, word);
                let open = self.kind(&TokenKind::Lt, "<");
                let inner = self.type_expr(element);
                let close = self.kind(&TokenKind::Gt, ">");
                Doc::Concat(vec![head, open, inner, close])
            }
            TypeExprKind::Record(fields) => {
                let open = self.at(ty.span.start, "{");
                let close = self.closer(ty.span.end.saturating_sub(1), &TokenKind::RBrace);
                self.comma_list(
                    open,
                    fields,
                    |formatter, field| {
                        let name = formatter.key(&field.name);
                        let colon = formatter.kind(&TokenKind::Colon, ":");
                        let ty = formatter.type_expr(&field.ty);
                        Doc::Concat(vec![name, colon, Doc::Space, ty])
                    },
                    (close, "}"),
                    true,
                )
            }
            TypeExprKind::Optional(inner) => {
                let inner = self.type_expr(inner);
                let question = self.kind(&TokenKind::Question, "?");
                Doc::Concat(vec![inner, question])
            }
            TypeExprKind::Error => self.verbatim(ty.span),
        }
    }

    // ----- Statements -----

    fn block(&mut self, block: &Block) -> Doc {
        let open = self.at(block.span.start, "{");
        let statements = self.statements(&block.stmts);
        let close = self.closer(block.span.end.saturating_sub(1), &TokenKind::RBrace);
        let (inner, close) = self.close(close, "}", !block.stmts.is_empty());
        let inner_is_empty = matches!(&inner, Doc::Concat(parts) if parts.is_empty());
        if block.stmts.is_empty() {
            if inner_is_empty {
                return Doc::Concat(vec![open, close]);
            }
            return Doc::Concat(vec![open, Doc::indent(inner), Doc::LineStart, close]);
        }
        Doc::Concat(vec![
            open,
            Doc::indent(Doc::Concat(vec![Doc::LineStart, statements, inner])),
            Doc::LineStart,
            close,
        ])
    }

    fn statements(&mut self, statements: &[Stmt]) -> Doc {
        let mut parts = Vec::new();
        for (position, statement) in statements.iter().enumerate() {
            if position > 0 {
                parts.push(Doc::LineStart);
                let previous_end = statements[position - 1].span.end;
                if self.blank_line_between(previous_end, statement.span.start) {
                    parts.push(Doc::Hard);
                }
            }
            parts.push(self.statement(statement));
        }
        Doc::Concat(parts)
    }

    fn semicolon(&mut self) -> Doc {
        self.kind(&TokenKind::Semi, ";")
    }

    fn statement(&mut self, statement: &Stmt) -> Doc {
        let start = statement.span.start;
        match &statement.kind {
            StmtKind::Let {
                mutable,
                name,
                ty,
                init,
            } => {
                let keyword = self.at(start, if *mutable { "var" } else { "let" });
                let name = self.ident(name);
                let mut parts = vec![keyword, Doc::Space, name];
                if let Some(ty) = ty {
                    parts.push(self.kind(&TokenKind::Colon, ":"));
                    parts.push(Doc::Space);
                    parts.push(self.type_expr(ty));
                }
                parts.push(Doc::Space);
                parts.push(self.kind(&TokenKind::Eq, "="));
                parts.push(Doc::Space);
                parts.push(self.expr(init));
                parts.push(self.semicolon());
                Doc::Concat(parts)
            }
            StmtKind::Assign { target, op, value } => {
                let target = self.expr(target);
                let (kind, text) = assignment_token(*op);
                let operator = self.kind(&kind, text);
                let value = self.expr(value);
                let semicolon = self.semicolon();
                Doc::Concat(vec![
                    target,
                    Doc::Space,
                    operator,
                    Doc::Space,
                    value,
                    semicolon,
                ])
            }
            StmtKind::Expr(expr) => {
                let expr = self.expr(expr);
                let semicolon = self.semicolon();
                Doc::Concat(vec![expr, semicolon])
            }
            StmtKind::If {
                cond,
                then_block,
                else_branch,
            } => {
                let keyword = self.at(start, "if");
                let cond = self.expr(cond);
                let then_block = self.block(then_block);
                let mut parts = vec![keyword, Doc::Space, cond, Doc::Space, then_block];
                if let Some(branch) = else_branch {
                    parts.push(Doc::Space);
                    parts.push(self.kind(&TokenKind::Else, "else"));
                    parts.push(Doc::Space);
                    parts.push(match branch.as_ref() {
                        ElseBranch::If(statement) => self.statement(statement),
                        ElseBranch::Block(block) => self.block(block),
                    });
                }
                Doc::Concat(parts)
            }
            StmtKind::While { cond, body } => {
                let keyword = self.at(start, "while");
                let cond = self.expr(cond);
                let body = self.block(body);
                Doc::Concat(vec![keyword, Doc::Space, cond, Doc::Space, body])
            }
            StmtKind::For { var, iter, body } => {
                let keyword = self.at(start, "for");
                let var = self.ident(var);
                let in_keyword = self.kind(&TokenKind::In, "in");
                let iter = match iter {
                    ForIter::Range { start, end } => {
                        let start = self.expr(start);
                        let dots = self.kind(&TokenKind::DotDot, "..");
                        let end = self.expr(end);
                        Doc::Concat(vec![start, dots, end])
                    }
                    ForIter::Each(expr) => self.expr(expr),
                };
                let body = self.block(body);
                Doc::Concat(vec![
                    keyword,
                    Doc::Space,
                    var,
                    Doc::Space,
                    in_keyword,
                    Doc::Space,
                    iter,
                    Doc::Space,
                    body,
                ])
            }
            StmtKind::Break | StmtKind::Continue => {
                let word = if matches!(statement.kind, StmtKind::Break) {
                    "break"
                } else {
                    "continue"
                };
                let keyword = self.at(start, word);
                let semicolon = self.semicolon();
                Doc::Concat(vec![keyword, semicolon])
            }
            StmtKind::Return(value) => {
                let keyword = self.at(start, "return");
                let mut parts = vec![keyword];
                if let Some(value) = value {
                    parts.push(Doc::Space);
                    parts.push(self.expr(value));
                }
                parts.push(self.semicolon());
                Doc::Concat(parts)
            }
            StmtKind::Throw(value) => {
                let keyword = self.at(start, "throw");
                let value = self.expr(value);
                let semicolon = self.semicolon();
                Doc::Concat(vec![keyword, Doc::Space, value, semicolon])
            }
            StmtKind::Try {
                body,
                catch_var,
                handler,
            } => {
                let keyword = self.at(start, "try");
                let body = self.block(body);
                let catch = self.kind(&TokenKind::Catch, "catch");
                let var = self.ident(catch_var);
                let handler = self.block(handler);
                Doc::Concat(vec![
                    keyword,
                    Doc::Space,
                    body,
                    Doc::Space,
                    catch,
                    Doc::Space,
                    var,
                    Doc::Space,
                    handler,
                ])
            }
            StmtKind::Error => self.verbatim(statement.span),
        }
    }

    // ----- Expressions -----

    /// An expression in a place that needs at least `minimum` binding
    /// strength, parenthesised when it binds less tightly.
    fn operand(&mut self, expr: &Expr, minimum: u8) -> Doc {
        if expr_precedence(expr) < minimum {
            Doc::Concat(vec![Doc::text("("), self.expr(expr), Doc::text(")")])
        } else {
            self.expr(expr)
        }
    }

    fn arguments(&mut self, args: &[Expr], call_span: Span) -> Doc {
        let open = self.kind(&TokenKind::LParen, "(");
        let close = self.closer(call_span.end.saturating_sub(1), &TokenKind::RParen);
        self.comma_list(
            open,
            args,
            |formatter, arg| formatter.expr(arg),
            (close, ")"),
            false,
        )
    }

    fn expr(&mut self, expr: &Expr) -> Doc {
        let span = expr.span;
        match &expr.kind {
            ExprKind::Int(_) | ExprKind::Float(_) | ExprKind::Str(_) | ExprKind::Error => {
                self.verbatim(span)
            }
            ExprKind::Bool(value) => self.at(span.start, if *value { "true" } else { "false" }),
            ExprKind::Null => self.at(span.start, "null"),
            ExprKind::Name(name) => self.ident(name),
            ExprKind::List(elements) => {
                let open = self.at(span.start, "[");
                let close = self.closer(span.end.saturating_sub(1), &TokenKind::RBracket);
                self.comma_list(
                    open,
                    elements,
                    |f, element| f.expr(element),
                    (close, "]"),
                    false,
                )
            }
            ExprKind::Record(fields) => {
                let open = self.at(span.start, "{");
                let close = self.closer(span.end.saturating_sub(1), &TokenKind::RBrace);
                self.comma_list(
                    open,
                    fields,
                    |formatter, field| {
                        let name = formatter.key(&field.name);
                        let colon = formatter.kind(&TokenKind::Colon, ":");
                        let value = formatter.expr(&field.value);
                        Doc::Concat(vec![name, colon, Doc::Space, value])
                    },
                    (close, "}"),
                    true,
                )
            }
            ExprKind::Field { base, field } => {
                let base = self.operand(base, precedence::POSTFIX);
                let dot = self.kind(&TokenKind::Dot, ".");
                let field = self.ident(field);
                Doc::Concat(vec![base, dot, field])
            }
            ExprKind::Index { base, index } => {
                let base = self.operand(base, precedence::POSTFIX);
                let open = self.kind(&TokenKind::LBracket, "[");
                let index = self.expr(index);
                let close = self.closer(span.end.saturating_sub(1), &TokenKind::RBracket);
                let (inner, close) = self.close(close, "]", true);
                Doc::Concat(vec![base, open, index, inner, close])
            }
            ExprKind::Call { callee, args } => {
                let callee = self.ident(callee);
                let args = self.arguments(args, span);
                Doc::Concat(vec![callee, args])
            }
            ExprKind::MethodCall {
                receiver,
                method,
                args,
            } => {
                let receiver = self.operand(receiver, precedence::POSTFIX);
                let dot = self.kind(&TokenKind::Dot, ".");
                let method = self.ident(method);
                let args = self.arguments(args, span);
                Doc::Concat(vec![receiver, dot, method, args])
            }
            ExprKind::Unary { op, operand } => {
                let text = match op {
                    UnaryOp::Neg => "-",
                    UnaryOp::Not => "!",
                };
                let operator = self.at(span.start, text);
                // `-(-x)`, not `--x`, which reads like a decrement.
                let nested_negation = *op == UnaryOp::Neg
                    && matches!(
                        &operand.kind,
                        ExprKind::Unary {
                            op: UnaryOp::Neg,
                            ..
                        }
                    );
                let operand = if nested_negation {
                    Doc::Concat(vec![Doc::text("("), self.expr(operand), Doc::text(")")])
                } else {
                    self.operand(operand, precedence::UNARY)
                };
                Doc::Concat(vec![operator, operand])
            }
            ExprKind::Binary { op, .. } => self.binary(expr, *op),
            ExprKind::As { expr: inner, ty } => {
                let inner = self.operand(inner, precedence::AS);
                let keyword = self.kind(&TokenKind::As, "as");
                let ty = self.type_expr(ty);
                Doc::Concat(vec![inner, Doc::Space, keyword, Doc::Space, ty])
            }
        }
    }

    /// A chain of binary operators of one precedence, as one group that
    /// breaks after the operators.
    fn binary(&mut self, expr: &Expr, op: BinOp) -> Doc {
        let level = binary_precedence(op);
        // Operands and operators in source order.
        let mut operands: Vec<&Expr> = Vec::new();
        let mut operators: Vec<BinOp> = Vec::new();
        if op == BinOp::Coalesce {
            // `a ?? b ?? c` is `a ?? (b ?? c)`: follow the right spine.
            let mut current = expr;
            while let ExprKind::Binary {
                op: BinOp::Coalesce,
                lhs,
                rhs,
            } = &current.kind
            {
                operands.push(lhs);
                operators.push(BinOp::Coalesce);
                current = rhs;
            }
            operands.push(current);
        } else {
            // Left-associative: follow the left spine.
            let mut current = expr;
            let mut rights: Vec<(&Expr, BinOp)> = Vec::new();
            while let ExprKind::Binary { op, lhs, rhs } = &current.kind {
                if binary_precedence(*op) != level {
                    break;
                }
                rights.push((rhs, *op));
                current = lhs;
            }
            operands.push(current);
            for (rhs, op) in rights.into_iter().rev() {
                operators.push(op);
                operands.push(rhs);
            }
        }
        let (left_minimum, right_minimum) = if op == BinOp::Coalesce {
            (level + 1, level)
        } else {
            (level, level + 1)
        };
        let first = self.operand(operands[0], left_minimum);
        let mut rest = Vec::new();
        for (position, op) in operators.iter().enumerate() {
            rest.push(Doc::Space);
            rest.push(self.kind(&binary_token(*op), op.symbol()));
            rest.push(Doc::line());
            let is_last = position + 2 == operands.len();
            let minimum = if op == &BinOp::Coalesce && !is_last {
                left_minimum
            } else {
                right_minimum
            };
            rest.push(self.operand(operands[position + 1], minimum));
        }
        Doc::group(Doc::Concat(vec![first, Doc::indent(Doc::Concat(rest))]))
    }
}

fn item_span(item: &Item) -> Span {
    match item {
        Item::Fn(function) => function.span,
        Item::Type(declaration) => declaration.span,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn formatted(source: &str) -> String {
        let output = format_unverified(source).expect("the source parses");
        if let Err(problem) = equivalent(source, &output) {
            panic!("{problem}\n--- output:\n{output}");
        }
        let again = format_unverified(&output).expect("the output parses");
        assert_eq!(again, output, "formatting is not idempotent");
        output
    }

    #[test]
    fn canonical_layout() {
        let source = "fn main( x:int )->int{let y=x*2+1;if y>3{return y;}else{return 0;}}";
        assert_eq!(
            formatted(source),
            "fn main(x: int) -> int {\n    let y = x * 2 + 1;\n    if y > 3 {\n        return y;\n    } else {\n        return 0;\n    }\n}\n"
        );
    }

    #[test]
    fn records_lists_and_parentheses() {
        let source =
            "fn main() -> json {\n    let r = {a:1,b:[1,2,(3)]};\n    return (r.a + 2) * 3;\n}\n";
        assert_eq!(
            formatted(source),
            "fn main() -> json {\n    let r = { a: 1, b: [1, 2, 3] };\n    return (r.a + 2) * 3;\n}\n"
        );
    }

    #[test]
    fn comments_stay_in_place() {
        let source = "// header\n\n// about main\nfn main() { // opening\n    let x = 1; // one\n\n    // before y\n    let y = /* inline */ 2;\n    // at the end\n}\n// trailer\n";
        assert_eq!(
            formatted(source),
            "// header\n\n// about main\nfn main() { // opening\n    let x = 1; // one\n\n    // before y\n    let y = /* inline */ 2;\n    // at the end\n}\n// trailer\n"
        );
    }

    #[test]
    fn long_calls_break_one_argument_per_line() {
        let source = "fn main() { ExternalSystem.CachedCall(\"MES\", \"PostReading\", { asset: Instance.Code(), value: 12345, at: Time.Now() }); }";
        assert_eq!(
            formatted(source),
            "fn main() {\n    ExternalSystem.CachedCall(\n        \"MES\",\n        \"PostReading\",\n        { asset: Instance.Code(), value: 12345, at: Time.Now() },\n    );\n}\n"
        );
    }

    #[test]
    fn syntax_errors_are_returned() {
        assert!(format("fn main( {").is_err());
    }
}
