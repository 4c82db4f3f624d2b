//! Semantic highlighting: every token of the file classified by what it is
//! (a keyword, a parameter, a module, a method, ...), not just by how it is
//! spelt, plus the comments. Tokens are in source order, never overlap and
//! never span lines.

use scl_lang::Span;
use scl_lang::lexer::TokenKind;

use super::Analysis;
use super::index::{Role, SymbolKind};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenType {
    Namespace,
    Type,
    Function,
    Method,
    Property,
    Parameter,
    Variable,
    Keyword,
    String,
    Number,
    Comment,
    Operator,
}

impl TokenType {
    /// Every type, in the order of the legend.
    pub const ALL: [TokenType; 12] = [
        TokenType::Namespace,
        TokenType::Type,
        TokenType::Function,
        TokenType::Method,
        TokenType::Property,
        TokenType::Parameter,
        TokenType::Variable,
        TokenType::Keyword,
        TokenType::String,
        TokenType::Number,
        TokenType::Comment,
        TokenType::Operator,
    ];

    /// The standard LSP name.
    pub fn name(self) -> &'static str {
        match self {
            TokenType::Namespace => "namespace",
            TokenType::Type => "type",
            TokenType::Function => "function",
            TokenType::Method => "method",
            TokenType::Property => "property",
            TokenType::Parameter => "parameter",
            TokenType::Variable => "variable",
            TokenType::Keyword => "keyword",
            TokenType::String => "string",
            TokenType::Number => "number",
            TokenType::Comment => "comment",
            TokenType::Operator => "operator",
        }
    }

    /// The position in [`TokenType::ALL`].
    pub fn index(self) -> u32 {
        TokenType::ALL.iter().position(|t| *t == self).unwrap_or(0) as u32
    }
}

/// Modifier bits, in the order of [`MODIFIERS`].
pub const DECLARATION: u32 = 1;
pub const READONLY: u32 = 2;
pub const DEFAULT_LIBRARY: u32 = 4;
/// The standard LSP names of the modifier bits.
pub const MODIFIERS: [&str; 3] = ["declaration", "readonly", "defaultLibrary"];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SemanticToken {
    pub span: Span,
    pub kind: TokenType,
    pub modifiers: u32,
}

fn classify_role(analysis: &Analysis, role: &Role) -> Option<(TokenType, u32)> {
    let classified = match role {
        Role::Definition(id) | Role::Reference(id) => {
            let declaration = if matches!(role, Role::Definition(_)) {
                DECLARATION
            } else {
                0
            };
            let (kind, modifiers) = match analysis.index().symbol(*id).kind {
                SymbolKind::Function => (TokenType::Function, 0),
                SymbolKind::Type => (TokenType::Type, 0),
                SymbolKind::Parameter => (TokenType::Parameter, READONLY),
                SymbolKind::Var => (TokenType::Variable, 0),
                SymbolKind::Let | SymbolKind::LoopVariable | SymbolKind::CatchVariable => {
                    (TokenType::Variable, READONLY)
                }
            };
            (kind, modifiers | declaration)
        }
        Role::Module => (TokenType::Namespace, DEFAULT_LIBRARY),
        Role::ModuleMember { .. } => (TokenType::Function, DEFAULT_LIBRARY),
        Role::Member { call: true, .. } => (TokenType::Method, 0),
        Role::Member { call: false, .. } | Role::RecordKey => (TokenType::Property, 0),
        Role::BuiltinFunction => (TokenType::Function, DEFAULT_LIBRARY),
        Role::BuiltinType => (TokenType::Type, DEFAULT_LIBRARY),
        Role::Unresolved | Role::UnresolvedType => return None,
    };
    Some(classified)
}

fn classify_token(kind: &TokenKind) -> Option<TokenType> {
    use TokenKind::*;
    let classified = match kind {
        Int(_) | Float(_) => TokenType::Number,
        StrStart | StrText(_) | StrEnd => TokenType::String,
        Plus | Minus | Star | Slash | Percent | EqEq | NotEq | Lt | Le | Gt | Ge | AndAnd
        | OrOr | Bang | QuestionQuestion | Eq | PlusEq | MinusEq | StarEq | SlashEq | PercentEq
        | DotDot | Arrow | InterpStart | InterpEnd => TokenType::Operator,
        other if other.is_keyword() => TokenType::Keyword,
        _ => return None,
    };
    Some(classified)
}

/// Splits `span` at line breaks (editors need one token per line).
fn push_lines(
    source: &str,
    span: Span,
    kind: TokenType,
    modifiers: u32,
    out: &mut Vec<SemanticToken>,
) {
    let text = source.get(span.range()).unwrap_or("");
    let mut start = span.start as usize;
    for piece in text.split('\n') {
        let line = piece.strip_suffix('\r').unwrap_or(piece);
        if !line.is_empty() {
            out.push(SemanticToken {
                span: Span::new(start, start + line.len()),
                kind,
                modifiers,
            });
        }
        start += piece.len() + 1;
    }
}

/// The semantic tokens of the file, in source order.
pub fn semantic_tokens(analysis: &Analysis) -> Vec<SemanticToken> {
    let mut out = Vec::new();
    let occurrences = &analysis.index().occurrences;
    for token in analysis.tokens() {
        let at = occurrences.partition_point(|o| o.span.start < token.span.start);
        let occurrence = occurrences.get(at).filter(|o| o.span == token.span);
        let classified = match occurrence {
            Some(occurrence) => classify_role(analysis, &occurrence.role),
            None => classify_token(&token.kind).map(|kind| (kind, 0)),
        };
        if let Some((kind, modifiers)) = classified {
            push_lines(&analysis.source, token.span, kind, modifiers, &mut out);
        }
    }
    for comment in analysis.comments() {
        push_lines(
            &analysis.source,
            comment.span,
            TokenType::Comment,
            0,
            &mut out,
        );
    }
    out.sort_by_key(|t| t.span.start);
    out
}
