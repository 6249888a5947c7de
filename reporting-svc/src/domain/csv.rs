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

fn push_record<S: AsRef<str>>(out: &mut Vec<u8>, fields: &[S]) {
    for (index, value) in fields.iter().enumerate() {
        if index > 0 {
            out.push(b',');
        }
        out.extend_from_slice(field(value.as_ref()).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
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
    let sign = if micros < 0 { "-" } else { "" };
    let abs = micros.unsigned_abs();
    let (whole, fraction) = (abs / 1_000_000, abs % 1_000_000);
    if fraction == 0 {
        format!("{sign}{whole}")
    } else {
        let digits = format!("{fraction:06}");
        format!("{sign}{whole}.{}", digits.trim_end_matches('0'))
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
