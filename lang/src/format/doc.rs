//! The layout engine behind the formatter: a small Wadler/Prettier-style
//! document algebra and its printer.
//!
//! A [`Doc`] describes text with optional line breaks. A [`Doc::Group`] is
//! printed on one line when it fits in the remaining width, otherwise every
//! [`Doc::Line`] directly inside it becomes a line break. A group that
//! contains a forced break (a hard line break, a line comment, a multi-line
//! block comment) is always broken, and so are the groups around it; that
//! is decided once, when the group is built, so printing is linear.
//!
//! Promise: printing never fails; the output has no trailing spaces on any
//! line that the printer itself ends, and every text is written as given.

/// A document: text plus where it may break.
#[derive(Clone, Debug)]
pub(crate) enum Doc {
    /// Text; a text with a line break (a multi-line block comment) is
    /// written as is and forces its groups to break.
    Text(String),
    /// A separating space, left out at the start of a line.
    Space,
    Concat(Vec<Doc>),
    /// Printed flat if it fits, otherwise broken. `broken` is fixed when the
    /// group contains a forced break.
    Group {
        contents: Box<Doc>,
        broken: bool,
    },
    /// Increases the indentation of the line breaks inside by one level.
    Indent(Box<Doc>),
    /// A space when flat (nothing when `soft`), a line break when broken.
    Line {
        soft: bool,
    },
    /// Always a line break, even on an empty line: after a `LineStart`, it
    /// makes a blank line.
    Hard,
    /// Forces a line break: the next text starts a new line (a line that
    /// is still empty is reused, so breaks never pile up into blank lines).
    LineStart,
    /// Printed only when the enclosing group is broken (trailing commas).
    IfBroken(Box<Doc>),
}

/// Spaces per indentation level.
pub(crate) const INDENT: usize = 4;

impl Doc {
    pub(crate) fn text(text: impl Into<String>) -> Doc {
        Doc::Text(text.into())
    }

    pub(crate) fn nil() -> Doc {
        Doc::Concat(Vec::new())
    }

    pub(crate) fn line() -> Doc {
        Doc::Line { soft: false }
    }

    pub(crate) fn soft_line() -> Doc {
        Doc::Line { soft: true }
    }

    pub(crate) fn group(contents: Doc) -> Doc {
        let broken = forces_break(&contents);
        Doc::Group {
            contents: Box::new(contents),
            broken,
        }
    }

    pub(crate) fn indent(contents: Doc) -> Doc {
        Doc::Indent(Box::new(contents))
    }

    pub(crate) fn if_broken(contents: Doc) -> Doc {
        Doc::IfBroken(Box::new(contents))
    }
}

