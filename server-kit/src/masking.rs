//! Card numbers (PANs) are masked before anything is stored, logged or forwarded, so that
//! Switchboard never holds a full card number (PCI DSS allows at most the first six and
//! the last four digits to be shown). Every service masks every free-text field with
//! [`mask_pans`] at its boundary; this is the only implementation.
//!
//! A card number is recognised by three tests that must all pass: an issuer prefix (IIN)
//! of a major network, a length that network issues, and the Luhn checksum. Digits may be
//! of any script (fullwidth, Arabic-Indic, Devanagari…) and digit groups may be split by
//! whitespace of any kind, `-`, `.`, `/`, `_` or `%20`. Context keeps other numbers
//! alone: UUIDs and IBANs are skipped whole, digits glued to Latin letters belong to an
//! identifier (a UPS `1Z…` number, a hex string), a number after `+` is a phone number,
//! and a stretch inside a uniformly grouped longer number (a USPS tracking number) is
//! not a card number of its own.

use std::borrow::Cow;

/// Fewest digits a card number has.
pub const MIN_PAN_DIGITS: usize = 13;
/// Most digits a card number has.
pub const MAX_PAN_DIGITS: usize = 19;
/// Most separator units between two digit groups of one number, enough for
/// "4111 - 1111", "4111\r\n1111" or "12 / 27"; `%20` counts as one unit.
pub const MAX_SEPARATORS: usize = 3;

const KEEP_FIRST: usize = 6;
const KEEP_LAST: usize = 4;
/// Digits that may stand before a card number in the same run without being part of it
/// (a security code typed first: "123 4111 1111 1111 1111").
const MAX_LEADING_DIGITS: usize = 3;

/// Bit set of card lengths, bit `n` for `n` digits.
const fn lengths(list: &[u8]) -> u32 {
    let mut mask = 0;
    let mut i = 0;
    while i < list.len() {
        mask |= 1 << list[i];
        i += 1;
    }
    mask
}

const L16: u32 = lengths(&[16]);
const L16_19: u32 = lengths(&[16, 17, 18, 19]);
const L14_19: u32 = lengths(&[14, 15, 16, 17, 18, 19]);
const L13_19: u32 = lengths(&[13, 14, 15, 16, 17, 18, 19]);

/// One issuer range: card numbers whose first `digits` digits lie in `low..=high` and
/// whose length is in `lengths`.
struct Iin {
    low: u32,
    high: u32,
    digits: u32,
    lengths: u32,
}

const fn iin(low: u32, high: u32, digits: u32, lengths: u32) -> Iin {
    Iin {
        low,
        high,
        digits,
        lengths,
    }
}

/// Issuer ranges of the major networks, as published by the networks and summarised in
/// ISO/IEC 7812 registries (Wikipedia "Payment card number", 2026).
const ISSUERS: &[Iin] = &[
    iin(4, 4, 1, lengths(&[13, 16, 19])), // Visa (incl. Electron)
    iin(51, 55, 2, L16),                  // Mastercard
    iin(2221, 2720, 4, L16),              // Mastercard 2-series
    iin(34, 34, 2, lengths(&[15])),       // American Express
    iin(37, 37, 2, lengths(&[15])),       // American Express
    iin(6011, 6011, 4, L16_19),           // Discover
    iin(644, 649, 3, L16_19),             // Discover
    iin(65, 65, 2, L16_19),               // Discover, RuPay, Troy
    iin(300, 305, 3, L14_19),             // Diners Club Carte Blanche
    iin(3095, 3095, 4, L14_19),           // Diners Club International
    iin(36, 36, 2, L14_19),               // Diners Club International
    iin(38, 39, 2, L14_19),               // Diners Club International
    iin(3528, 3589, 4, L16_19),           // JCB
    iin(62, 62, 2, L16_19),               // UnionPay (incl. Discover co-brand)
    iin(81, 81, 2, L16_19),               // UnionPay, RuPay
    iin(82, 82, 2, L16),                  // RuPay
    iin(60, 60, 2, L16),                  // RuPay
    iin(508, 508, 3, L16),                // RuPay
    iin(353, 353, 3, L16),                // RuPay (JCB co-brand)
    iin(356, 356, 3, L16),                // RuPay (JCB co-brand)
    iin(2200, 2204, 4, L16_19),           // Mir
    iin(5018, 5018, 4, L13_19),           // Maestro
    iin(5020, 5020, 4, L13_19),           // Maestro
    iin(5038, 5038, 4, L13_19),           // Maestro
    iin(5893, 5893, 4, L13_19),           // Maestro
    iin(6304, 6304, 4, L13_19),           // Maestro
    iin(6759, 6759, 4, L13_19),           // Maestro, Maestro UK
    iin(6761, 6763, 4, L13_19),           // Maestro
    iin(5019, 5019, 4, L16),              // Dankort
    iin(636, 636, 3, L16_19),             // InterPayment
    iin(637, 639, 3, L16),                // InstaPayment
    iin(506099, 506198, 6, lengths(&[16, 18, 19])), // Verve
    iin(507865, 507964, 6, lengths(&[16, 18, 19])), // Verve
    iin(9792, 9792, 4, L16),              // Troy
];

