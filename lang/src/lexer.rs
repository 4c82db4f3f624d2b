//! Stage 0: source text → tokens.
//!
//! [`lex`] turns any string into a token list that always ends with
//! [`TokenKind::Eof`], together with the lexical diagnostics (codes
//! SCL0001–SCL0006). It never fails and never panics: a byte sequence that is
//! not a token becomes a [`TokenKind::Error`] token, and every lexical mistake
//! is reported exactly once, by the lexer. The parser treats `Error` tokens as
//! already reported and stays silent about them.
//!
//! Most tokens come from a [`logos`] state machine. Three things are lexed by
//! hand around it, because they are not regular languages:
//!
//! - nested block comments `/* /* */ */`;
//! - string literals, whose escapes are cooked here;
//! - string interpolation `"a ${expr} b"`. The expression inside `${ }` is
//!   lexed as ordinary code and may contain strings and braces of its own, so
//!   the lexer keeps an explicit stack of modes (code, string) instead of
//!   recursing; deeply nested input cannot exhaust the stack.
//!
//! A string becomes a flat token sequence that the parser reads like
//! brackets:
//!
//! ```text
//! "a ${x} b"  →  StrStart  StrText("a ")  InterpStart  Ident(x)  InterpEnd  StrText(" b")  StrEnd
//! ```
//!
//! A string literal, with its interpolations, ends on the line where it
//! starts. An unterminated one becomes `StrStart Error`: what the lexer read
//! inside it is dropped, so it causes exactly one diagnostic.
//! Identifiers are ASCII (`[A-Za-z_][A-Za-z0-9_]*`); any other character
//! outside a string or comment is an invalid character.

use logos::Logos;

use crate::codes;
use crate::diagnostics::Diagnostic;
use crate::span::Span;

/// One token with its byte span in the source.
#[derive(Clone, Debug, PartialEq)]
pub struct Token {
    pub kind: TokenKind,
    pub span: Span,
}

/// Every kind of token the parser sees.
#[derive(Clone, Debug, PartialEq)]
pub enum TokenKind {
    // Keywords.
    Fn,
    Let,
    Var,
    If,
    Else,
    While,
    For,
    In,
    Break,
    Continue,
    Return,
    Try,
    Catch,
    Throw,
    Type,
    True,
    False,
    Null,
    As,

    /// An identifier (which includes type names such as `int` and `list`).
    Ident(String),
    /// An integer literal that fits in `i64`.
    Int(i64),
    /// A floating-point literal.
    Float(f64),

    // String structure: see the module documentation.
    /// The opening `"` of a string literal.
    StrStart,
    /// Literal text inside a string, with escapes already cooked.
    StrText(String),
    /// `${` inside a string.
    InterpStart,
    /// The `}` that closes an interpolation.
    InterpEnd,
    /// The closing `"` of a string literal.
    StrEnd,

    // Operators and punctuation.
    Plus,
    Minus,
    Star,
    Slash,
    Percent,
    EqEq,
    NotEq,
    Lt,
    Le,
    Gt,
    Ge,
    AndAnd,
    OrOr,
    Bang,
    QuestionQuestion,
    Eq,
    PlusEq,
    MinusEq,
    StarEq,
    SlashEq,
    PercentEq,
    Dot,
    Comma,
    Semi,
    Colon,
    Arrow,
    DotDot,
    Question,
    LParen,
    RParen,
    LBracket,
    RBracket,
    LBrace,
    RBrace,

    /// Input the lexer could not turn into a token; a diagnostic was already
    /// reported for it.
    Error,
    /// The end of the file (always the last token, with an empty span).
    Eof,
}

