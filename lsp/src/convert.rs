//! Between the IDE's byte offsets and the protocol's line/character
//! positions, in the encoding negotiated with the client (UTF-8 when the
//! client offers it, else the protocol's default UTF-16), and between
//! `file:` URIs and paths.

use std::path::PathBuf;

use lsp_types::{Position, Range};
use scl_lang::Span;

/// How the protocol counts characters within a line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    Utf8,
    Utf16,
}

/// The start of every line of a text, for position conversions.
#[derive(Clone, Debug)]
pub struct LineIndex {
    line_starts: Vec<usize>,
}

impl LineIndex {
    pub fn new(text: &str) -> LineIndex {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(index, _)| index + 1));
        LineIndex { line_starts }
    }

    /// The protocol position of a byte offset.
    pub fn position(&self, text: &str, offset: usize, encoding: Encoding) -> Position {
        let offset = floor_boundary(text, offset.min(text.len()));
        let line = self
            .line_starts
            .partition_point(|start| *start <= offset)
            .saturating_sub(1);
        let line_start = self.line_starts[line];
        let before = text.get(line_start..offset).unwrap_or("");
        let character = match encoding {
            Encoding::Utf8 => before.len(),
            Encoding::Utf16 => before.encode_utf16().count(),
        };
        Position {
            line: line as u32,
            character: character as u32,
        }
    }

    pub fn range(&self, text: &str, span: Span, encoding: Encoding) -> Range {
        Range {
            start: self.position(text, span.start as usize, encoding),
            end: self.position(text, span.end as usize, encoding),
        }
    }

    /// The byte offset of a protocol position, clamped to the text (a
    /// character past the end of its line means the line's end).
    pub fn offset(&self, text: &str, position: Position, encoding: Encoding) -> usize {
        let Some(&line_start) = self.line_starts.get(position.line as usize) else {
            return text.len();
        };
        let line_end = self
            .line_starts
            .get(position.line as usize + 1)
            .map_or(text.len(), |next| next.saturating_sub(1));
        let line = text.get(line_start..line_end).unwrap_or("");
        let line = line.strip_suffix('\r').unwrap_or(line);
        let wanted = position.character as usize;
        match encoding {
            Encoding::Utf8 => line_start + floor_boundary(line, wanted.min(line.len())),
            Encoding::Utf16 => {
                let mut units = 0;
                for (index, character) in line.char_indices() {
                    if units >= wanted {
                        return line_start + index;
                    }
                    units += character.len_utf16();
                }
                line_start + line.len()
            }
        }
    }

    pub fn span(&self, text: &str, range: Range, encoding: Encoding) -> Span {
        let start = self.offset(text, range.start, encoding);
        let end = self.offset(text, range.end, encoding).max(start);
        Span::new(start, end)
    }
}

fn floor_boundary(text: &str, mut offset: usize) -> usize {
    while offset > 0 && !text.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}

/// The UTF-16 length of `text` (offsets inside signature labels are UTF-16).
pub fn utf16_len(text: &str) -> u32 {
    text.encode_utf16().count() as u32
}

/// The path of a `file:` URI.
pub fn uri_to_path(uri: &str) -> Option<PathBuf> {
    let rest = uri.strip_prefix("file://")?;
    // `file://host/path` names another host; only local files are read.
    let path = if rest.starts_with('/') {
        rest
    } else {
        rest.split_once('/').map(|(_, p)| p)?
    };
    let bytes = path.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%'
            && let Some(value) = path
                .get(index + 1..index + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            decoded.push(value);
            index += 3;
            continue;
        }
        decoded.push(bytes[index]);
        index += 1;
    }
    let decoded = String::from_utf8(decoded).ok()?;
    let decoded = if rest.starts_with('/') {
        decoded
    } else {
        format!("/{decoded}")
    };
    Some(PathBuf::from(decoded))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_round_trip_in_both_encodings() {
        let text = "ab\n\u{1F600}x = \"é\"\r\nz";
        let index = LineIndex::new(text);
        for encoding in [Encoding::Utf8, Encoding::Utf16] {
            for offset in (0..=text.len()).filter(|o| text.is_char_boundary(*o)) {
                let position = index.position(text, offset, encoding);
                if text[..offset].ends_with('\r') {
                    continue;
                }
                assert_eq!(
                    index.offset(text, position, encoding),
                    offset,
                    "{encoding:?} {offset}"
                );
            }
        }
        let x = text.find('x').expect("x");
        assert_eq!(
            index.position(text, x, Encoding::Utf16),
            Position {
                line: 1,
                character: 2
            }
        );
        assert_eq!(
            index.position(text, x, Encoding::Utf8),
            Position {
                line: 1,
                character: 4
            }
        );
    }

    #[test]
    fn file_uris_become_paths() {
        assert_eq!(
            uri_to_path("file:///tmp/a%20b/c.scl"),
            Some(PathBuf::from("/tmp/a b/c.scl"))
        );
        assert_eq!(uri_to_path("untitled:1"), None);
    }
}
