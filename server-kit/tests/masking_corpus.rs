//! Corpus test of card-number masking: deterministic card numbers of every major network
//! in every separator style and digit script must all be masked (recall 100%), while
//! numbers that merely pass Luhn (IBANs, UUIDs, phone numbers, timestamps, parcel and
//! order numbers) must stay untouched in at least 99% of cases per kind. The figures are
//! printed (run with `--no-capture`) and recorded in docs/security.md.

use switchboard_server_kit::masking::{digit_value, luhn_valid, mask_pans};

/// SplitMix64: a seeded generator so the corpus is the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn range(&mut self, low: u64, high: u64) -> u64 {
        low + self.below(high - low + 1)
    }

    fn digits(&mut self, n: usize) -> String {
        (0..n)
            .map(|_| char::from(b'0' + self.below(10) as u8))
            .collect()
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

fn digit_values(s: &str) -> Vec<u8> {
    s.bytes().map(|b| b - b'0').collect()
}

/// `body` with its Luhn check digit appended.
fn with_check(body: &str) -> String {
    (0..10)
        .map(|d| format!("{body}{d}"))
        .find(|n| luhn_valid(&digit_values(n)))
        .unwrap()
}

/// Networks with an issuer prefix range (inclusive, same number of digits) and lengths.
const NETWORKS: &[(&str, u64, u64, &[usize])] = &[
    ("visa", 4, 4, &[13, 16, 19]),
    ("mastercard", 51, 55, &[16]),
    ("mastercard-2", 2221, 2720, &[16]),
    ("amex-34", 34, 34, &[15]),
    ("amex-37", 37, 37, &[15]),
    ("discover-6011", 6011, 6011, &[16, 19]),
    ("discover-644", 644, 649, &[16]),
    ("discover-65", 65, 65, &[16]),
    ("diners-300", 300, 305, &[14]),
    ("diners-36", 36, 36, &[14, 16]),
    ("diners-38", 38, 39, &[16]),
    ("jcb", 3528, 3589, &[16, 19]),
    ("unionpay", 62, 62, &[16, 17, 18, 19]),
    ("maestro", 6759, 6759, &[13, 16, 19]),
    ("maestro-5018", 5018, 5018, &[16]),
    ("mir", 2200, 2204, &[16]),
    ("rupay-60", 60, 60, &[16]),
    ("rupay-508", 508, 508, &[16]),
    ("dankort", 5019, 5019, &[16]),
    ("verve", 506099, 506198, &[16, 19]),
    ("troy", 9792, 9792, &[16]),
];

/// Separator styles between digit groups.
const SEPARATORS: &[&str] = &[
    "", " ", "-", ".", "/", "_", "\t", "\n", "\r\n", "\u{A0}", "\u{202F}", "\u{2009}", "\u{2003}",
    "\u{3000}", "\u{200B}", "%20", " - ", " / ", "  ", ".-", "\u{2013}", "\u{FF0D}", "\u{FF0E}",
    "\u{FF0F}", "\u{FF3F}",
];

/// Zeros of the digit scripts a number may be written in.
const SCRIPTS: &[char] = &[
    '0', '\u{FF10}', '\u{660}', '\u{6F0}', '\u{966}', '\u{9E6}', '\u{E50}', '\u{1040}',
];

/// Text around a number; `{}` is replaced by the number.
const CONTEXTS: &[&str] = &[
    "{}",
    "my card is {} thanks",
    "pan: {}.",
    "({})",
    "カード番号{}です",
    "رقم البطاقة {} شكرا",
    "card {} cvv 123",
    "cvv 123 {}",
    "{} exp 12/27",
    "«{}»",
];

/// How a card number of `len` digits is split into groups.
fn grouping(len: usize, style: usize) -> Vec<usize> {
    match (len, style % 3) {
        (15, 0) => vec![4, 6, 5],
        (14, 0) => vec![4, 6, 4],
        (_, 0) | (_, 1) => {
            let mut groups = vec![4; len / 4];
            if !len.is_multiple_of(4) {
                groups.push(len % 4);
            }
            groups
        }
        _ => vec![len],
    }
}

fn render(digits: &str, groups: &[usize], sep: &str, zero: char) -> String {
    let mut out = String::new();
    let mut at = 0;
    for (i, n) in groups.iter().enumerate() {
        if i > 0 {
            out.push_str(sep);
        }
        for c in digits[at..at + n].chars() {
            let d = c.to_digit(10).unwrap();
            out.push(char::from_u32(u32::from(zero) + d).unwrap());
        }
        at += n;
    }
    out
}

/// The digits of `text` (any script, as ASCII) and `*`, in order; separators and letters
/// dropped. The corpus contexts hold no other digits except the explicit cvv and expiry.
fn digits_and_stars(text: &str) -> String {
    text.replace("%20", " ")
        .chars()
        .filter_map(|c| match c {
            '*' => Some('*'),
            c => digit_value(c).map(|d| char::from(b'0' + d)),
        })
        .collect()
}

fn card(rng: &mut Rng, low: u64, high: u64, len: usize) -> String {
    let prefix = rng.range(low, high).to_string();
    let body = format!("{prefix}{}", rng.digits(len - prefix.len() - 1));
    with_check(&body)
}

#[test]
fn every_card_number_is_masked() {
    let mut rng = Rng(0x5EED_CA4D);
    let mut total = 0;
    let mut missed = Vec::new();
    for &(network, low, high, lengths) in NETWORKS {
        for i in 0..60 {
            let len = lengths[i % lengths.len()];
            let number = card(&mut rng, low, high, len);
            for (s, sep) in SEPARATORS.iter().enumerate() {
                let zero = *rng.pick(SCRIPTS);
                let context = *rng.pick(CONTEXTS);
                let written = render(&number, &grouping(len, i + s), sep, zero);
                let text = context.replace("{}", &written);
                let out = mask_pans(&text);
                let expected = format!(
                    "{}{}{}",
                    &number[..6],
                    "*".repeat(len - 10),
                    &number[len - 4..]
                );
                total += 1;
                if !digits_and_stars(&out).contains(&expected)
                    || digits_and_stars(&out).contains(&number)
                {
                    missed.push(format!("{network}: {text:?} -> {out:?}"));
                }
            }
        }
    }
    let recall = 100.0 * (total - missed.len()) as f64 / total as f64;
    eprintln!(
        "card numbers: {total} ({} networks × 60 × {} separator styles, {} scripts, {} contexts); recall {recall:.2}%",
        NETWORKS.len(),
        SEPARATORS.len(),
        SCRIPTS.len(),
        CONTEXTS.len()
    );
    assert!(
        missed.is_empty(),
        "{} missed, e.g. {:#?}",
        missed.len(),
        &missed[..missed.len().min(10)]
    );
}

/// An IBAN of `country` with a random BBAN of the country's shape and valid check digits.
fn iban(rng: &mut Rng, country: &str, shape: &str) -> String {
    let bban: String = shape
        .chars()
        .map(|k| match k {
            'a' => char::from(b'A' + rng.below(26) as u8),
            'c' if rng.below(2) == 0 => char::from(b'A' + rng.below(26) as u8),
            _ => char::from(b'0' + rng.below(10) as u8),
        })
        .collect();
    let numeric: String = format!("{bban}{country}00")
        .chars()
        .map(|c| match c.to_digit(10) {
            Some(d) => d.to_string(),
            None => (c as u32 - 'A' as u32 + 10).to_string(),
        })
        .collect();
    let rem = numeric
        .bytes()
        .fold(0u32, |acc, b| (acc * 10 + u32::from(b - b'0')) % 97);
    format!("{country}{:02}{bban}", 98 - rem)
}

fn spaced_by_four(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    chars
        .chunks(4)
        .map(|c| c.iter().collect::<String>())
        .collect::<Vec<_>>()
        .join(" ")
}

fn uuid(rng: &mut Rng, digits_only: bool, upper: bool) -> String {
    let hex = |rng: &mut Rng, n: usize| -> String {
        (0..n)
            .map(|_| {
                let v = if digits_only {
                    rng.below(10)
                } else {
                    rng.below(16)
                } as u32;
                let c = char::from_digit(v, 16).unwrap();
                if upper { c.to_ascii_uppercase() } else { c }
            })
            .collect()
    };
    format!(
        "{}-{}-{}-{}-{}",
        hex(rng, 8),
        hex(rng, 4),
        hex(rng, 4),
        hex(rng, 4),
        hex(rng, 12)
    )
}

fn e164(rng: &mut Rng) -> String {
    // (country code, national number length)
    let (cc, n) = *rng.pick(&[
        ("1", 10),
        ("44", 10),
        ("49", 11),
        ("49", 10),
        ("33", 9),
        ("91", 10),
        ("86", 11),
        ("7", 10),
        ("55", 11),
        ("61", 9),
        ("81", 10),
        ("34", 9),
        ("39", 10),
        ("52", 10),
        ("62", 11),
    ]);
    let national = rng.digits(n);
    match rng.below(3) {
        0 => format!("+{cc}{national}"),
        1 => format!("+{cc} {} {}", &national[..3], &national[3..]),
        _ => format!(
            "+{cc} {}-{}-{}",
            &national[..3],
            &national[3..6],
            &national[6..]
        ),
    }
}

fn national_phone(rng: &mut Rng) -> String {
    let d = |rng: &mut Rng, n| rng.digits(n);
    match rng.below(9) {
        0 => format!("0{}{}", rng.range(150, 179), d(rng, 8)), // DE mobile
        1 => format!("0{} {}", rng.range(30, 89), d(rng, 8)),  // DE landline
        2 => format!("07{} {}", d(rng, 3), d(rng, 6)),         // UK mobile
        3 => format!("({}) {}-{}", rng.range(201, 989), d(rng, 3), d(rng, 4)), // US
        4 => format!("{}-{}-{}", rng.range(201, 989), d(rng, 3), d(rng, 4)),
        5 => format!("{}.{}.{}", rng.range(201, 989), d(rng, 3), d(rng, 4)),
        6 => format!(
            "0{} {} {} {} {}",
            rng.range(1, 7),
            d(rng, 2),
            d(rng, 2),
            d(rng, 2),
            d(rng, 2)
        ), // FR
        7 => format!("1{} {} {}", rng.range(30, 99), d(rng, 4), d(rng, 4)), // CN mobile
        _ => format!("{}{}", rng.range(6, 9), d(rng, 9)),                   // IN mobile
    }
}

fn parcel(rng: &mut Rng) -> String {
    match rng.below(6) {
        0 => {
            let alnum: String = (0..6)
                .map(|_| char::from(*rng.pick(b"0123456789ABCDEFGHJKLMNPRSTVWXYZ")))
                .collect();
            format!("1Z{alnum}{}{}", rng.range(1, 99), rng.digits(8)) // UPS
        }
        1 | 2 => {
            let prefix = *rng.pick(&[
                "9400", "9205", "9407", "9270", "9303", "9361", "9505", "7000",
            ]);
            let len = rng.range(20, 22) as usize;
            let number = with_check(&format!("{prefix}{}", rng.digits(len - 5)));
            if rng.below(2) == 0 {
                number
            } else {
                spaced_by_four(&number)
            } // USPS
        }
        3 => rng.digits(10),                  // DHL Express
        4 => format!("JD{}", rng.digits(18)), // DHL eCommerce
        _ => with_check(&rng.digits(11)),     // FedEx 12 digits
    }
}

fn order_number(rng: &mut Rng) -> String {
    match rng.below(5) {
        0 => format!(
            "{}-{}-{}",
            rng.range(100, 199),
            rng.digits(7),
            rng.digits(7)
        ), // Amazon
        1 => format!("#{}", rng.range(1001, 9_999_999_999)),
        2 => format!("ORD-{}-{:06}", rng.range(2015, 2030), rng.below(1_000_000)),
        3 => format!(
            "{}{:02}{:02}-{}",
            rng.range(2015, 2030),
            rng.range(1, 12),
            rng.range(1, 28),
            rng.digits(6)
        ),
        _ => format!("SO{}", rng.digits(10)),
    }
}

const IBAN_COUNTRIES: &[(&str, &str)] = &[
    ("DE", "000000000000000000"),
    ("GB", "aaaa00000000000000"),
    ("FR", "0000000000cccccccccc000"),
    ("NL", "aaaa0000000000"),
    ("BE", "000000000000"),
    ("ES", "00000000000000000000"),
    ("IT", "a0000000000cccccccccccc"),
    ("CH", "00000ccccccccccccc"),
    ("PL", "000000000000000000000000"),
    ("NO", "00000000000"),
    ("AT", "0000000000000000"),
    ("SA", "00cccccccccccccccccc"),
];

#[test]
fn other_numbers_are_left_alone() {
    const SAMPLES: usize = 5_000;
    let mut rng = Rng(0x0DD_BA11);
    type Make = fn(&mut Rng) -> String;
    let kinds: &[(&str, Make, f64)] = &[
        (
            "IBAN",
            |rng| {
                let (cc, shape) = *rng.pick(IBAN_COUNTRIES);
                let iban = iban(rng, cc, shape);
                if rng.below(2) == 0 {
                    iban
                } else {
                    spaced_by_four(&iban)
                }
            },
            0.0,
        ),
        (
            "UUID",
            |rng| {
                let digits_only = rng.below(2) == 0;
                let upper = rng.below(2) == 0;
                uuid(rng, digits_only, upper)
            },
            0.0,
        ),
        ("E.164 phone", e164, 1.0),
        ("national phone", national_phone, 1.0),
        (
            "ms timestamp",
            |rng| rng.range(1_000_000_000_000, 2_500_000_000_000).to_string(),
            1.0,
        ),
        ("parcel", parcel, 1.0),
        ("order number", order_number, 1.0),
    ];
    let mut failures = Vec::new();
    for &(kind, make, max_percent) in kinds {
        let mut touched = Vec::new();
        for _ in 0..SAMPLES {
            let number = make(&mut rng);
            let context = *rng.pick(&["{}", "ref {} thanks", "({})", "ID: {}."]);
            let text = context.replace("{}", &number);
            let out = mask_pans(&text);
            if out != text {
                touched.push(format!("{text:?} -> {out:?}"));
            }
        }
        let percent = 100.0 * touched.len() as f64 / SAMPLES as f64;
        eprintln!(
            "{kind}: {SAMPLES} samples, {} masked ({percent:.2}%)",
            touched.len()
        );
        if percent > max_percent || (max_percent == 0.0 && !touched.is_empty()) {
            failures.push(format!(
                "{kind}: {percent:.2}% e.g. {:?}",
                &touched[..touched.len().min(5)]
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn random_text_only_loses_card_digits() {
    let alphabet: Vec<char> = "0123456789012345678901234567890123456789 -./_\t\n\u{A0}%2abcZ+١٢٣４"
        .chars()
        .collect();
    let mut rng = Rng(42);
    for _ in 0..20_000 {
        let len = rng.below(60) as usize;
        let text: String = (0..len).map(|_| *rng.pick(&alphabet)).collect();
        let out = mask_pans(&text);
        assert_eq!(out.chars().count(), text.chars().count(), "{text:?}");
        for (a, b) in text.chars().zip(out.chars()) {
            assert!(
                a == b || (digit_value(a).is_some() && b == '*'),
                "{text:?} -> {out:?}"
            );
        }
        assert_eq!(mask_pans(&out), out, "masking twice changes {text:?}");
    }
}
