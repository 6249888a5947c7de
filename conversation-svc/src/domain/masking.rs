//! Card numbers (PANs) are masked before anything is stored, logged or forwarded, so that
//! Switchboard never holds a full card number (PCI DSS allows at most the first six and
//! the last four digits to be shown).

use std::borrow::Cow;

/// Fewest digits a card number has.
pub const MIN_PAN_DIGITS: usize = 13;
/// Most digits a card number has.
pub const MAX_PAN_DIGITS: usize = 19;
/// Most separator characters (spaces or dashes) allowed between two digits of one number,
/// enough for "4111 1111", "4111-1111" and "4111 - 1111".
pub const MAX_SEPARATORS: usize = 3;

const KEEP_FIRST: usize = 6;
const KEEP_LAST: usize = 4;

fn is_separator(c: char) -> bool {
    c == ' ' || c == '-'
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

/// Masks every card number in `text`.
///
/// A card number is 13 to 19 digits, possibly split into groups by spaces or dashes (at
/// most [`MAX_SEPARATORS`] between two digits), that pass the Luhn check. Candidates are
/// whole groups and runs of consecutive whole groups, so "4111 1111 1111 1111 123" (a
/// card number and its security code) is caught while a long order number that merely
/// contains a Luhn-valid stretch is left alone. Each card number keeps its first six and
/// last four digits; the digits between become `*`, separators stay. Text without a card
/// number is returned unchanged (borrowed).
pub fn mask_pans(text: &str) -> Cow<'_, str> {
    let mut chars: Vec<char> = text.chars().collect();
    let mut changed = false;
    // Masking splits groups, which can expose a new candidate made of what is left: repeat
    // until nothing changes (in practice one more pass).
    while mask_once(&mut chars) {
        changed = true;
    }
    if changed {
        Cow::Owned(chars.into_iter().collect())
    } else {
        Cow::Borrowed(text)
    }
}

/// One masking pass over `chars`; whether anything was masked.
fn mask_once(chars: &mut [char]) -> bool {
    let mut masked = Vec::new();
    for groups in digit_runs(chars) {
        for start in 0..groups.len() {
            let mut window: Vec<usize> = Vec::new();
            for group in &groups[start..] {
                window.extend_from_slice(group);
                if window.len() > MAX_PAN_DIGITS {
                    break;
                }
                if window.len() >= MIN_PAN_DIGITS {
                    let digits: Vec<u8> = window.iter().map(|&i| digit_value(chars[i])).collect();
                    if luhn_valid(&digits) {
                        masked.extend_from_slice(&window[KEEP_FIRST..window.len() - KEEP_LAST]);
                    }
                }
            }
        }
    }
    for &pos in &masked {
        chars[pos] = '*';
    }
    !masked.is_empty()
}

fn digit_value(c: char) -> u8 {
    c.to_digit(10).map(|d| d as u8).unwrap_or(0)
}

