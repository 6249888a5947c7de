//! CSV files as RFC 4180 describes them, cut into chunks for a server stream.
//!
//! Records end with CRLF; a field is quoted when it holds a comma, a double quote, CR or
//! LF, and a double quote inside a quoted field is doubled. A field a spreadsheet would
//! run as a formula is written with a leading `'`. Chunks end on record
//! boundaries, so each chunk can report how many data rows it completes.

use std::borrow::Cow;

use chrono::{DateTime, SecondsFormat, Utc};
use chrono_tz::Tz;

/// The size a chunk grows to before it is handed out (a chunk ends after the record that
/// reaches it, so it may be a little larger).
pub const CHUNK_BYTES: usize = 64 * 1024;

/// One piece of a CSV file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chunk {
    /// The next bytes of the file.
    pub bytes: Vec<u8>,
    /// Data rows (header excluded) in this chunk and all before it.
    pub rows_so_far: i64,
}

/// Characters that make a spreadsheet read a cell as a formula (or, for tab and CR, that
/// some spreadsheets strip before doing so).
const FORMULA_STARTS: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

/// Whether a spreadsheet opening the file could run `value` as a formula: it begins with
/// a formula character and is not simply a number (`-0.5` and `+3` stay as they are).
fn is_formula_risk(value: &str) -> bool {
    value.starts_with(FORMULA_STARTS) && value.parse::<f64>().is_err()
}

/// `value` as one CSV field: a possible formula gets a leading `'`, so that spreadsheets
/// show it as text instead of running it (CSV injection); quoted only when it must be.
pub fn field(value: &str) -> Cow<'_, str> {
    let value: Cow<'_, str> = if is_formula_risk(value) {
        Cow::Owned(format!("'{value}"))
    } else {
        Cow::Borrowed(value)
    };
    if value.contains([',', '"', '\r', '\n']) {
        Cow::Owned(format!("\"{}\"", value.replace('"', "\"\"")))
    } else {
        value
    }
}

/// Appends `value` as one CSV field, as [`field`] writes it; the common case (no formula
/// character first, nothing to quote) is copied as it is.
fn push_field(out: &mut Vec<u8>, value: &str) {
    let plain = !value.starts_with(FORMULA_STARTS)
        && !value
            .bytes()
            .any(|b| matches!(b, b',' | b'"' | b'\r' | b'\n'));
    if plain {
        out.extend_from_slice(value.as_bytes());
    } else {
        out.extend_from_slice(field(value).as_bytes());
    }
}

fn push_record<S: AsRef<str>>(out: &mut Vec<u8>, fields: &[S]) {
    let mut record = Record { out, fields: 0 };
    for value in fields {
        record.text(value.as_ref());
    }
    out.extend_from_slice(b"\r\n");
}

/// One record being written into a [`Writer`], a field at a time, so that a large export
/// writes its values straight into the file rather than building a `String` for each.
#[derive(Debug)]
pub struct Record<'a> {
    out: &'a mut Vec<u8>,
    fields: usize,
}

impl Record<'_> {
    fn next_field(&mut self) -> &mut Vec<u8> {
        if self.fields > 0 {
            self.out.push(b',');
        }
        self.fields += 1;
        self.out
    }

    /// A text field, neutralised and quoted as [`field`] says.
    pub fn text(&mut self, value: &str) {
        push_field(self.next_field(), value);
    }

    /// An empty field.
    pub fn empty(&mut self) {
        self.next_field();
    }

    /// A whole number (never a formula risk, never quoted).
    pub fn number(&mut self, value: i64) {
        use std::io::Write as _;
        let _ = write!(self.next_field(), "{value}");
    }

    /// A duration in microseconds, as [`seconds`] writes it.
    pub fn seconds(&mut self, micros: i64) {
        push_seconds(self.next_field(), micros);
    }

    /// An instant (microseconds since the epoch) as [`local_time`] writes it.
    pub fn time(&mut self, micros: i64, times: &mut LocalTimes) {
        times.write(self.next_field(), micros);
    }
}

/// A CSV file written a record at a time and handed out in chunks of about
/// `chunk_bytes`, each ending on a record boundary; the first starts with the header.
#[derive(Debug)]
pub struct Writer {
    buffer: Vec<u8>,
    rows_so_far: i64,
    chunk_bytes: usize,
    header_pending: bool,
}