impl TokenKind {
    /// The fixed text of a keyword or punctuation token, `None` for tokens
    /// that carry a value or have no text.
    pub fn fixed_text(&self) -> Option<&'static str> {
        use TokenKind::*;
        let text = match self {
            Fn => "fn",
            Let => "let",
            Var => "var",
            If => "if",
            Else => "else",
            While => "while",
            For => "for",
            In => "in",
            Break => "break",
            Continue => "continue",
            Return => "return",
            Try => "try",
            Catch => "catch",
            Throw => "throw",
            Type => "type",
            True => "true",
            False => "false",
            Null => "null",
            As => "as",
            InterpStart => "${",
            InterpEnd => "}",
            Plus => "+",
            Minus => "-",
            Star => "*",
            Slash => "/",
            Percent => "%",
            EqEq => "==",
            NotEq => "!=",
            Lt => "<",
            Le => "<=",
            Gt => ">",
            Ge => ">=",
            AndAnd => "&&",
            OrOr => "||",
            Bang => "!",
            QuestionQuestion => "??",
            Eq => "=",
            PlusEq => "+=",
            MinusEq => "-=",
            StarEq => "*=",
            SlashEq => "/=",
            PercentEq => "%=",
            Dot => ".",
            Comma => ",",
            Semi => ";",
            Colon => ":",
            Arrow => "->",
            DotDot => "..",
            Question => "?",
            LParen => "(",
            RParen => ")",
            LBracket => "[",
            RBracket => "]",
            LBrace => "{",
            RBrace => "}",
            Ident(_) | Int(_) | Float(_) | StrStart | StrText(_) | StrEnd | Error | Eof => {
                return None;
            }
        };
        Some(text)
    }

    /// Whether this token is one of the language's keywords.
    pub fn is_keyword(&self) -> bool {
        use TokenKind::*;
        matches!(
            self,
            Fn | Let
                | Var
                | If
                | Else
                | While
                | For
                | In
                | Break
                | Continue
                | Return
                | Try
                | Catch
                | Throw
                | Type
                | True
                | False
                | Null
                | As
        )
    }
}

impl Token {
    /// Names the token for a message such as "expected `;`, found …": a
    /// keyword or punctuation in backquotes, a literal by its kind and text.
    pub fn describe(&self, source: &str) -> String {
        let text = source.get(self.span.range()).unwrap_or("");
        match &self.kind {
            TokenKind::Ident(name) => format!("identifier `{name}`"),
            TokenKind::Int(_) => format!("integer `{text}`"),
            TokenKind::Float(_) => format!("number `{text}`"),
            TokenKind::StrStart => "a string".to_string(),
            TokenKind::StrText(_) => "string text".to_string(),
            TokenKind::StrEnd => "the end of the string".to_string(),
            TokenKind::Error => "an invalid token".to_string(),
            TokenKind::Eof => "end of file".to_string(),
            TokenKind::InterpEnd => "`}` (the end of the interpolation)".to_string(),
            other => match other.fixed_text() {
                Some(fixed) if other.is_keyword() => format!("keyword `{fixed}`"),
                Some(fixed) => format!("`{fixed}`"),
                None => "a token".to_string(),
            },
        }
    }
}

/// The tokens of one file (ending with `Eof`) and the lexical diagnostics.
#[derive(Clone, Debug, Default)]
pub struct Lexed {
    pub tokens: Vec<Token>,
    pub diagnostics: Vec<Diagnostic>,
}

/// Lexes a whole file. Never fails: see the module documentation.
pub fn lex(source: &str) -> Lexed {
    let mut lexer = Lexer {
        source,
        tokens: Vec::new(),
        diagnostics: Vec::new(),
    };
    lexer.run();
    let end = span(source.len(), source.len());
    lexer.tokens.push(Token {
        kind: TokenKind::Eof,
        span: end,
    });
    Lexed {
        tokens: lexer.tokens,
        diagnostics: lexer.diagnostics,
    }
}

/// Builds a span, saturating offsets beyond `u32::MAX` instead of wrapping,
/// so that `start <= end` holds for any input.
pub(crate) fn span(start: usize, end: usize) -> Span {
    let start = u32::try_from(start).unwrap_or(u32::MAX);
    let end = u32::try_from(end).unwrap_or(u32::MAX).max(start);
    Span { start, end }
}