/// Whether a number of `len` digits starting with `first6` (its first six digits as a
/// number) has the prefix and length of a card of some network.
fn issued(first6: u32, len: usize) -> bool {
    ISSUERS.iter().any(|i| {
        let prefix = first6 / 10u32.pow(6 - i.digits);
        (i.low..=i.high).contains(&prefix) && i.lengths & (1 << len) != 0
    })
}

/// Whether `digits` (values 0–9) pass the Luhn checksum that every card number carries.
pub fn luhn_valid(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            let d = u32::from(d);
            if i % 2 == 1 {
                let doubled = d * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// Whether `digits` form a card number: a network's prefix and length, and Luhn.
pub fn is_card_number(digits: &[u8]) -> bool {
    if !(MIN_PAN_DIGITS..=MAX_PAN_DIGITS).contains(&digits.len()) {
        return false;
    }
    let first6 = digits[..6].iter().fold(0, |n, &d| n * 10 + u32::from(d));
    issued(first6, digits.len()) && luhn_valid(digits)
}

/// The zero of every block of ten Unicode decimal digits (general category Nd), sorted.
/// Every Nd digit is `zero + value` for one of these.
const DIGIT_ZEROS: &[u32] = &[
    0x30, 0x660, 0x6F0, 0x7C0, 0x966, 0x9E6, 0xA66, 0xAE6, 0xB66, 0xBE6, 0xC66, 0xCE6, 0xD66,
    0xDE6, 0xE50, 0xED0, 0xF20, 0x1040, 0x1090, 0x17E0, 0x1810, 0x1946, 0x19D0, 0x1A80, 0x1A90,
    0x1B50, 0x1BB0, 0x1C40, 0x1C50, 0xA620, 0xA8D0, 0xA900, 0xA9D0, 0xA9F0, 0xAA50, 0xABF0, 0xFF10,
    0x104A0, 0x10D30, 0x10D40, 0x11066, 0x110F0, 0x11136, 0x111D0, 0x112F0, 0x11450, 0x114D0,
    0x11650, 0x116C0, 0x116D0, 0x116DA, 0x11730, 0x118E0, 0x11950, 0x11BF0, 0x11C50, 0x11D50,
    0x11DA0, 0x11F50, 0x16130, 0x16A60, 0x16AC0, 0x16B50, 0x16D70, 0x1CCF0, 0x1D7CE, 0x1D7D8,
    0x1D7E2, 0x1D7EC, 0x1D7F6, 0x1E140, 0x1E2F0, 0x1E4F0, 0x1E5F1, 0x1E950, 0x1FBF0,
];

/// The value of `c` if it is a decimal digit of any script.
pub fn digit_value(c: char) -> Option<u8> {
    if c.is_ascii() {
        return c.is_ascii_digit().then(|| c as u8 - b'0');
    }
    let c = u32::from(c);
    let block = DIGIT_ZEROS
        .partition_point(|&zero| zero <= c)
        .checked_sub(1)?;
    let value = c - DIGIT_ZEROS[block];
    (value < 10).then_some(value as u8)
}

/// Characters allowed between digit groups: whitespace of any kind (including
/// non-breaking and ideographic spaces), invisible joiners, and the usual punctuation
/// people and systems group card numbers with, in ASCII and fullwidth forms.
fn is_separator(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '-' | '.'
                | '/'
                | '_'
                | '\u{200B}'..='\u{200D}'
                | '\u{2060}'
                | '\u{FEFF}'
                | '\u{2010}'..='\u{2015}'
                | '\u{2212}'
                | '\u{FF0D}'
                | '\u{FF0E}'
                | '\u{FF0F}'
                | '\u{FF3F}'
        )
}

/// The length in bytes of the separator unit at the start of `rest`, if any.
fn separator_len(rest: &str) -> Option<usize> {
    if rest.starts_with("%20") {
        return Some(3);
    }
    let c = rest.chars().next()?;
    is_separator(c).then(|| c.len_utf8())
}

/// Latin letters make digits part of an identifier (`1Z…`, hex, `DE89…`). Other scripts
/// do not: Chinese or Japanese text writes numbers without spaces around them.
fn is_word_letter(c: Option<char>) -> bool {
    c.is_some_and(|c| {
        c.is_ascii_alphabetic() || matches!(c, '\u{FF21}'..='\u{FF3A}' | '\u{FF41}'..='\u{FF5A}')
    })
}

/// A stretch of consecutive digits: byte range and digit count.
#[derive(Clone, Copy)]
struct Group {
    start: usize,
    end: usize,
    digits: usize,
}

/// The group of digits starting at `start` (a digit).
fn group_at(text: &str, start: usize) -> Group {
    let mut digits = 0;
    let mut end = start;
    for c in text[start..].chars() {
        if digit_value(c).is_none() {
            break;
        }
        digits += 1;
        end += c.len_utf8();
    }
    Group { start, end, digits }
}

/// The group following `group` in the same run: after at most [`MAX_SEPARATORS`]
/// separator units, a group that is not glued to a letter.
fn next_in_run(text: &str, group: Group) -> Option<Group> {
    let mut pos = group.end;
    let mut units = 0;
    while units < MAX_SEPARATORS {
        let Some(len) = separator_len(&text[pos..]) else {
            break;
        };
        pos += len;
        units += 1;
    }
    if units == 0 || digit_value(text[pos..].chars().next()?).is_none() {
        return None;
    }
    let next = group_at(text, pos);
    (!is_word_letter(text[next.end..].chars().next())).then_some(next)
}

/// The separator text between two consecutive groups.
fn gap(text: &str, before: Group, after: Group) -> &str {
    &text[before.end..after.start]
}

/// The card number made of whole groups starting with `first`, if any: its last group
/// and its digit count. The longest match wins: a 19-digit card whose first 16 digits
/// happen to pass too must not show its last seven, and masking a security code typed
/// after a card shows less, never more.
fn card_from(text: &str, first: Group, buf: &mut [u8; MAX_PAN_DIGITS]) -> Option<(Group, usize)> {
    let mut len = 0;
    let mut group = first;
    let mut found = None;
    loop {
        if len + group.digits > MAX_PAN_DIGITS {
            return found;
        }
        for c in text[group.start..group.end].chars() {
            buf[len] = digit_value(c).unwrap_or(0);
            len += 1;
        }
        if len >= MIN_PAN_DIGITS && is_card_number(&buf[..len]) {
            found = Some((group, len));
        }
        match next_in_run(text, group) {
            Some(next) => group = next,
            None => return found,
        }
    }
}

/// Appends the card number from group `first` to group `last` to `out`, its digits
/// between the first six and the last four of `len` replaced with `*`, separators kept.
fn push_masked(out: &mut String, text: &str, first: Group, last: Group, len: usize) {
    let mut index = 0;
    let mut group = Some(first);
    let mut copied = first.start;
    while let Some(g) = group {
        out.push_str(&text[copied..g.start]);
        for c in text[g.start..g.end].chars() {
            let masked = index >= KEEP_FIRST && index < len - KEEP_LAST;
            out.push(if masked { '*' } else { c });
            index += 1;
        }
        copied = g.end;
        group = if g.start == last.start {
            None
        } else {
            next_in_run(text, g)
        };
    }
}

/// Whether a UUID (8-4-4-4-12 hex digits) starts at `pos`, ending at a word boundary.
fn uuid_len(bytes: &[u8], pos: usize) -> Option<usize> {
    const SHAPE: [usize; 5] = [8, 4, 4, 4, 12];
    let mut at = pos;
    for (i, n) in SHAPE.iter().enumerate() {
        if i > 0 {
            if bytes.get(at) != Some(&b'-') {
                return None;
            }
            at += 1;
        }
        let part = bytes.get(at..at + n)?;
        if !part.iter().all(u8::is_ascii_hexdigit) {
            return None;
        }
        at += n;
    }
    let boundary = bytes.get(at).is_none_or(|b| !b.is_ascii_alphanumeric());
    boundary.then_some(at - pos)
}

/// Whether an IBAN starts at `pos`: two letters, two check digits and 11–30 letters or
/// digits, written together or in groups of four split by one space or dash, passing the
/// ISO 13616 mod-97 check. Returns its length in bytes (the shortest valid one).
fn iban_len(bytes: &[u8], pos: usize) -> Option<usize> {
    let head = bytes.get(pos..pos + 4)?;
    if !(head[0].is_ascii_alphabetic()
        && head[1].is_ascii_alphabetic()
        && head[2].is_ascii_digit()
        && head[3].is_ascii_digit())
    {
        return None;
    }
    // Remainder mod 97 of the rearranged IBAN (BBAN, then country and check digits),
    // computed as the characters arrive; the head is folded in at each candidate end.
    let fold = |acc: u32, b: u8| -> u32 {
        let b = b.to_ascii_uppercase();
        if b.is_ascii_digit() {
            (acc * 10 + u32::from(b - b'0')) % 97
        } else {
            (acc * 100 + u32::from(b - b'A') + 10) % 97
        }
    };
    let mut at = pos + 4;
    let mut count = 0;
    let mut bban = 0;
    let mut in_group = 4;
    while count < 30 {
        match bytes.get(at) {
            Some(&b) if b.is_ascii_alphanumeric() => {
                bban = fold(bban, b);
                count += 1;
                in_group += 1;
                at += 1;
            }
            Some(b' ' | b'-')
                if in_group == 4 && bytes.get(at + 1).is_some_and(u8::is_ascii_alphanumeric) =>
            {
                in_group = 0;
                at += 1;
                continue;
            }
            _ => return None,
        }
        let at_boundary = bytes.get(at).is_none_or(|b| !b.is_ascii_alphanumeric());
        if count >= 11 && at_boundary && head.iter().fold(bban, |acc, &b| fold(acc, b)) == 1 {
            return Some(at - pos);
        }
    }
    None
}

/// Masks every card number in `text`, keeping the first six and last four digits of each
/// and every other character in place. Text without a card number is returned borrowed,
/// and text with fewer than [`MIN_PAN_DIGITS`] digits is rejected without allocating.
pub fn mask_pans(text: &str) -> Cow<'_, str> {
    if text.chars().filter(|&c| digit_value(c).is_some()).count() < MIN_PAN_DIGITS {
        return Cow::Borrowed(text);
    }
    let bytes = text.as_bytes();
    let mut out: Option<String> = None;
    let mut copied = 0;
    let mut buf = [0u8; MAX_PAN_DIGITS];
    let mut pos = 0;
    let mut prev: Option<char> = None;
    while let Some(c) = text[pos..].chars().next() {
        let word_start = !prev.is_some_and(|p| p.is_ascii_alphanumeric() || p == '-');
        let protected = (word_start && c.is_ascii_alphanumeric())
            .then(|| uuid_len(bytes, pos).or_else(|| iban_len(bytes, pos)))
            .flatten();
        if let Some(len) = protected {
            // A UUID or an IBAN: never part of a card number.
            pos += len;
            prev = text[..pos].chars().next_back();
            continue;
        }
        if is_word_letter(Some(c)) || (digit_value(c).is_some() && is_word_letter(prev)) {
            // A word of letters and digits is an identifier; skip it whole.
            let len = text[pos..]
                .find(|w: char| !is_word_letter(Some(w)) && digit_value(w).is_none())
                .unwrap_or(text.len() - pos);
            pos += len;
            prev = text[..pos].chars().next_back();
            continue;
        }
        if let Some(len) = separator_len(&text[pos..]).filter(|_| c == '%') {
            pos += len;
            prev = Some(' ');
            continue;
        }
        if digit_value(c).is_none() {
            pos += c.len_utf8();
            prev = Some(c);
            continue;
        }
        let first = group_at(text, pos);
        if is_word_letter(text[first.end..].chars().next()) {
            pos = first.end;
            prev = text[..pos].chars().next_back();
            continue;
        }
        let end = scan_run(
            text,
            first,
            prev == Some('+'),
            &mut buf,
            |card, last, len| {
                let out = out.get_or_insert_with(|| String::with_capacity(text.len()));
                out.push_str(&text[copied..card.start]);
                push_masked(out, text, card, last, len);
                copied = last.end;
            },
        );
        pos = end;
        prev = text[..pos].chars().next_back();
    }
    match out {
        Some(mut out) => {
            out.push_str(&text[copied..]);
            Cow::Owned(out)
        }
        None => Cow::Borrowed(text),
    }
}