impl Writer {
    /// A file with `header`, cut into chunks of about `chunk_bytes`.
    pub fn new(header: &[&str], chunk_bytes: usize) -> Writer {
        let chunk_bytes = chunk_bytes.max(1);
        let mut buffer = Vec::with_capacity(chunk_bytes.min(CHUNK_BYTES) + 256);
        push_record(&mut buffer, header);
        Writer {
            buffer,
            rows_so_far: 0,
            chunk_bytes,
            header_pending: true,
        }
    }

    /// Adds a data row; returns a chunk once the buffer reaches the chunk size.
    pub fn push<S: AsRef<str>>(&mut self, row: &[S]) -> Option<Chunk> {
        push_record(&mut self.buffer, row);
        self.rows_so_far += 1;
        (self.buffer.len() >= self.chunk_bytes).then(|| self.take())
    }

    /// The rest of the file: the last chunk, or the header alone for a file without rows;
    /// `None` when everything was handed out already.
    pub fn finish(&mut self) -> Option<Chunk> {
        (!self.buffer.is_empty() || self.header_pending).then(|| self.take())
    }

    /// Adds a data row that `write` writes field by field (see [`Record`]); returns a chunk
    /// once the buffer reaches the chunk size.
    pub fn record(&mut self, write: impl FnOnce(&mut Record<'_>)) -> Option<Chunk> {
        write(&mut Record {
            out: &mut self.buffer,
            fields: 0,
        });
        self.buffer.extend_from_slice(b"\r\n");
        self.rows_so_far += 1;
        (self.buffer.len() >= self.chunk_bytes).then(|| self.take())
    }

    /// Data rows written so far.
    pub fn rows(&self) -> i64 {
        self.rows_so_far
    }

    fn take(&mut self) -> Chunk {
        self.header_pending = false;
        Chunk {
            bytes: std::mem::take(&mut self.buffer),
            rows_so_far: self.rows_so_far,
        }
    }
}

/// Counts by id in one cell: `id:count` pairs in id order, separated by `;` (ids are
/// UUIDs, which hold neither), empty when there are none.
pub fn counts(counts: &std::collections::BTreeMap<String, i64>) -> String {
    counts
        .iter()
        .map(|(id, count)| format!("{id}:{count}"))
        .collect::<Vec<_>>()
        .join(";")
}

/// A duration in microseconds as decimal seconds without trailing zeros: `660`, `1.5`,
/// `-0.000001`.
pub fn seconds(micros: i64) -> String {
    let mut out = Vec::new();
    push_seconds(&mut out, micros);
    String::from_utf8_lossy(&out).into_owned()
}

/// Appends [`seconds`]' text for `micros` (digits, a sign and a point only).
fn push_seconds(out: &mut Vec<u8>, micros: i64) {
    use std::io::Write as _;
    if micros < 0 {
        out.push(b'-');
    }
    let abs = micros.unsigned_abs();
    let (whole, fraction) = (abs / 1_000_000, abs % 1_000_000);
    let _ = write!(out, "{whole}");
    if fraction != 0 {
        let mut digits = *b"000000";
        put_digits(&mut digits, fraction);
        let len = 6 - digits.iter().rev().take_while(|d| **d == b'0').count();
        out.push(b'.');
        out.extend_from_slice(&digits[..len]);
    }
}

/// An instant (microseconds since the epoch) as RFC 3339 local time in `zone` with its
/// offset, `2026-03-02T00:00:00+01:00`, so that a period start reads as the local midnight
/// it is and still names one instant. Seconds carry a fraction only when there is one.
pub fn local_time(micros: i64, zone: Tz) -> String {
    DateTime::<Utc>::from_timestamp_micros(micros)
        .map(|utc| {
            utc.with_timezone(&zone)
                .to_rfc3339_opts(SecondsFormat::AutoSi, false)
        })
        .unwrap_or_default()
}

/// Instants written as [`local_time`] writes them, for the many times of a large export:
/// the zone's offset is looked up once per quarter hour of UTC and remembered, and the
/// text is written without a formatter. A quarter hour whose first and last microsecond
/// have different offsets holds a transition, and its instants are each looked up (no
/// zone has ever changed its offset twice within a quarter hour). Offsets that are not
/// whole minutes (local mean times of the 19th century) and years outside 0–9999 are
/// left to [`local_time`].
#[derive(Debug)]
pub struct LocalTimes {
    zone: Tz,
    /// `(quarter hour, offset in seconds or None when it holds a transition)`, by quarter
    /// hour modulo the length.
    offsets: [(i64, Option<i32>); 16],
}

const QUARTER_MICROS: i64 = 15 * 60 * 1_000_000;

impl LocalTimes {
    /// Times in `zone`.
    pub fn new(zone: Tz) -> LocalTimes {
        LocalTimes {
            zone,
            offsets: [(i64::MIN, None); 16],
        }
    }