/// Each maximal run of digit groups: a group is a stretch of consecutive ASCII digits
/// (their positions), and two groups belong to one run when at most [`MAX_SEPARATORS`]
/// spaces or dashes separate them.
fn digit_runs(chars: &[char]) -> Vec<Vec<Vec<usize>>> {
    let mut runs = Vec::new();
    let mut run: Vec<Vec<usize>> = Vec::new();
    let mut group: Vec<usize> = Vec::new();
    let mut gap = 0;
    for (i, &c) in chars.iter().enumerate() {
        if c.is_ascii_digit() {
            if gap > 0 {
                run.push(std::mem::take(&mut group));
            }
            group.push(i);
            gap = 0;
        } else if is_separator(c) && !group.is_empty() && gap < MAX_SEPARATORS {
            gap += 1;
        } else {
            if !group.is_empty() {
                run.push(std::mem::take(&mut group));
            }
            if !run.is_empty() {
                runs.push(std::mem::take(&mut run));
            }
            gap = 0;
        }
    }
    if !group.is_empty() {
        run.push(group);
    }
    if !run.is_empty() {
        runs.push(run);
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luhn_known_values() {
        let digits = |s: &str| s.bytes().map(|b| b - b'0').collect::<Vec<u8>>();
        assert!(luhn_valid(&digits("4111111111111111")));
        assert!(luhn_valid(&digits("5500005555555559")));
        assert!(luhn_valid(&digits("378282246310005")));
        assert!(luhn_valid(&digits("79927398713")));
        assert!(!luhn_valid(&digits("4111111111111112")));
        assert!(!luhn_valid(&digits("79927398710")));
    }

    #[test]
    fn masks_plain_spaced_and_dashed_numbers() {
        assert_eq!(mask_pans("4111111111111111"), "411111******1111");
        assert_eq!(
            mask_pans("card 4111 1111 1111 1111 please"),
            "card 4111 11** **** 1111 please"
        );
        assert_eq!(mask_pans("4111-1111-1111-1111."), "4111-11**-****-1111.");
        assert_eq!(mask_pans("amex 378282246310005"), "amex 378282*****0005");
        // 13 and 19 digits, the shortest and longest.
        assert_eq!(mask_pans("4222222222222"), "422222***2222");
        assert_eq!(mask_pans("6011000990139424009"), "601100*********4009");
        assert_eq!(mask_pans("6011000990139424006"), "6011000990139424006");
    }

    #[test]
    fn masks_a_number_followed_or_preceded_by_more_digits() {
        assert_eq!(mask_pans("4111111111111111 123"), "411111******1111 123");
        assert_eq!(
            mask_pans("4111 1111 1111 1111 12/27"),
            "4111 11** **** 1111 12/27"
        );
        assert_eq!(
            mask_pans("cvv 123 4111111111111111"),
            "cvv 123 411111******1111"
        );
    }

    #[test]
    fn a_luhn_valid_stretch_inside_a_longer_number_is_not_a_card_number() {
        // 4111111111111112 fails Luhn, although its last 13 digits pass.
        assert!(luhn_valid(&[1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2]));
        assert!(!luhn_valid(&[
            4, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2
        ]));
        let text = "order 4111111111111112";
        assert_eq!(mask_pans(text), text);
    }

    #[test]
    fn masks_every_number_in_the_text() {
        let out = mask_pans("a 4111111111111111 b 5500005555555559 c");
        assert_eq!(out, "a 411111******1111 b 550000******5559 c");
    }

    #[test]
    fn leaves_other_text_alone() {
        for text in [
            "",
            "hello",
            "order A-1001 on 2024-05-01, call +1 555 0100",
            "4111111111111112",
            "123456789012",
            "grüße 😀 4111",
            "4111111111111111".get(..12).unwrap(),
        ] {
            assert!(matches!(mask_pans(text), Cow::Borrowed(_)), "{text}");
        }
    }

    #[test]
    fn too_many_separators_split_the_number() {
        // Four spaces between groups: two short numbers, neither a card number.
        let text = "4111    1111    1111    1111";
        assert_eq!(mask_pans(text), text);
    }

    #[test]
    fn keeps_multibyte_text_around_a_number() {
        assert_eq!(
            mask_pans("café 4111111111111111 ✓"),
            "café 411111******1111 ✓"
        );
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    /// An independent statement of "contains a card number": starting where a group of
    /// digits starts, some whole groups in a row (each pair of digits at most
    /// `MAX_SEPARATORS` spaces or dashes apart) hold 13–19 digits that pass Luhn.
    fn has_pan(text: &str) -> bool {
        let chars: Vec<char> = text.chars().collect();
        for start in 0..chars.len() {
            let group_start =
                chars[start].is_ascii_digit() && (start == 0 || !chars[start - 1].is_ascii_digit());
            if !group_start {
                continue;
            }
            let mut digits = Vec::new();
            let mut gap = 0;
            for (i, &c) in chars.iter().enumerate().skip(start) {
                if c.is_ascii_digit() {
                    digits.push(c as u8 - b'0');
                    gap = 0;
                    let group_end = chars.get(i + 1).is_none_or(|n| !n.is_ascii_digit());
                    if group_end
                        && (MIN_PAN_DIGITS..=MAX_PAN_DIGITS).contains(&digits.len())
                        && luhn_valid(&digits)
                    {
                        return true;
                    }
                    if digits.len() > MAX_PAN_DIGITS {
                        break;
                    }
                } else if (c == ' ' || c == '-') && gap < MAX_SEPARATORS {
                    gap += 1;
                } else {
                    break;
                }
            }
        }
        false
    }

    /// A random card number of 13 to 19 digits with a correct check digit.
    fn pan() -> impl Strategy<Value = Vec<u8>> {
        (12usize..=18).prop_flat_map(|len| {
            prop::collection::vec(0u8..10, len).prop_map(|mut body| {
                body.push(0);
                let check = (0..10).find(|&d| {
                    *body.last_mut().unwrap() = d;
                    luhn_valid(&body)
                });
                *body.last_mut().unwrap() = check.unwrap();
                body
            })
        })
    }

    fn render(digits: &[u8], separators: &[u8]) -> String {
        let mut out = String::new();
        for (i, d) in digits.iter().enumerate() {
            if i > 0 {
                match separators[i % separators.len()] {
                    1 => out.push(' '),
                    2 => out.push('-'),
                    _ => {}
                }
            }
            out.push(char::from(b'0' + d));
        }
        out
    }

    fn stripped(text: &str) -> String {
        text.chars().filter(|c| *c != ' ' && *c != '-').collect()
    }

    proptest! {
        /// Text without a card number comes back unchanged, and masked text never holds one.
        #[test]
        fn only_card_numbers_change(text in "[0-9 \\-a-z]{0,80}") {
            let out = mask_pans(&text);
            if !has_pan(&text) {
                prop_assert_eq!(&*out, text.as_str());
            }
            prop_assert!(!has_pan(&out), "still a card number in {:?}", out);
            prop_assert_eq!(out.chars().count(), text.chars().count());
            for (a, b) in text.chars().zip(out.chars()) {
                prop_assert!(a == b || (a.is_ascii_digit() && b == '*'));
            }
        }

        /// Digit-heavy text, where long runs that fail Luhn are common.
        #[test]
        fn long_digit_runs_without_a_valid_checksum_stay(text in "[0-9]{13,19}") {
            let out = mask_pans(&text);
            if !has_pan(&text) {
                prop_assert_eq!(&*out, text.as_str());
            } else {
                prop_assert_ne!(&*out, text.as_str());
            }
        }

        /// An embedded card number, however it is split, is masked to its first six and last
        /// four digits, and the full number appears nowhere in the output.
        #[test]
        fn embedded_card_numbers_are_masked(
            digits in pan(),
            separators in prop::collection::vec(0u8..3, 1..5),
            before in "[a-z .,!?]{0,20}",
            after in "[a-z .,!?]{0,20}",
        ) {
            let number = render(&digits, &separators);
            let text = format!("{before}x {number} y{after}");
            let out = mask_pans(&text);
            let full: String = digits.iter().map(|d| char::from(b'0' + d)).collect();
            let n = full.len();
            let expected = format!("{}{}{}", &full[..6], "*".repeat(n - 10), &full[n - 4..]);
            prop_assert!(!stripped(&out).contains(&full), "{:?}", out);
            prop_assert!(stripped(&out).contains(&expected), "{:?} lacks {}", out, expected);
            let head = format!("{before}x ");
            let tail = format!(" y{after}");
            prop_assert!(out.starts_with(&head));
            prop_assert!(out.ends_with(&tail));
        }
    }
}