/// The tokens logos recognises in code (outside strings and comments).
#[derive(Logos, Clone, Copy, Debug, PartialEq)]
#[logos(skip r"[ \t\r\n\f]+")]
#[logos(skip(r"//[^\n]*", allow_greedy = true))]
enum RawToken {
    #[token("fn")]
    Fn,
    #[token("let")]
    Let,
    #[token("var")]
    Var,
    #[token("if")]
    If,
    #[token("else")]
    Else,
    #[token("while")]
    While,
    #[token("for")]
    For,
    #[token("in")]
    In,
    #[token("break")]
    Break,
    #[token("continue")]
    Continue,
    #[token("return")]
    Return,
    #[token("try")]
    Try,
    #[token("catch")]
    Catch,
    #[token("throw")]
    Throw,
    #[token("type")]
    Type,
    #[token("true")]
    True,
    #[token("false")]
    False,
    #[token("null")]
    Null,
    #[token("as")]
    As,

    #[regex("[A-Za-z_][A-Za-z0-9_]*")]
    Ident,
    #[regex("[0-9][0-9_]*")]
    Decimal,
    #[regex("0[xX][0-9a-fA-F_]*")]
    Hexadecimal,
    #[regex(r"[0-9][0-9_]*\.[0-9][0-9_]*")]
    Float,
    /// A float with an exponent; the exponent may be empty here, which is
    /// reported as a malformed number.
    #[regex(r"[0-9][0-9_]*(\.[0-9][0-9_]*)?[eE][+-]?[0-9_]*")]
    FloatWithExponent,

    #[token("\"")]
    Quote,
    #[token("/*")]
    BlockCommentStart,

    #[token("+")]
    Plus,
    #[token("-")]
    Minus,
    #[token("*")]
    Star,
    #[token("/")]
    Slash,
    #[token("%")]
    Percent,
    #[token("==")]
    EqEq,
    #[token("!=")]
    NotEq,
    #[token("<")]
    Lt,
    #[token("<=")]
    Le,
    #[token(">")]
    Gt,
    #[token(">=")]
    Ge,
    #[token("&&")]
    AndAnd,
    #[token("||")]
    OrOr,
    #[token("!")]
    Bang,
    #[token("??")]
    QuestionQuestion,
    #[token("=")]
    Eq,
    #[token("+=")]
    PlusEq,
    #[token("-=")]
    MinusEq,
    #[token("*=")]
    StarEq,
    #[token("/=")]
    SlashEq,
    #[token("%=")]
    PercentEq,
    #[token(".")]
    Dot,
    #[token(",")]
    Comma,
    #[token(";")]
    Semi,
    #[token(":")]
    Colon,
    #[token("->")]
    Arrow,
    #[token("..")]
    DotDot,
    #[token("?")]
    Question,
    #[token("(")]
    LParen,
    #[token(")")]
    RParen,
    #[token("[")]
    LBracket,
    #[token("]")]
    RBracket,
    #[token("{")]
    LBrace,
    #[token("}")]
    RBrace,
}

/// One level of the lexer's mode stack.
#[derive(Clone, Copy, Debug)]
enum Mode {
    /// Ordinary code. `interpolation` is true inside `${ }`, where a `}` at
    /// `brace_depth == 0` ends the interpolation.
    Code {
        brace_depth: u32,
        interpolation: bool,
    },
    /// Inside a string literal whose opening quote is at `quote_start` and
    /// whose `StrStart` token is `tokens[start_token]`.
    Str {
        quote_start: usize,
        start_token: usize,
    },
}

/// What made a run of code or string lexing stop.
enum Switch {
    /// Continue in the current mode from the new position (after a comment
    /// or an invalid character).
    Resume,
    /// A `"` opened a string at this offset.
    EnterString(usize),
    /// The `}` that closes the current interpolation was read.
    LeaveInterpolation,
    /// `${` inside a string was read.
    EnterInterpolation,
    /// The string was closed.
    LeaveString,
    /// A line break or the end of the file was reached inside a string or
    /// one of its interpolations, at this offset: the outermost open string
    /// is unterminated.
    Unterminated(usize),
    /// The end of the file was reached.
    End,
}

struct Lexer<'source> {
    source: &'source str,
    tokens: Vec<Token>,
    diagnostics: Vec<Diagnostic>,
}