    fn offset_at(&self, micros: i64) -> Option<i32> {
        use chrono::{Offset as _, TimeZone as _};
        let utc = DateTime::<Utc>::from_timestamp_micros(micros)?.naive_utc();
        Some(
            self.zone
                .offset_from_utc_datetime(&utc)
                .fix()
                .local_minus_utc(),
        )
    }

    /// The offset of the quarter hour holding `micros`, when it has one.
    fn offset(&mut self, micros: i64) -> Option<i32> {
        let quarter = micros.div_euclid(QUARTER_MICROS);
        let slot = quarter.rem_euclid(self.offsets.len() as i64) as usize;
        let (cached, offset) = self.offsets[slot];
        if cached == quarter {
            return offset;
        }
        let first = quarter.checked_mul(QUARTER_MICROS)?;
        let at_first = self.offset_at(first)?;
        let at_last = self.offset_at(first.checked_add(QUARTER_MICROS - 1)?)?;
        let offset = (at_first == at_last).then_some(at_first);
        self.offsets[slot] = (quarter, offset);
        offset
    }

    fn write(&mut self, out: &mut Vec<u8>, micros: i64) {
        if !self.write_fast(out, micros) {
            out.extend_from_slice(local_time(micros, self.zone).as_bytes());
        }
    }

