//! "Did you mean …?": the nearest name by edit distance.

/// Levenshtein distance between two strings, by characters.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b_chars: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b_chars.len()).collect();
    let mut current = vec![0; b_chars.len() + 1];
    for (i, a_char) in a.chars().enumerate() {
        current[0] = i + 1;
        for (j, b_char) in b_chars.iter().enumerate() {
            let substitution = previous[j] + usize::from(a_char != *b_char);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b_chars.len()]
}

/// The candidate closest to `name`, when it is close enough to be a likely
/// typo (a third of its length, at least two edits; case differences count
/// as half).
pub fn nearest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .filter(|candidate| *candidate != name)
        .map(|candidate| {
            let exact = edit_distance(name, candidate);
            let folded = edit_distance(&name.to_lowercase(), &candidate.to_lowercase());
            (exact.min(folded + 1), candidate)
        })
        .filter(|(distance, candidate)| *distance <= (candidate.chars().count() / 3).max(2))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances() {
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("Histrian", "Historian"), 1);
    }

    #[test]
    fn nearest_picks_a_close_name_only() {
        let names = ["Operators", "Managers", "MES"];
        assert_eq!(nearest("Operator", names), Some("Operators"));
        assert_eq!(nearest("mes", names), Some("MES"));
        assert_eq!(nearest("Zebra", names), None);
    }
}