/// Walks one run of digit groups starting at `first`, calling `mask(first, last, digits)`
/// for each card number found, and returns where the run ends.
///
/// A card number may start at the run's first group (unless the run follows `+`, making
/// it a phone number), right after a card number, or after a few leading digits (a
/// security code). Elsewhere inside a run it must be set apart from what precedes it: a
/// single group, or a gap unlike the gaps around it ("12/27 4111 1111…"). A stretch of a
/// uniformly grouped longer number ("9400 1118 9922 3197 4284 90") is not one.
fn scan_run(
    text: &str,
    first: Group,
    phone: bool,
    buf: &mut [u8; MAX_PAN_DIGITS],
    mut mask: impl FnMut(Group, Group, usize),
) -> usize {
    let mut group = first;
    let mut leading_digits = 0;
    let mut after_card = false;
    let mut gap_before: Option<&str> = None;
    let mut gap_before_previous: Option<&str> = None;
    loop {
        let first_in_run = group.start == first.start;
        let card = card_from(text, group, buf).filter(|&(last, _)| {
            if first_in_run {
                return !phone;
            }
            let Some(before) = gap_before else {
                return true;
            };
            let inner = next_in_run(text, group).map(|next| gap(text, group, next));
            after_card
                || leading_digits <= MAX_LEADING_DIGITS
                || last.start == group.start
                || inner != Some(before)
                || gap_before_previous.is_some_and(|p| p != before)
        });
        let (last, rest) = match card {
            Some((last, len)) => {
                mask(group, last, len);
                leading_digits = 0;
                after_card = true;
                (last, next_in_run(text, last))
            }
            None => {
                leading_digits += group.digits;
                after_card = false;
                (group, next_in_run(text, group))
            }
        };
        let Some(next) = rest else {
            return last.end;
        };
        gap_before_previous = gap_before;
        gap_before = Some(gap(text, last, next));
        group = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `body` with the Luhn check digit appended.
    fn with_check(body: &str) -> String {
        (0..10)
            .map(|d| format!("{body}{d}"))
            .find(|n| luhn_valid(&n.bytes().map(|b| b - b'0').collect::<Vec<_>>()))
            .unwrap()
    }

    /// `number` written with `sep` after every fourth digit.
    fn grouped(number: &str, sep: &str) -> String {
        let digits: Vec<char> = number.chars().collect();
        digits
            .chunks(4)
            .map(|c| c.iter().collect::<String>())
            .collect::<Vec<_>>()
            .join(sep)
    }

    /// ASCII digits of `text` rewritten in the script whose zero is `zero`.
    fn in_script(text: &str, zero: char) -> String {
        text.chars()
            .map(|c| match c.to_digit(10) {
                Some(d) => char::from_u32(u32::from(zero) + d).unwrap(),
                None => c,
            })
            .collect()
    }

    #[test]
    fn luhn_known_values() {
        let digits = |s: &str| s.bytes().map(|b| b - b'0').collect::<Vec<u8>>();
        assert!(luhn_valid(&digits("4111111111111111")));
        assert!(luhn_valid(&digits("79927398713")));
        assert!(!luhn_valid(&digits("4111111111111112")));
        assert!(!luhn_valid(&digits("79927398710")));
    }

    #[test]
    fn recognises_the_test_cards_of_each_network() {
        let digits = |s: &str| s.bytes().map(|b| b - b'0').collect::<Vec<u8>>();
        for card in [
            "4111111111111111",    // Visa
            "4222222222222",       // Visa, 13 digits
            "5555555555554444",    // Mastercard
            "2223003122003222",    // Mastercard 2-series
            "378282246310005",     // American Express
            "6011111111111117",    // Discover
            "6011000990139424009", // Discover, 19 digits
            "30569309025904",      // Diners Club, 14 digits
            "3530111333300000",    // JCB
            "6200000000000005",    // UnionPay
            "6759649826438453",    // Maestro UK
        ] {
            assert!(is_card_number(&digits(card)), "{card}");
        }
        for other in [
            "4111111111111112",             // Luhn fails
            &with_check("911111111111111"), // no network starts with 9…
            &with_check("41111111111111"),  // Visa has no 15-digit cards
            &with_check("378282246310000"), // Amex is 15 digits, not 16
            &with_check("171234567890"),    // a millisecond timestamp
        ] {
            assert!(!is_card_number(&digits(other)), "{other}");
        }
    }

    #[test]
    fn masks_every_separator_style() {
        let styles = [
            "", " ", "-", ".", "/", "_", "\t", "\n", "\r\n", "\u{A0}", "\u{202F}", "\u{2009}",
            "\u{FF3F}", "\u{3000}", "\u{200B}", "%20", " - ", " / ", " . ", "\u{2013}", "\u{FF0D}",
        ];
        for sep in styles {
            let text = format!("card {} thanks", grouped("4111111111111111", sep));
            let expected = format!("card {} thanks", grouped("411111******1111", sep));
            assert_eq!(mask_pans(&text), expected, "separator {sep:?}");
        }
    }

    #[test]
    fn masks_irregular_and_per_digit_grouping() {
        assert_eq!(mask_pans("3782 822463 10005"), "3782 82**** *0005");
        assert_eq!(mask_pans("4111.1111-1111 1111"), "4111.11**-**** 1111");
        assert_eq!(
            mask_pans("4 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1"),
            "4 1 1 1 1 1 * * * * * * 1 1 1 1"
        );
    }

    #[test]
    fn masks_digits_of_every_script_in_place() {
        for zero in [
            '\u{FF10}',
            '\u{660}',
            '\u{6F0}',
            '\u{966}',
            '\u{9E6}',
            '\u{E50}',
            '\u{1D7CE}',
        ] {
            for sep in ["", " ", "-", "\u{3000}"] {
                let text = in_script(&format!("pan {}.", grouped("5555555555554444", sep)), zero);
                let expected =
                    in_script(&format!("pan {}.", grouped("555555******4444", sep)), zero);
                assert_eq!(
                    mask_pans(&text),
                    expected,
                    "zero {zero:?} separator {sep:?}"
                );
            }
        }
        // Scripts mixed within one number, and CJK text glued to it.
        assert_eq!(
            mask_pans("カード４１１１1111١١١١1111です"),
            "カード４１１１11**＊＊＊＊1111です".replace('＊', "*")
        );
    }

    #[test]
    fn digit_values_cover_every_script_block() {
        for &zero in DIGIT_ZEROS {
            for value in 0..10 {
                let c = char::from_u32(zero + value).unwrap();
                assert!(c.is_numeric(), "{c:?} is not numeric");
                assert_eq!(digit_value(c), Some(value as u8), "{c:?}");
            }
        }
        assert_eq!(digit_value('7'), Some(7));
        for c in ['a', '²', '½', 'Ⅳ', '⑦', ' ', '*'] {
            assert_eq!(digit_value(c), None, "{c:?}");
        }
    }

    #[test]
    fn masks_a_number_next_to_a_security_code_or_expiry_date() {
        assert_eq!(mask_pans("4111111111111111 123"), "411111******1111 123");
        assert_eq!(
            mask_pans("4111 1111 1111 1111 12/27"),
            "4111 11** **** 1111 12/27"
        );
        assert_eq!(
            mask_pans("cvv 123 4111 1111 1111 1111"),
            "cvv 123 4111 11** **** 1111"
        );
        assert_eq!(
            mask_pans("12/27 4111 1111 1111 1111"),
            "12/27 4111 11** **** 1111"
        );
        assert_eq!(
            mask_pans("2026-05-01 4111-1111-1111-1111"),
            "2026-05-01 4111-11**-****-1111"
        );
    }

    #[test]
    fn masks_every_number_in_the_text() {
        assert_eq!(
            mask_pans("a 4111111111111111 b 5500005555555559 c"),
            "a 411111******1111 b 550000******5559 c"
        );
        assert_eq!(
            mask_pans("4111 1111 1111 1111 5555 5555 5555 4444"),
            "4111 11** **** 1111 5555 55** **** 4444"
        );
    }

    #[test]
    fn never_touches_a_uuid() {
        // Every stretch of this UUID's digits would pass for a card on its own.
        let visa = with_check("411111111111111");
        let uuid = format!(
            "{}-{}-{}-{}-123456789012",
            &visa[..8],
            &visa[8..12],
            &visa[12..],
            "1234"
        );
        assert_eq!(mask_pans(&uuid), uuid);
        let text = format!("id {uuid}, ID {}", uuid.to_uppercase());
        assert_eq!(mask_pans(&text), text);
    }

    #[test]
    fn never_touches_an_iban() {
        for iban in [
            "DE89 3704 0044 0532 0130 00",
            "DE89370400440532013000",
            "GB29 NWBK 6016 1331 9268 19",
            "BE68 5390 0754 7034",
            "FR14 2004 1010 0505 0001 3M02 606",
            "NL91 ABNA 0417 1643 00",
        ] {
            let text = format!("pay to {iban} today");
            assert_eq!(mask_pans(&text), text);
        }
        // An IBAN right before a card number protects only itself.
        assert_eq!(
            mask_pans("BE68 5390 0754 7034 4111 1111 1111 1111"),
            "BE68 5390 0754 7034 4111 11** **** 1111"
        );
    }

    #[test]
    fn leaves_phone_numbers_timestamps_and_parcels_alone() {
        let visa13 = with_check("491511234567");
        // Visa issues 13, 16 and 19 digits: a 14-digit order number starting with 4 is no card.
        let visa14 = with_check("4111111111111");
        for text in [
            format!("+{visa13}"),
            format!("call +{} {} {}", &visa13[..2], &visa13[2..5], &visa13[5..]),
            "at 1767225600000".to_owned(),
            "1Z999AA10123456784".to_owned(),
            format!("9400 {}", grouped(&with_check("411111111111111111"), " ")),
            format!("order 114-{}-{}", &visa14[..7], &visa14[7..]),
        ] {
            assert!(matches!(mask_pans(&text), Cow::Borrowed(_)), "{text}");
        }
    }

    #[test]
    fn digits_glued_to_latin_letters_are_an_identifier() {
        for text in [
            "ref4111111111111111",
            "4111111111111111x",
            "AB 4111 1111 1111 1111z",
        ] {
            assert_eq!(mask_pans(text), text);
        }
    }

    #[test]
    fn too_many_separators_split_the_number() {
        let text = "4111    1111    1111    1111";
        assert_eq!(mask_pans(text), text);
        assert_eq!(
            mask_pans("4111%20%201111%201111%201111"),
            "4111%20%2011**%20****%201111"
        );
    }

    #[test]
    fn text_without_a_card_number_is_borrowed() {
        for text in [
            "",
            "hello",
            "order A-1001 on 2024-05-01, call +1 555 0100",
            "4111111111111112",
            "123456789012",
            "grüße 😀 4111",
            "%20%20%20 1234",
        ] {
            assert!(matches!(mask_pans(text), Cow::Borrowed(_)), "{text}");
        }
    }

    #[test]
    fn keeps_multibyte_text_around_a_number() {
        assert_eq!(
            mask_pans("café 4111111111111111 ✓"),
            "café 411111******1111 ✓"
        );
    }
}