    /// Writes the time when it takes no more than digits; false (writing nothing) when it
    /// is left to [`local_time`].
    fn write_fast(&mut self, out: &mut Vec<u8>, micros: i64) -> bool {
        let Some(offset) = self.offset(micros) else {
            return false;
        };
        if offset % 60 != 0 {
            return false;
        }
        let local = micros.div_euclid(1_000_000) + i64::from(offset);
        let fraction = micros.rem_euclid(1_000_000);
        let (days, second) = (local.div_euclid(86_400), local.rem_euclid(86_400));
        let (year, month, day) = civil_from_days(days);
        if !(0..=9999).contains(&year) {
            return false;
        }
        let mut text = *b"0000-00-00T00:00:00";
        put_digits(&mut text[0..4], year as u64);
        put_digits(&mut text[5..7], u64::from(month));
        put_digits(&mut text[8..10], u64::from(day));
        put_digits(&mut text[11..13], (second / 3600) as u64);
        put_digits(&mut text[14..16], (second / 60 % 60) as u64);
        put_digits(&mut text[17..19], (second % 60) as u64);
        out.extend_from_slice(&text);
        // As chrono's `SecondsFormat::AutoSi`: milliseconds when they say it all.
        if fraction != 0 {
            let mut digits = *b".000000";
            if fraction % 1000 == 0 {
                put_digits(&mut digits[1..4], (fraction / 1000) as u64);
                out.extend_from_slice(&digits[..4]);
            } else {
                put_digits(&mut digits[1..7], fraction as u64);
                out.extend_from_slice(&digits);
            }
        }
        let mut zone = *b"+00:00";
        if offset < 0 {
            zone[0] = b'-';
        }
        let minutes = offset.unsigned_abs() / 60;
        put_digits(&mut zone[1..3], u64::from(minutes / 60));
        put_digits(&mut zone[4..6], u64::from(minutes % 60));
        out.extend_from_slice(&zone);
        true
    }
}

/// Writes `value` into `digits` as decimal digits, zero padded to its length.
fn put_digits(digits: &mut [u8], mut value: u64) {
    for digit in digits.iter_mut().rev() {
        *digit = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

/// The proleptic Gregorian date `days` after 1970-01-01 (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A strict RFC 4180 reader, to check that what is written reads back.
    fn parse(text: &str) -> Vec<Vec<String>> {
        let mut records = Vec::new();
        let mut record = Vec::new();
        let mut current = String::new();
        let mut chars = text.chars().peekable();
        let mut quoted = false;
        while let Some(c) = chars.next() {
            match (quoted, c) {
                (true, '"') if chars.peek() == Some(&'"') => {
                    chars.next();
                    current.push('"');
                }
                (true, '"') => quoted = false,
                (true, c) => current.push(c),
                (false, '"') if current.is_empty() => quoted = true,
                (false, ',') => record.push(std::mem::take(&mut current)),
                (false, '\r') => {
                    assert_eq!(chars.next(), Some('\n'), "CR without LF");
                    record.push(std::mem::take(&mut current));
                    records.push(std::mem::take(&mut record));
                }
                (false, c) => {
                    assert!(c != '\n' && c != '"', "bare {c:?} outside quotes");
                    current.push(c);
                }
            }
        }
        assert!(
            !quoted && current.is_empty() && record.is_empty(),
            "unterminated"
        );
        records
    }

    /// The chunks of a CSV file with `header` then `rows`, each chunk about `chunk_bytes`
    /// long. The first chunk starts with the header; a file without rows is one chunk holding
    /// only the header.
    fn chunks<R>(header: &[&str], rows: R, chunk_bytes: usize) -> Vec<Chunk>
    where
        R: IntoIterator<Item = Vec<String>>,
    {
        let mut writer = Writer::new(header, chunk_bytes);
        let mut chunks: Vec<Chunk> = rows
            .into_iter()
            .filter_map(|row| writer.push(&row))
            .collect();
        chunks.extend(writer.finish());
        chunks
    }

    fn concat(chunks: &[Chunk]) -> String {
        String::from_utf8(chunks.iter().flat_map(|c| c.bytes.clone()).collect()).unwrap()
    }

    #[test]
    fn quotes_only_when_needed() {
        assert_eq!(field("plain"), "plain");
        assert_eq!(field("a,b"), "\"a,b\"");
        assert_eq!(field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(field("two\nlines"), "\"two\nlines\"");
        assert_eq!(field("cr\r"), "\"cr\r\"");
        assert_eq!(field(""), "");
    }

    #[test]
    fn cells_a_spreadsheet_would_run_are_neutralised() {
        assert_eq!(field("=1+2"), "'=1+2");
        assert_eq!(field("+1 555 0100"), "'+1 555 0100");
        assert_eq!(field("@SUM(A1:A9)"), "'@SUM(A1:A9)");
        assert_eq!(field("-2+3"), "'-2+3");
        assert_eq!(field("\t=1"), "'\t=1");
        assert_eq!(field("\r=1"), "\"'\r=1\"");
        assert_eq!(
            field("=HYPERLINK(\"http://x\",\"y\")"),
            "\"'=HYPERLINK(\"\"http://x\"\",\"\"y\"\")\""
        );
        // Numbers stay numbers.
        assert_eq!(field("-2.25"), "-2.25");
        assert_eq!(field("+3"), "+3");
        assert_eq!(field("1=1"), "1=1");
    }

    #[test]
    fn header_only_file_is_one_chunk() {
        let all = chunks(&["period", "created"], Vec::new(), CHUNK_BYTES);
        assert_eq!(all.len(), 1);
        assert_eq!(concat(&all), "period,created\r\n");
        assert_eq!(all[0].rows_so_far, 0);
    }

    #[test]
    fn awkward_fields_round_trip() {
        let rows = vec![
            vec!["a,b".to_owned(), "say \"hi\"".to_owned()],
            vec!["line\r\nbreak".to_owned(), String::new()],
        ];
        let all = chunks(&["x", "y"], rows.clone(), CHUNK_BYTES);
        let mut expected = vec![vec!["x".to_owned(), "y".to_owned()]];
        expected.extend(rows);
        assert_eq!(parse(&concat(&all)), expected);
    }

    #[test]
    fn chunks_end_on_record_boundaries_and_count_rows() {
        let rows: Vec<Vec<String>> = (0..1000)
            .map(|i| vec![format!("row-{i:04}"), i.to_string()])
            .collect();
        let all = chunks(&["name", "n"], rows, 1024);
        assert!(all.len() > 10);
        let mut seen_rows = 0;
        for chunk in &all {
            let text = std::str::from_utf8(&chunk.bytes).unwrap();
            assert!(text.ends_with("\r\n"));
            assert!(chunk.bytes.len() < 1024 + 64, "{}", chunk.bytes.len());
            seen_rows += text.matches("row-").count() as i64;
            assert_eq!(chunk.rows_so_far, seen_rows);
        }
        assert_eq!(all.last().unwrap().rows_so_far, 1000);
        let parsed = parse(&concat(&all));
        assert_eq!(parsed.len(), 1001);
        assert_eq!(parsed[1000], vec!["row-0999", "999"]);
    }

    #[test]
    fn local_times_carry_the_zone_offset() {
        let paris: Tz = "Europe/Paris".parse().unwrap();
        let midnight = 1_772_406_000_000_000; // 2026-03-01T23:00:00Z
        assert_eq!(local_time(midnight, paris), "2026-03-02T00:00:00+01:00");
        assert_eq!(local_time(midnight, Tz::UTC), "2026-03-01T23:00:00+00:00");
        assert_eq!(
            local_time(midnight + 500_000, Tz::UTC),
            "2026-03-01T23:00:00.500+00:00"
        );
    }

    /// Every instant the fast writer handles reads as `local_time` writes it: random
    /// instants from 1800 to 2200 and every minute around the transitions of zones with
    /// half-hour and 45-minute offsets and a half-hour daylight saving shift.
    #[test]
    fn local_times_written_fast_read_as_chrono_writes_them() {
        let zones: Vec<Tz> = [
            "UTC",
            "Europe/Paris",
            "America/New_York",
            "America/St_Johns",
            "Asia/Kathmandu",
            "Australia/Lord_Howe",
            "Pacific/Chatham",
            "Africa/Monrovia",
            "Europe/Amsterdam",
            "America/Sao_Paulo",
        ]
        .iter()
        .map(|name| name.parse().unwrap())
        .collect();
        // Whether the fast writer took it (and then wrote what chrono writes).
        let check = |times: &mut LocalTimes, micros: i64| -> bool {
            let mut written = Vec::new();
            let fast = times.write_fast(&mut written, micros);
            if !fast {
                times.write(&mut written, micros);
            }
            assert_eq!(
                String::from_utf8(written).unwrap(),
                local_time(micros, times.zone),
                "{micros} in {}",
                times.zone
            );
            fast
        };
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut random = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let (from, to) = (-5_364_662_400_000_000_i64, 7_258_118_400_000_000_i64); // 1800, 2200
        for zone in zones {
            let mut times = LocalTimes::new(zone);
            for _ in 0..20_000 {
                let micros = from + (random() % (to - from) as u64) as i64;
                // Whole seconds, milliseconds and microseconds alike.
                let micros = match random() % 3 {
                    0 => micros - micros.rem_euclid(1_000_000),
                    1 => micros - micros.rem_euclid(1_000),
                    _ => micros,
                };
                check(&mut times, micros);
            }
            // Every quarter hour of 2026 and 2027, the microsecond before it and a
            // millisecond after it.
            let (mut at, mut checked, mut fast) = (1_767_225_600_000_000_i64, 0, 0); // 2026
            while at < 1_830_297_600_000_000 {
                for micros in [at, at - 1, at + 1_000] {
                    checked += 1;
                    fast += usize::from(check(&mut times, micros));
                }
                at += 15 * 60_000_000;
            }
            // Only the quarter hours holding a transition were looked up one by one.
            assert!(
                checked - fast <= 3 * 4 * 2,
                "{zone}: {fast} of {checked} fast"
            );
        }
        // Far outside four-digit years: left to chrono, still equal.
        let mut times = LocalTimes::new(Tz::UTC);
        check(&mut times, -70_000_000_000_000_000);
        check(&mut times, 260_000_000_000_000_000);
    }

    #[test]
    fn records_written_field_by_field_read_as_rows_pushed_whole() {
        let mut by_fields = Writer::new(&["a", "b", "c", "d", "e"], CHUNK_BYTES);
        let mut whole = Writer::new(&["a", "b", "c", "d", "e"], CHUNK_BYTES);
        let mut times = LocalTimes::new(Tz::UTC);
        for (text, number, micros) in [
            ("=1+2", -5_i64, -2_250_000_i64),
            ("a,b", 0, 1),
            ("plain", i64::MAX, 660_000_000),
            ("", i64::MIN, 0),
        ] {
            by_fields.record(|r| {
                r.text(text);
                r.number(number);
                r.seconds(micros);
                r.empty();
                r.time(micros, &mut times);
            });
            whole.push(&[
                text.to_owned(),
                number.to_string(),
                seconds(micros),
                String::new(),
                local_time(micros, Tz::UTC),
            ]);
        }
        assert_eq!(by_fields.finish(), whole.finish());
    }

    #[test]
    fn seconds_are_plain_decimals() {
        assert_eq!(seconds(660_000_000), "660");
        assert_eq!(seconds(1_500_000), "1.5");
        assert_eq!(seconds(1), "0.000001");
        assert_eq!(seconds(0), "0");
        assert_eq!(seconds(-2_250_000), "-2.25");
    }

    #[test]
    fn counts_share_one_cell_in_id_order() {
        let mut counts = std::collections::BTreeMap::new();
        assert_eq!(super::counts(&counts), "");
        counts.insert("b".to_owned(), 2);
        counts.insert("a".to_owned(), 1);
        assert_eq!(super::counts(&counts), "a:1;b:2");
    }
}
