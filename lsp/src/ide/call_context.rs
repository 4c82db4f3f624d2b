//! Which call the cursor is in, read from the tokens alone: while a call is
//! being typed the tree is often broken, but the tokens before the cursor
//! are intact. Used by signature help and by the completion of deployment
//! names inside string arguments.

use scl_lang::Span;
use scl_lang::lexer::{Token, TokenKind};

/// The call around a position and the argument the position is in.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct CallSite {
    pub callee: Callee,
    /// The index of the argument (commas before the position in the call).
    pub argument: usize,
    /// The token index of the call's `(`.
    pub open: usize,
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Callee {
    /// `name(...)`: a function of the file or a built-in.
    Function { name: String, span: Span },
    /// `receiver.name(...)`.
    Member {
        receiver: Receiver,
        name: String,
        span: Span,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Receiver {
    /// A plain name: a module (`Log`) or a local.
    Name(String),
    /// `Module.function(args)`, such as `Route.To("PUMP-001")`, with the
    /// text of its first argument when that is a plain string literal.
    ModuleCall {
        module: String,
        function: String,
        first_argument: Option<String>,
    },
    /// Any other expression, ending at this offset.
    Expression { end: u32 },
}

/// The innermost call whose argument list contains the tokens before
/// `before` (a token index), if any.
pub(crate) fn enclosing_call(tokens: &[Token], before: usize) -> Option<CallSite> {
    let mut depth = 0usize;
    let mut commas = 0usize;
    let mut index = before.min(tokens.len());
    while index > 0 {
        index -= 1;
        match &tokens[index].kind {
            TokenKind::RParen
            | TokenKind::RBracket
            | TokenKind::RBrace
            | TokenKind::InterpEnd
            | TokenKind::StrEnd => depth += 1,
            TokenKind::StrStart | TokenKind::InterpStart if depth > 0 => depth -= 1,
            // The position is inside this string (or its interpolation),
            // which is part of an argument.
            TokenKind::StrStart | TokenKind::InterpStart => {}
            TokenKind::LBracket | TokenKind::LBrace if depth > 0 => depth -= 1,
            // The position is inside a list or record literal: the call's
            // argument is that literal, so commas inside it do not count.
            TokenKind::LBracket | TokenKind::LBrace => commas = 0,
            TokenKind::LParen if depth > 0 => depth -= 1,
            TokenKind::LParen => {
                let callee = callee_before(tokens, index)?;
                return Some(CallSite {
                    callee,
                    argument: commas,
                    open: index,
                });
            }
            TokenKind::Comma if depth == 0 => commas += 1,
            TokenKind::Semi if depth == 0 => return None,
            _ => {}
        }
    }
    None
}

/// The callee whose `(` is `tokens[open]`.
fn callee_before(tokens: &[Token], open: usize) -> Option<Callee> {
    let name_index = open.checked_sub(1)?;
    let name_token = &tokens[name_index];
    let name = match &name_token.kind {
        TokenKind::Ident(name) => name.clone(),
        other if other.is_keyword() => other.fixed_text()?.to_string(),
        _ => return None,
    };
    let span = name_token.span;
    let is_member = name_index
        .checked_sub(1)
        .is_some_and(|dot| tokens[dot].kind == TokenKind::Dot);
    if !is_member {
        return Some(Callee::Function { name, span });
    }
    let receiver_end = name_index.checked_sub(2)?;
    let receiver = receiver_ending_at(tokens, receiver_end);
    Some(Callee::Member {
        receiver,
        name,
        span,
    })
}

/// Describes the receiver expression whose last token is `tokens[last]`.
fn receiver_ending_at(tokens: &[Token], last: usize) -> Receiver {
    let token = &tokens[last];
    let preceded_by_dot = |index: usize| {
        index
            .checked_sub(1)
            .is_some_and(|before| tokens[before].kind == TokenKind::Dot)
    };
    match &token.kind {
        TokenKind::Ident(name) if !preceded_by_dot(last) => Receiver::Name(name.clone()),
        TokenKind::RParen => {
            let Some(open) = matching_open(tokens, last) else {
                return Receiver::Expression {
                    end: token.span.end,
                };
            };
            let call = (|| {
                let function_index = open.checked_sub(1)?;
                let TokenKind::Ident(function) = &tokens[function_index].kind else {
                    return None;
                };
                let dot = function_index.checked_sub(1)?;
                if tokens[dot].kind != TokenKind::Dot {
                    return None;
                }
                let module_index = dot.checked_sub(1)?;
                let TokenKind::Ident(module) = &tokens[module_index].kind else {
                    return None;
                };
                if preceded_by_dot(module_index) {
                    return None;
                }
                Some(Receiver::ModuleCall {
                    module: module.clone(),
                    function: function.clone(),
                    first_argument: string_argument(tokens, open),
                })
            })();
            call.unwrap_or(Receiver::Expression {
                end: token.span.end,
            })
        }
        _ => Receiver::Expression {
            end: token.span.end,
        },
    }
}

/// The `(` matching the `)` at `close`.
fn matching_open(tokens: &[Token], close: usize) -> Option<usize> {
    let mut depth = 0usize;
    for index in (0..=close).rev() {
        match tokens[index].kind {
            TokenKind::RParen => depth += 1,
            TokenKind::LParen => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return Some(index);
                }
            }
            _ => {}
        }
    }
    None
}