/// Whether `doc` forces the group around it to break. Nested groups have
/// already computed this for their contents.
fn forces_break(doc: &Doc) -> bool {
    match doc {
        Doc::Text(text) => text.contains('\n'),
        Doc::Concat(parts) => parts.iter().any(forces_break),
        Doc::Group { broken, .. } => *broken,
        Doc::Indent(inner) | Doc::IfBroken(inner) => forces_break(inner),
        Doc::Hard | Doc::LineStart => true,
        Doc::Line { .. } | Doc::Space => false,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Flat,
    Break,
}

/// Prints `doc` within `width` columns (a text longer than the width still
/// goes on its line).
pub(crate) fn print(doc: &Doc, width: usize) -> String {
    let mut printer = Printer {
        out: String::new(),
        column: 0,
        line_has_content: false,
        width,
    };
    let mut stack: Vec<(usize, Mode, &Doc)> = vec![(0, Mode::Break, doc)];
    while let Some((indent, mode, doc)) = stack.pop() {
        match doc {
            Doc::Text(text) => printer.write(text),
            Doc::Space => {
                if printer.line_has_content {
                    printer.write(" ");
                }
            }
            Doc::Concat(parts) => {
                for part in parts.iter().rev() {
                    stack.push((indent, mode, part));
                }
            }
            Doc::Group { contents, broken } => {
                let mode = if *broken {
                    Mode::Break
                } else if mode == Mode::Flat || printer.fits(contents, &stack) {
                    Mode::Flat
                } else {
                    Mode::Break
                };
                stack.push((indent, mode, contents));
            }
            Doc::Indent(contents) => stack.push((indent + INDENT, mode, contents)),
            Doc::Line { soft } => match mode {
                Mode::Flat if *soft => {}
                Mode::Flat => printer.write(" "),
                Mode::Break => printer.line_break(indent),
            },
            Doc::Hard => printer.newline(indent),
            Doc::LineStart => printer.line_break(indent),
            Doc::IfBroken(contents) => {
                if mode == Mode::Break {
                    stack.push((indent, mode, contents));
                }
            }
        }
    }
    printer.out
}

struct Printer {
    out: String,
    /// Characters on the current line.
    column: usize,
    /// Whether anything but indentation is on the current line.
    line_has_content: bool,
    width: usize,
}

impl Printer {
    fn write(&mut self, text: &str) {
        if text.is_empty() {
            return;
        }
        self.out.push_str(text);
        match text.rfind('\n') {
            Some(index) => self.column = text[index + 1..].chars().count(),
            None => self.column += text.chars().count(),
        }
        self.line_has_content = true;
    }

    /// Starts a new line indented by `indent`, or re-indents the current
    /// line when nothing is on it yet.
    fn line_break(&mut self, indent: usize) {
        if self.line_has_content {
            self.newline(indent);
        } else {
            let line_start = self.out.rfind('\n').map_or(0, |index| index + 1);
            self.out.truncate(line_start);
            self.out.extend(std::iter::repeat_n(' ', indent));
            self.column = indent;
        }
    }

    fn newline(&mut self, indent: usize) {
        let trimmed = self.out.trim_end_matches([' ', '\t']).len();
        self.out.truncate(trimmed);
        self.out.push('\n');
        self.out.extend(std::iter::repeat_n(' ', indent));
        self.column = indent;
        self.line_has_content = false;
    }

    /// Whether `contents`, printed flat from the current column, and what
    /// follows it up to the next line break fit in the width.
    fn fits(&self, contents: &Doc, rest: &[(usize, Mode, &Doc)]) -> bool {
        let mut remaining = self.width as isize - self.column as isize;
        let mut stack: Vec<(Mode, &Doc)> = vec![(Mode::Flat, contents)];
        let mut rest_index = rest.len();
        loop {
            if remaining < 0 {
                return false;
            }
            let Some((mode, doc)) = stack.pop() else {
                // The group fits; what follows it must fit up to its next break.
                if rest_index == 0 {
                    return true;
                }
                rest_index -= 1;
                let (_, mode, doc) = rest[rest_index];
                stack.push((mode, doc));
                continue;
            };
            match doc {
                Doc::Text(text) => {
                    if text.contains('\n') {
                        return true;
                    }
                    remaining -= text.chars().count() as isize;
                }
                Doc::Space => remaining -= 1,
                Doc::Concat(parts) => {
                    for part in parts.iter().rev() {
                        stack.push((mode, part));
                    }
                }
                Doc::Group { contents, broken } => {
                    let mode = if *broken { Mode::Break } else { mode };
                    stack.push((mode, contents));
                }
                Doc::Indent(contents) => stack.push((mode, contents)),
                Doc::Line { soft } => match mode {
                    Mode::Flat => remaining -= isize::from(!*soft),
                    Mode::Break => return true,
                },
                Doc::Hard | Doc::LineStart => return true,
                Doc::IfBroken(contents) => {
                    if mode == Mode::Break {
                        stack.push((mode, contents));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(args: &[&str]) -> Doc {
        let mut inner = vec![Doc::soft_line()];
        for (index, arg) in args.iter().enumerate() {
            if index > 0 {
                inner.push(Doc::text(","));
                inner.push(Doc::line());
            }
            inner.push(Doc::text(*arg));
        }
        inner.push(Doc::if_broken(Doc::text(",")));
        Doc::group(Doc::Concat(vec![
            Doc::text("f("),
            Doc::indent(Doc::Concat(inner)),
            Doc::soft_line(),
            Doc::text(")"),
        ]))
    }

    #[test]
    fn a_group_that_fits_stays_flat() {
        assert_eq!(print(&call(&["a", "b"]), 20), "f(a, b)");
    }

    #[test]
    fn a_group_that_does_not_fit_breaks_with_a_trailing_comma() {
        assert_eq!(
            print(&call(&["aaaa", "bbbb"]), 10),
            "f(\n    aaaa,\n    bbbb,\n)"
        );
    }

    #[test]
    fn breaks_do_not_pile_up_into_blank_lines() {
        let doc = Doc::group(Doc::Concat(vec![
            Doc::text("a // c"),
            Doc::LineStart,
            Doc::line(),
            Doc::Space,
            Doc::text("b"),
            Doc::LineStart,
            Doc::Hard,
            Doc::text("c"),
        ]));
        assert_eq!(print(&doc, 80), "a // c\nb\n\nc");
    }
}