impl Lexer<'_> {
    fn run(&mut self) {
        let mut modes = vec![Mode::Code {
            brace_depth: 0,
            interpolation: false,
        }];
        let mut position = 0;
        while let Some(mode) = modes.last_mut() {
            let switch = match mode {
                Mode::Code {
                    brace_depth,
                    interpolation,
                } => {
                    let (next, switch) = self.lex_code(position, brace_depth, *interpolation);
                    position = next;
                    switch
                }
                Mode::Str { .. } => {
                    let (next, switch) = self.lex_string(position);
                    position = next;
                    switch
                }
            };
            match switch {
                Switch::Resume => {}
                Switch::EnterString(quote_start) => {
                    let start_token = self.tokens.len().saturating_sub(1);
                    modes.push(Mode::Str {
                        quote_start,
                        start_token,
                    });
                }
                Switch::EnterInterpolation => {
                    modes.push(Mode::Code {
                        brace_depth: 0,
                        interpolation: true,
                    });
                }
                Switch::LeaveInterpolation | Switch::LeaveString => {
                    modes.pop();
                }
                Switch::Unterminated(at) => {
                    // One diagnostic for the outermost open string; lexing
                    // goes on as code after it.
                    let outermost = modes
                        .iter()
                        .enumerate()
                        .find_map(|(index, mode)| match mode {
                            Mode::Str {
                                quote_start,
                                start_token,
                            } => Some((index, *quote_start, *start_token)),
                            Mode::Code { .. } => None,
                        });
                    if let Some((index, quote_start, start_token)) = outermost {
                        // The parser sees `StrStart Error`: nothing of the
                        // broken string can cause a second diagnostic.
                        self.tokens.truncate(start_token + 1);
                        self.unterminated_string(quote_start, at);
                        modes.truncate(index);
                    }
                    position = at;
                    if modes.is_empty() {
                        break;
                    }
                }
                Switch::End => break,
            }
        }
    }

    fn push(&mut self, kind: TokenKind, start: usize, end: usize) {
        self.tokens.push(Token {
            kind,
            span: span(start, end),
        });
    }

    fn error(&mut self, diagnostic: Diagnostic) {
        self.diagnostics.push(diagnostic);
    }

    /// Lexes code from `position` until the mode must change.
    fn lex_code(
        &mut self,
        position: usize,
        brace_depth: &mut u32,
        interpolation: bool,
    ) -> (usize, Switch) {
        let Some(rest) = self.source.get(position..) else {
            return (self.source.len(), Switch::End);
        };
        let mut raw_lexer = RawToken::lexer(rest);
        let mut previous_end = position;
        while let Some(result) = raw_lexer.next() {
            let local = raw_lexer.span();
            let start = position + local.start;
            let end = position + local.end;
            let text = raw_lexer.slice();
            // A string, with its interpolations, ends on the line it starts.
            let crosses_line = self
                .source
                .get(previous_end..start)
                .is_some_and(|gap| gap.contains('\n'));
            if interpolation && crosses_line {
                return (previous_end, Switch::Unterminated(previous_end));
            }
            previous_end = end;
            let raw = match result {
                Ok(raw) => raw,
                Err(()) => return (self.invalid_characters(start), Switch::Resume),
            };
            let kind = match raw {
                RawToken::Quote => {
                    self.push(TokenKind::StrStart, start, end);
                    return (end, Switch::EnterString(start));
                }
                RawToken::BlockCommentStart => return (self.block_comment(start), Switch::Resume),
                RawToken::LBrace => {
                    *brace_depth = brace_depth.saturating_add(1);
                    TokenKind::LBrace
                }
                RawToken::RBrace => {
                    if interpolation && *brace_depth == 0 {
                        self.push(TokenKind::InterpEnd, start, end);
                        return (end, Switch::LeaveInterpolation);
                    }
                    *brace_depth = brace_depth.saturating_sub(1);
                    TokenKind::RBrace
                }
                RawToken::Decimal => self.decimal(text, start, end),
                RawToken::Hexadecimal => self.hexadecimal(text, start, end),
                RawToken::Float | RawToken::FloatWithExponent => self.float(text, start, end),
                RawToken::Ident => TokenKind::Ident(text.to_string()),
                RawToken::Fn => TokenKind::Fn,
                RawToken::Let => TokenKind::Let,
                RawToken::Var => TokenKind::Var,
                RawToken::If => TokenKind::If,
                RawToken::Else => TokenKind::Else,
                RawToken::While => TokenKind::While,
                RawToken::For => TokenKind::For,
                RawToken::In => TokenKind::In,
                RawToken::Break => TokenKind::Break,
                RawToken::Continue => TokenKind::Continue,
                RawToken::Return => TokenKind::Return,
                RawToken::Try => TokenKind::Try,
                RawToken::Catch => TokenKind::Catch,
                RawToken::Throw => TokenKind::Throw,
                RawToken::Type => TokenKind::Type,
                RawToken::True => TokenKind::True,
                RawToken::False => TokenKind::False,
                RawToken::Null => TokenKind::Null,
                RawToken::As => TokenKind::As,
                RawToken::Plus => TokenKind::Plus,
                RawToken::Minus => TokenKind::Minus,
                RawToken::Star => TokenKind::Star,
                RawToken::Slash => TokenKind::Slash,
                RawToken::Percent => TokenKind::Percent,
                RawToken::EqEq => TokenKind::EqEq,
                RawToken::NotEq => TokenKind::NotEq,
                RawToken::Lt => TokenKind::Lt,
                RawToken::Le => TokenKind::Le,
                RawToken::Gt => TokenKind::Gt,
                RawToken::Ge => TokenKind::Ge,
                RawToken::AndAnd => TokenKind::AndAnd,
                RawToken::OrOr => TokenKind::OrOr,
                RawToken::Bang => TokenKind::Bang,
                RawToken::QuestionQuestion => TokenKind::QuestionQuestion,
                RawToken::Eq => TokenKind::Eq,
                RawToken::PlusEq => TokenKind::PlusEq,
                RawToken::MinusEq => TokenKind::MinusEq,
                RawToken::StarEq => TokenKind::StarEq,
                RawToken::SlashEq => TokenKind::SlashEq,
                RawToken::PercentEq => TokenKind::PercentEq,
                RawToken::Dot => TokenKind::Dot,
                RawToken::Comma => TokenKind::Comma,
                RawToken::Semi => TokenKind::Semi,
                RawToken::Colon => TokenKind::Colon,
                RawToken::Arrow => TokenKind::Arrow,
                RawToken::DotDot => TokenKind::DotDot,
                RawToken::Question => TokenKind::Question,
                RawToken::LParen => TokenKind::LParen,
                RawToken::RParen => TokenKind::RParen,
                RawToken::LBracket => TokenKind::LBracket,
                RawToken::RBracket => TokenKind::RBracket,
            };
            self.push(kind, start, end);
        }
        if interpolation {
            return (previous_end, Switch::Unterminated(previous_end));
        }
        (self.source.len(), Switch::End)
    }

    /// Consumes a run of characters that start no token (from `start`), as
    /// one `Error` token with one diagnostic, and returns where to resume.
    fn invalid_characters(&mut self, start: usize) -> usize {
        let rest = self.source.get(start..).unwrap_or("");
        let mut end = start;
        for character in rest.chars() {
            if !is_invalid_start(character) {
                break;
            }
            end += character.len_utf8();
        }
        if end == start {
            // Logos rejected something that can start a token (such as a
            // lone `&`); take that one character.
            end = start + rest.chars().next().map_or(0, char::len_utf8);
        }
        let text = self.source.get(start..end).unwrap_or("");
        let shown: String = text.chars().flat_map(char::escape_debug).collect();
        let message = if text.chars().count() == 1 {
            format!("invalid character `{shown}`")
        } else {
            format!("invalid characters `{shown}`")
        };
        let help = match text {
            "&" => Some("the logical and operator is `&&`"),
            "|" => Some("the logical or operator is `||`"),
            "'" => Some("strings are written in double quotes: \"...\""),
            _ => None,
        };
        let mut diagnostic = Diagnostic::error(codes::INVALID_CHARACTER, span(start, end), message)
            .with_primary_label("not part of any SCL token");
        if let Some(help) = help {
            diagnostic = diagnostic.with_help(help);
        }
        self.error(diagnostic);
        self.push(TokenKind::Error, start, end);
        end
    }

    /// Skips a nested block comment that starts at `start` (on its `/*`) and
    /// returns the offset after it, reporting it when unterminated.
    fn block_comment(&mut self, start: usize) -> usize {
        let bytes = self.source.as_bytes();
        let mut depth = 0usize;
        let mut index = start;
        while index < bytes.len() {
            match (bytes[index], bytes.get(index + 1)) {
                (b'/', Some(b'*')) => {
                    depth += 1;
                    index += 2;
                }
                (b'*', Some(b'/')) => {
                    depth -= 1;
                    index += 2;
                    if depth == 0 {
                        return index;
                    }
                }
                _ => index += 1,
            }
        }
        self.error(
            Diagnostic::error(
                codes::UNTERMINATED_COMMENT,
                span(start, start + 2),
                "unterminated block comment",
            )
            .with_primary_label("this comment is never closed")
            .with_help("block comments nest: every `/*` needs its own `*/`"),
        );
        // The rest of the file is comment; an `Error` token tells the parser
        // not to complain about the missing end of the file.
        self.push(TokenKind::Error, start, self.source.len());
        self.source.len()
    }

    fn decimal(&mut self, text: &str, start: usize, end: usize) -> TokenKind {
        let digits: String = text.chars().filter(|c| *c != '_').collect();
        match digits.parse::<i64>() {
            Ok(value) => TokenKind::Int(value),
            Err(_) => self.too_large(start, end),
        }
    }

    fn hexadecimal(&mut self, text: &str, start: usize, end: usize) -> TokenKind {
        let digits: String = text
            .get(2..)
            .unwrap_or("")
            .chars()
            .filter(|c| *c != '_')
            .collect();
        if digits.is_empty() {
            return self.malformed(
                start,
                end,
                "hexadecimal literal has no digits",
                "write digits after `0x`, as in `0xFF`",
            );
        }
        match i64::from_str_radix(&digits, 16) {
            Ok(value) => TokenKind::Int(value),
            Err(_) => self.too_large(start, end),
        }
    }

    fn float(&mut self, text: &str, start: usize, end: usize) -> TokenKind {
        let cleaned: String = text.chars().filter(|c| *c != '_').collect();
        if cleaned.ends_with(['e', 'E', '+', '-']) {
            return self.malformed(
                start,
                end,
                "exponent has no digits",
                "write digits after the `e`, as in `1e-3`",
            );
        }
        match cleaned.parse::<f64>() {
            Ok(value) if value.is_finite() => TokenKind::Float(value),
            Ok(_) => self.malformed(
                start,
                end,
                "number is too large for a float",
                "the largest float is about 1.8e308",
            ),
            Err(_) => self.malformed(
                start,
                end,
                "malformed number",
                "numbers look like `42`, `0xFF`, `3.14` or `1e-3`",
            ),
        }
    }

    fn too_large(&mut self, start: usize, end: usize) -> TokenKind {
        self.error(
            Diagnostic::error(
                codes::INTEGER_TOO_LARGE,
                span(start, end),
                "integer literal is too large",
            )
            .with_primary_label("does not fit in a 64-bit signed integer")
            .with_help("the largest int is 9223372036854775807; use a float for larger values"),
        );
        TokenKind::Error
    }

    fn malformed(&mut self, start: usize, end: usize, message: &str, help: &str) -> TokenKind {
        self.error(
            Diagnostic::error(
                codes::MALFORMED_NUMBER,
                span(start, end),
                format!("malformed number: {message}"),
            )
            .with_primary_label("malformed number")
            .with_help(help),
        );
        TokenKind::Error
    }

    fn unterminated_string(&mut self, quote_start: usize, end: usize) {
        self.error(
            Diagnostic::error(
                codes::UNTERMINATED_STRING,
                span(quote_start, end),
                "unterminated string",
            )
            .with_primary_label("this string has no closing `\"`")
            .with_help("close the string with `\"` before the end of the line"),
        );
        self.push(TokenKind::Error, (quote_start + 1).min(end), end);
    }

    /// Lexes string content from `position` (just after `"` or after the `}`
    /// of an interpolation) until the string ends or an interpolation starts.
    fn lex_string(&mut self, position: usize) -> (usize, Switch) {
        let source = self.source;
        let mut text = String::new();
        let mut text_start = position;
        let mut index = position;
        loop {
            let Some(character) = source.get(index..).and_then(|rest| rest.chars().next()) else {
                self.flush_text(&mut text, text_start, index);
                return (index, Switch::Unterminated(index));
            };
            match character {
                '"' => {
                    self.flush_text(&mut text, text_start, index);
                    self.push(TokenKind::StrEnd, index, index + 1);
                    return (index + 1, Switch::LeaveString);
                }
                '\n' => {
                    self.flush_text(&mut text, text_start, index);
                    return (index, Switch::Unterminated(index));
                }
                '$' if source.as_bytes().get(index + 1) == Some(&b'{') => {
                    self.flush_text(&mut text, text_start, index);
                    self.push(TokenKind::InterpStart, index, index + 2);
                    return (index + 2, Switch::EnterInterpolation);
                }
                '\\' => {
                    if text.is_empty() {
                        text_start = index;
                    }
                    index = self.escape(index, &mut text);
                }
                other => {
                    if text.is_empty() {
                        text_start = index;
                    }
                    text.push(other);
                    index += other.len_utf8();
                }
            }
        }
    }

    fn flush_text(&mut self, text: &mut String, start: usize, end: usize) {
        if !text.is_empty() {
            let cooked = std::mem::take(text);
            self.push(TokenKind::StrText(cooked), start.min(end), end);
        }
    }

    /// Cooks the escape at `start` (on its backslash) into `text` and returns
    /// the offset after it. A bad escape is reported and dropped.
    fn escape(&mut self, start: usize, text: &mut String) -> usize {
        let rest = self.source.get(start + 1..).unwrap_or("");
        let Some(next) = rest.chars().next() else {
            // A backslash at the very end of the file: the string is
            // unterminated, which the caller reports next.
            return start + 1;
        };
        let simple = match next {
            'n' => Some('\n'),
            't' => Some('\t'),
            'r' => Some('\r'),
            '\\' => Some('\\'),
            '"' => Some('"'),
            '$' => Some('$'),
            '0' => Some('\0'),
            _ => None,
        };
        if let Some(character) = simple {
            text.push(character);
            return start + 2;
        }
        if next == 'u' {
            return self.unicode_escape(start, text);
        }
        if next == '\n' {
            // Leave the newline for the caller: the string is unterminated.
            self.invalid_escape(
                start,
                start + 1,
                "a backslash at the end of a line is not an escape",
            );
            return start + 1;
        }
        let end = start + 1 + next.len_utf8();
        let shown: String = next.escape_debug().collect();
        self.invalid_escape(start, end, &format!("unknown escape `\\{shown}`"));
        end
    }

    /// Cooks `\u{XXXX}` starting at the backslash at `start`.
    fn unicode_escape(&mut self, start: usize, text: &mut String) -> usize {
        let bytes = self.source.as_bytes();
        let mut index = start + 2;
        if bytes.get(index) != Some(&b'{') {
            self.invalid_escape(start, index, "a unicode escape is written `\\u{1F600}`");
            return index;
        }
        index += 1;
        let digits_start = index;
        while bytes.get(index).is_some_and(u8::is_ascii_hexdigit) {
            index += 1;
        }
        let digits = self.source.get(digits_start..index).unwrap_or("");
        if bytes.get(index) != Some(&b'}') {
            self.invalid_escape(start, index, "a unicode escape is written `\\u{1F600}`");
            return index;
        }
        index += 1;
        let code_point = if digits.is_empty() || digits.len() > 6 {
            None
        } else {
            u32::from_str_radix(digits, 16)
                .ok()
                .and_then(char::from_u32)
        };
        match code_point {
            Some(character) => text.push(character),
            None => self.invalid_escape(
                start,
                index,
                &format!("`{digits}` is not a unicode code point"),
            ),
        }
        index
    }

    fn invalid_escape(&mut self, start: usize, end: usize, message: &str) {
        self.error(
            Diagnostic::error(
                codes::INVALID_ESCAPE,
                span(start, end),
                format!("invalid escape: {message}"),
            )
            .with_primary_label("invalid escape")
            .with_help(r#"the escapes are \n \t \r \\ \" \$ \0 and \u{...}"#),
        );
    }
}