/// The text of the first argument after the `(` at `open`, when it is a
/// plain string literal followed by `,` or `)`.
pub(crate) fn string_argument(tokens: &[Token], open: usize) -> Option<String> {
    nth_string_argument(tokens, open, 0)
}

/// The text of argument `n` of the call whose `(` is at `open`, when it is a
/// plain string literal.
pub(crate) fn nth_string_argument(tokens: &[Token], open: usize, n: usize) -> Option<String> {
    let mut depth = 0usize;
    let mut argument = 0usize;
    let mut index = open + 1;
    while index < tokens.len() {
        let kind = &tokens[index].kind;
        if depth == 0 && argument == n {
            if *kind != TokenKind::StrStart {
                return None;
            }
            return match (
                tokens.get(index + 1).map(|t| &t.kind),
                tokens.get(index + 2).map(|t| &t.kind),
            ) {
                (Some(TokenKind::StrEnd), _) => Some(String::new()),
                (Some(TokenKind::StrText(text)), Some(TokenKind::StrEnd)) => Some(text.clone()),
                _ => None,
            };
        }
        match kind {
            TokenKind::LParen
            | TokenKind::LBracket
            | TokenKind::LBrace
            | TokenKind::StrStart
            | TokenKind::InterpStart => depth += 1,
            TokenKind::RParen
            | TokenKind::RBracket
            | TokenKind::RBrace
            | TokenKind::StrEnd
            | TokenKind::InterpEnd => {
                if depth == 0 {
                    return None;
                }
                depth -= 1;
            }
            TokenKind::Comma if depth == 0 => argument += 1,
            TokenKind::Semi | TokenKind::Eof => return None,
            _ => {}
        }
        index += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use scl_lang::lexer::lex;

    fn call_at(source: &str, marker: &str) -> Option<CallSite> {
        let offset = source.find(marker).expect("marker") as u32;
        let tokens = lex(source).tokens;
        let before = tokens.partition_point(|t| t.span.end <= offset);
        enclosing_call(&tokens, before)
    }

    #[test]
    fn finds_the_argument_of_a_module_call() {
        let site = call_at("fn main() { ExternalSystem.Call(\"MES\", \"Get|", "|").expect("a call");
        assert_eq!(site.argument, 1);
        let Callee::Member { receiver, name, .. } = site.callee else {
            panic!("a member call")
        };
        assert_eq!(name, "Call");
        assert_eq!(receiver, Receiver::Name("ExternalSystem".into()));
    }

    #[test]
    fn sees_through_lists_and_routed_receivers() {
        let source = "fn main() { Route.To(\"PUMP-001\").GetAttributes([\"Speed\", |";
        let site = call_at(source, "|").expect("a call");
        assert_eq!(site.argument, 0);
        let Callee::Member { receiver, .. } = site.callee else {
            panic!("a member call")
        };
        assert_eq!(
            receiver,
            Receiver::ModuleCall {
                module: "Route".into(),
                function: "To".into(),
                first_argument: Some("PUMP-001".into())
            }
        );
    }

    #[test]
    fn a_statement_boundary_ends_the_search() {
        assert_eq!(call_at("fn main() { f(1); let x = |", "|"), None);
    }
}
