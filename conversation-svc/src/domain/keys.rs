//! Lookup keys of tenant-defined names: a status label's name and a canned response's
//! keyword are unique per tenant regardless of case, and keywords are found by prefix.
//!
//! Keys are lowercased character by character (never with the context rules of
//! `str::to_lowercase`, such as Greek final sigma), so the key of a prefix is always a
//! prefix of the key of the whole. Keys compare by code point, which is byte order in
//! UTF-8: the order of SQLite's BINARY collation and PostgreSQL's "C".

/// Most characters a keyword has.
pub const MAX_KEYWORD: usize = 50;

fn lowercase(text: &str) -> String {
    text.chars().flat_map(char::to_lowercase).collect()
}

/// The key under which a status label's name is unique in its tenant: trimmed, lowercase.
pub fn label_key(display_name: &str) -> String {
    lowercase(display_name.trim())
}

/// Why `keyword` cannot be a keyword, if it cannot: agents type it as one word.
pub fn keyword_refusal(keyword: &str) -> Option<&'static str> {
    keyword
        .contains(char::is_whitespace)
        .then_some("must be one word, without spaces")
}

/// The key under which a keyword is unique in its tenant and searched by prefix.
pub fn keyword_key(keyword: &str) -> String {
    lowercase(keyword)
}

/// The keys that begin with the key of `prefix`, as the half-open range `start..end` in
/// code point order; `end` is `None` when the range runs to the end (an empty prefix).
pub fn prefix_range(prefix: &str) -> (String, Option<String>) {
    let start = keyword_key(prefix);
    let mut end: Vec<char> = start.chars().collect();
    while let Some(last) = end.pop() {
        // The next code point after `last`, skipping the surrogates no string holds.
        let next = match u32::from(last) + 1 {
            0xD800 => Some('\u{E000}'),
            n => char::from_u32(n),
        };
        if let Some(next) = next {
            end.push(next);
            return (start, Some(end.into_iter().collect()));
        }
        // `last` is char::MAX: every key with the shorter prefix follows too.
    }
    (start, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn label_names_compare_trimmed_and_without_case() {
        assert_eq!(label_key("  Awaiting Refund "), "awaiting refund");
        assert_eq!(label_key("ÉTÉ"), label_key("été"));
    }

    #[test]
    fn keywords_are_one_word() {
        assert_eq!(keyword_refusal("refund-eu"), None);
        assert!(keyword_refusal("refund eu").is_some());
        assert!(keyword_refusal("refund\teu").is_some());
    }

    #[test]
    fn prefix_ranges() {
        assert_eq!(prefix_range(""), (String::new(), None));
        assert_eq!(prefix_range("Ab"), ("ab".into(), Some("ac".into())));
        assert_eq!(
            prefix_range("a\u{D7FF}"),
            ("a\u{D7FF}".into(), Some("a\u{E000}".into()))
        );
        assert_eq!(
            prefix_range("a\u{10FFFF}"),
            ("a\u{10FFFF}".into(), Some("b".into()))
        );
        assert_eq!(prefix_range("\u{10FFFF}"), ("\u{10FFFF}".into(), None));
    }

    #[test]
    fn a_prefix_key_is_a_prefix_of_the_whole_key() {
        // Context-dependent lowercasing would make "ΟΔΟΣ" end in a final sigma.
        assert!(keyword_key("ΟΔΟΣΣ").starts_with(&keyword_key("ΟΔΟΣ")));
    }

    proptest! {
        /// A key is in the range of a prefix exactly when it begins with the prefix's key.
        #[test]
        fn the_range_holds_exactly_the_keys_with_the_prefix(
            prefix in "[aAbé\u{10FFFF}\u{D7FF}]{0,3}",
            keyword in "[aAbcé\u{10FFFF}\u{D7FF}\u{E000}]{0,5}",
        ) {
            let key = keyword_key(&keyword);
            let (start, end) = prefix_range(&prefix);
            let in_range = key >= start && end.as_ref().is_none_or(|end| &key < end);
            prop_assert_eq!(in_range, key.starts_with(&keyword_key(&prefix)));
        }
    }
}