/// Whether a character can start no token at all (so a run of them is one
/// invalid-character error).
fn is_invalid_start(character: char) -> bool {
    !(character.is_ascii_alphanumeric()
        || character.is_ascii_whitespace()
        || "_\"+-*/%=!<>&|?.,;:()[]{}".contains(character))
}

/// A comment in the source: `// ...` (without its line break) or a nested
/// `/* ... */` (an unterminated one runs to the end of the file).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Comment {
    pub span: Span,
    /// True for `/* */`, false for `//`.
    pub block: bool,
}

/// The comments of a file, in source order, for the formatter and the
/// editor's highlighting; [`lex`] itself skips them. They are found in the
/// gaps between `tokens` (the output of [`lex`] for the same `source`), which
/// hold only white space and comments; anything else in a gap (an invalid
/// escape the lexer dropped inside a string) ends the scan of that gap.
pub fn comments(source: &str, tokens: &[Token]) -> Vec<Comment> {
    let mut comments = Vec::new();
    let mut gap_start = 0usize;
    for token in tokens {
        let gap_end = (token.span.start as usize).max(gap_start);
        comments_in_gap(source, gap_start, gap_end, &mut comments);
        gap_start = gap_start.max(token.span.end as usize);
    }
    comments_in_gap(source, gap_start, source.len(), &mut comments);
    comments
}

fn comments_in_gap(source: &str, start: usize, end: usize, comments: &mut Vec<Comment>) {
    let bytes = source.as_bytes();
    let end = end.min(bytes.len());
    let mut index = start;
    while index < end {
        match (bytes[index], bytes.get(index + 1)) {
            (b' ' | b'\t' | b'\r' | b'\n' | 0x0c, _) => index += 1,
            (b'/', Some(b'/')) => {
                let stop = source
                    .get(index..end)
                    .and_then(|rest| rest.find('\n'))
                    .map_or(end, |offset| index + offset);
                comments.push(Comment {
                    span: span(index, stop),
                    block: false,
                });
                index = stop;
            }
            (b'/', Some(b'*')) => {
                let comment_start = index;
                let mut depth = 0usize;
                while index < end {
                    match (bytes[index], bytes.get(index + 1)) {
                        (b'/', Some(b'*')) => {
                            depth += 1;
                            index += 2;
                        }
                        (b'*', Some(b'/')) => {
                            depth = depth.saturating_sub(1);
                            index += 2;
                            if depth == 0 {
                                break;
                            }
                        }
                        _ => index += 1,
                    }
                }
                let stop = index.min(end);
                comments.push(Comment {
                    span: span(comment_start, stop),
                    block: true,
                });
                index = stop;
            }
            _ => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(source: &str) -> Vec<TokenKind> {
        lex(source)
            .tokens
            .into_iter()
            .map(|token| token.kind)
            .collect()
    }

    #[test]
    fn range_is_not_a_float() {
        assert_eq!(
            kinds("0..5"),
            vec![
                TokenKind::Int(0),
                TokenKind::DotDot,
                TokenKind::Int(5),
                TokenKind::Eof
            ]
        );
    }

    #[test]
    fn interpolation_with_nested_string_and_braces() {
        let lexed = lex(r#""a ${ {x: "}"}.x } b""#);
        assert!(lexed.diagnostics.is_empty(), "{:?}", lexed.diagnostics);
        use TokenKind::*;
        assert_eq!(
            lexed
                .tokens
                .into_iter()
                .map(|token| token.kind)
                .collect::<Vec<_>>(),
            vec![
                StrStart,
                StrText("a ".into()),
                InterpStart,
                LBrace,
                Ident("x".into()),
                Colon,
                StrStart,
                StrText("}".into()),
                StrEnd,
                RBrace,
                Dot,
                Ident("x".into()),
                InterpEnd,
                StrText(" b".into()),
                StrEnd,
                Eof
            ]
        );
    }
}
