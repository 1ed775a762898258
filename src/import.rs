//! `contact-hub import customers FILE.csv`: bulk import with a progress bar. Bad rows are
//! reported with their line number and reason while good rows import; importing the same file
//! again updates customers (matched by `external_ref`, else by phone/email) instead of
//! duplicating them.

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context};

use crate::archive::normalize_customer;
use crate::config::ArchiveConfig;
use crate::domain::{Channel, CustomerInput, CustomerKind};
use crate::store::{ImportOutcome, ImportRow, Store};

/// Rows per transaction. Each commit writes every index page the batch touched, and random
/// inserts (names, identities) touch nearly as many pages as rows, so small batches rewrote
/// the same pages over and over: at 200,000 rows, batches of 2,000 spent most of their time in
/// commits (BENCHMARKS.md). Still small enough to report progress and hold the write lock well
/// under a second.
pub const BATCH_ROWS: usize = 20_000;

/// The columns a customer CSV may have (header names, any order, case-insensitive).
pub const COLUMNS: &[(&str, &str)] = &[
    (
        "external_ref",
        "the company's own customer key; re-imports update by it",
    ),
    ("kind", "person or company (default person)"),
    ("name", "required; any script"),
    (
        "tier",
        "one of the configured tiers (default: archive.default_tier)",
    ),
    ("tags", "separated by ; or |"),
    (
        "preferred_channel",
        "voice, email, chat, fax, callback or outbound",
    ),
    ("language", "e.g. zh-CN, zh-TW, en"),
    (
        "phone",
        "one or more numbers in any format, separated by ; or |",
    ),
    ("email", "one or more, separated by ; or |"),
    ("fax", "one or more fax numbers"),
    ("chat_id", "chat visitor ids"),
    (
        "region",
        "region for local numbers on this row, e.g. TW (default: archive.default_region)",
    ),
    ("do_not_call", "yes/no, true/false, 1/0"),
    ("do_not_email", "yes/no, true/false, 1/0"),
    ("notes", "free text"),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// UTF-8 (with or without BOM) when valid, else GB18030 (covers GB2312 and GBK).
    Auto,
    Utf8,
    Gb18030,
    Big5,
}

impl std::str::FromStr for Encoding {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(Encoding::Auto),
            "utf-8" | "utf8" => Ok(Encoding::Utf8),
            "gb18030" | "gbk" | "gb2312" => Ok(Encoding::Gb18030),
            "big5" => Ok(Encoding::Big5),
            other => Err(format!(
                "unknown encoding {other:?} (auto, utf-8, gb18030/gbk/gb2312, big5)"
            )),
        }
    }
}

/// Decodes the file's bytes to text.
pub fn decode(bytes: &[u8], enc: Encoding) -> anyhow::Result<String> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let decode_with = |e: &'static encoding_rs::Encoding| {
        let (text, _, had_errors) = e.decode(bytes);
        if had_errors {
            bail!(
                "the file is not valid {}; pass --encoding to say what it is",
                e.name()
            );
        }
        Ok(text.into_owned())
    };
    match enc {
        Encoding::Utf8 => decode_with(encoding_rs::UTF_8),
        Encoding::Gb18030 => decode_with(encoding_rs::GB18030),
        Encoding::Big5 => decode_with(encoding_rs::BIG5),
        Encoding::Auto => match std::str::from_utf8(bytes) {
            Ok(s) => Ok(s.to_string()),
            Err(_) => decode_with(encoding_rs::GB18030),
        },
    }
}

#[derive(Debug, Default, Clone)]
pub struct ImportReport {
    pub created: u64,
    pub updated: u64,
    /// (line, reason), in file order.
    pub rejected: Vec<(u64, String)>,
    pub seconds: f64,
}

impl ImportReport {
    pub fn rows(&self) -> u64 {
        self.created + self.updated + self.rejected.len() as u64
    }
}

fn split_list(s: &str) -> Vec<String> {
    s.split([';', '|'])
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect()
}

fn parse_bool(s: &str) -> Result<Option<bool>, String> {
    match s.trim().to_lowercase().as_str() {
        "" => Ok(None),
        "1" | "y" | "yes" | "true" | "是" => Ok(Some(true)),
        "0" | "n" | "no" | "false" | "否" => Ok(Some(false)),
        other => Err(format!("{other:?} is not yes/no")),
    }
}

/// Reads the CSV header and returns the column index of each known column.
fn header_map(headers: &csv::StringRecord) -> anyhow::Result<HashMap<&'static str, usize>> {
    let mut map = HashMap::new();
    for (i, h) in headers.iter().enumerate() {
        let h = h.trim().to_lowercase().replace([' ', '-'], "_");
        let h = match h.as_str() {
            "ref" | "customer_ref" | "id" => "external_ref".to_string(),
            "phones" | "mobile" | "tel" => "phone".to_string(),
            "emails" | "mail" => "email".to_string(),
            _ => h,
        };
        match COLUMNS.iter().find(|(c, _)| *c == h) {
            Some((c, _)) => {
                map.insert(*c, i);
            }
            None => bail!(
                "unknown column {h:?} in the header; known columns: {}",
                COLUMNS
                    .iter()
                    .map(|(c, _)| *c)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
    if !map.contains_key("name") {
        bail!("the header has no \"name\" column");
    }
    Ok(map)
}

fn row_input(
    rec: &csv::StringRecord,
    cols: &HashMap<&'static str, usize>,
) -> Result<CustomerInput, String> {
    let get = |c: &str| cols.get(c).and_then(|&i| rec.get(i)).map(str::trim);
    let opt = |c: &str| get(c).filter(|s| !s.is_empty()).map(String::from);
    let list = |c: &str| {
        cols.contains_key(c)
            .then(|| split_list(get(c).unwrap_or("")))
    };
    Ok(CustomerInput {
        kind: match get("kind").unwrap_or("") {
            "" => None,
            k => Some(k.to_lowercase().parse::<CustomerKind>()?),
        },
        name: opt("name"),
        tier: opt("tier"),
        tags: list("tags"),
        preferred_channel: match get("preferred_channel").unwrap_or("") {
            "" => None,
            c => Some(c.to_lowercase().parse::<Channel>()?),
        },
        language: opt("language"),
        do_not_call: parse_bool(get("do_not_call").unwrap_or(""))
            .map_err(|e| format!("do_not_call: {e}"))?,
        do_not_email: parse_bool(get("do_not_email").unwrap_or(""))
            .map_err(|e| format!("do_not_email: {e}"))?,
        notes: opt("notes"),
        external_ref: opt("external_ref"),
        phones: list("phone"),
        emails: list("email"),
        faxes: list("fax"),
        chat_ids: list("chat_id"),
        region: opt("region"),
    })
}

/// One CSV record, read but not yet validated.
enum Raw {
    Record {
        line: u64,
        pos: u64,
        rec: csv::StringRecord,
    },
    Unreadable {
        line: u64,
        pos: u64,
        reason: String,
    },
}

type Parsed = (Result<ImportRow, (u64, String)>, u64);

/// Header name → column index.
type Columns = HashMap<&'static str, usize>;

/// Opens the CSV and maps its header.
fn open_csv(text: &str) -> anyhow::Result<(csv::Reader<&[u8]>, Columns)> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_reader(text.as_bytes());
    let cols = header_map(reader.headers().context("cannot read the CSV header")?)?;
    Ok((reader, cols))
}

/// Reads the records in file order, blank ones skipped, with the line each starts on and the
/// byte position after it. Stops at an error the reader cannot continue after.
fn read_records(reader: &mut csv::Reader<&[u8]>, mut each: impl FnMut(Raw)) {
    loop {
        let line = reader.position().line();
        let mut rec = csv::StringRecord::new();
        match reader.read_record(&mut rec) {
            Ok(false) => break,
            Ok(true) => {
                let line = rec.position().map_or(line, |p| p.line());
                if rec.iter().all(|f| f.trim().is_empty()) {
                    continue;
                }
                let pos = reader.position().byte();
                each(Raw::Record { line, pos, rec });
            }
            Err(e) => {
                let line = e.position().map_or(line, |p| p.line());
                let pos = reader.position().byte();
                let recoverable = matches!(
                    e.kind(),
                    csv::ErrorKind::Utf8 { .. } | csv::ErrorKind::UnequalLengths { .. }
                );
                each(Raw::Unreadable {
                    line,
                    pos,
                    reason: format!("unreadable CSV: {e}"),
                });
                if !recoverable {
                    break;
                }
            }
        }
    }
}

/// Validates and normalizes one record.
fn validate(raw: Raw, cols: &HashMap<&'static str, usize>, cfg: &ArchiveConfig) -> Parsed {
    match raw {
        Raw::Record { line, pos, rec } => {
            let row = row_input(&rec, cols)
                .and_then(|input| normalize_customer(&input, None, cfg))
                .map(|customer| ImportRow { line, customer })
                .map_err(|reason| (line, reason));
            (row, pos)
        }
        Raw::Unreadable { line, pos, reason } => (Err((line, reason)), pos),
    }
}

/// Parses CSV text into validated rows and per-line rejections, in file order. `each` is also
/// told the byte position after the row.
pub fn parse(
    text: &str,
    cfg: &ArchiveConfig,
    mut each: impl FnMut(Result<ImportRow, (u64, String)>, u64),
) -> anyhow::Result<()> {
    let (mut reader, cols) = open_csv(text)?;
    read_records(&mut reader, |raw| {
        let (row, pos) = validate(raw, &cols, cfg);
        each(row, pos)
    });
    Ok(())
}

/// Records per hand-over between the parser's threads.
const CHUNK_RECORDS: usize = 256;

/// [`parse`] with validation and phone normalization (most of the time) on `workers` threads
/// while one thread reads the CSV; `each` is called on the calling thread, in file order.
/// Chunks go to the workers in turn and are collected in the same turn, which keeps the order
/// without sorting.
pub fn parse_parallel(
    text: &str,
    cfg: &ArchiveConfig,
    workers: usize,
    mut each: impl FnMut(Result<ImportRow, (u64, String)>, u64),
) -> anyhow::Result<()> {
    let workers = workers.max(1);
    let (mut reader, cols) = open_csv(text)?;
    let cols = &cols;
    std::thread::scope(|scope| {
        let mut to_workers = Vec::with_capacity(workers);
        let mut from_workers = Vec::with_capacity(workers);
        for _ in 0..workers {
            let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<Raw>>(2);
            let (out_tx, out_rx) = std::sync::mpsc::sync_channel::<Vec<Parsed>>(2);
            scope.spawn(move || {
                yield_to_the_writer();
                for chunk in rx {
                    let parsed = chunk.into_iter().map(|raw| validate(raw, cols, cfg));
                    if out_tx.send(parsed.collect()).is_err() {
                        break;
                    }
                }
            });
            to_workers.push(tx);
            from_workers.push(out_rx);
        }
        scope.spawn(move || {
            yield_to_the_writer();
            let mut chunk = Vec::with_capacity(CHUNK_RECORDS);
            let mut sent = 0usize;
            let mut send = |chunk: Vec<Raw>| {
                // A worker gone means the collector stopped; nothing more to do.
                let _ = to_workers[sent % workers].send(chunk);
                sent += 1;
            };
            read_records(&mut reader, |raw| {
                chunk.push(raw);
                if chunk.len() == CHUNK_RECORDS {
                    send(std::mem::replace(
                        &mut chunk,
                        Vec::with_capacity(CHUNK_RECORDS),
                    ));
                }
            });
            if !chunk.is_empty() {
                send(chunk);
            }
            // Dropping the senders ends each worker after its last chunk.
        });
        // Chunk n comes from worker n % workers; a worker with no more chunks has closed.
        for n in 0.. {
            match from_workers[n % workers].recv() {
                Ok(chunk) => {
                    for (row, pos) in chunk {
                        each(row, pos);
                    }
                }
                Err(_) => break,
            }
        }
    });
    Ok(())
}

/// How far below normal priority the parser's threads run (nice 10 weighs a tenth of nice 0).
const PARSER_NICE: i32 = 10;

/// Lowers the calling thread's priority. The import's bottleneck is the one thread that writes
/// to the database; parsing runs ahead of it (bounded channels) and should take the CPU the
/// writer and, in a serving hub, the calls and chats leave idle, not preempt them. On Linux
/// `setpriority(PRIO_PROCESS, 0, …)` applies to the calling thread only; raising one's own
/// nice value needs no privilege, and failing to is harmless.
fn yield_to_the_writer() {
    #[cfg(target_os = "linux")]
    // SAFETY: a syscall on the calling thread, no pointers.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, PARSER_NICE);
    }
}

/// Threads for validation and normalization during an import: the machine's cores.
fn parser_threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get().min(8))
}

/// Imports a customer CSV file. `progress` is told (bytes done, bytes total) after each batch.
pub async fn import_file(
    store: &Store,
    cfg: &ArchiveConfig,
    path: &Path,
    encoding: Encoding,
    mut progress: impl FnMut(u64, u64),
) -> anyhow::Result<ImportReport> {
    let started = Instant::now();
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let total = bytes.len() as u64;
    let text = decode(&bytes, encoding)?;
    drop(bytes);
    // Parsing and phone normalization run on other threads while batches are written.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(Vec<ImportRow>, Vec<(u64, String)>, u64)>(2);
    let cfg_owned = cfg.clone();
    let parser = tokio::task::spawn_blocking(move || {
        let mut rows = Vec::with_capacity(BATCH_ROWS);
        let mut bad = Vec::new();
        let scale = |pos: u64, len: usize| (pos as f64 * total as f64 / len.max(1) as f64) as u64;
        let text_len = text.len();
        let result = parse_parallel(&text, &cfg_owned, parser_threads(), |r, pos| {
            match r {
                Ok(row) => rows.push(row),
                Err(e) => bad.push(e),
            }
            if rows.len() >= BATCH_ROWS {
                let batch = std::mem::replace(&mut rows, Vec::with_capacity(BATCH_ROWS));
                let _ = tx.blocking_send((batch, std::mem::take(&mut bad), scale(pos, text_len)));
            }
        });
        let _ = tx.blocking_send((rows, bad, total));
        result
    });
    let mut report = ImportReport::default();
    let now = crate::domain::now_ms();
    let mut importer = store.customer_importer().await?;
    while let Some((rows, bad, pos)) = rx.recv().await {
        report.rejected.extend(bad);
        if !rows.is_empty() {
            for outcome in importer.import(rows, now).await? {
                match outcome {
                    ImportOutcome::Created(_) => report.created += 1,
                    ImportOutcome::Updated(_) => report.updated += 1,
                    ImportOutcome::Rejected { line, reason } => {
                        report.rejected.push((line, reason))
                    }
                }
            }
        }
        progress(pos, total);
    }
    importer.close().await?;
    parser.await.context("the CSV parser stopped")??;
    report.rejected.sort_by_key(|(line, _)| *line);
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gbk_and_big5_files_decode() {
        let (gbk, _, _) = encoding_rs::GBK.encode("name,phone\n王小明,13800138000\n");
        assert!(decode(&gbk, Encoding::Auto).unwrap().contains("王小明"));
        let (big5, _, _) = encoding_rs::BIG5.encode("name\n陳大文\n");
        assert!(decode(&big5, Encoding::Big5).unwrap().contains("陳大文"));
        assert!(decode("\u{feff}name\nA\n".as_bytes(), Encoding::Auto)
            .unwrap()
            .starts_with("name"));
        assert!(decode(b"\xff\xfe\xfd", Encoding::Utf8).is_err());
    }

    #[test]
    fn bad_rows_are_reported_with_their_line_and_good_rows_kept() {
        let csv = "external_ref,name,phone,tier,do_not_call\n\
                   C1,王小明,010-1234 5678,vip,no\n\
                   C2,,13800138000,,\n\
                   C3,李四,not-a-number,,\n\
                   C4,Alice,+1 415 555 0100,platinum,\n\
                   C5,\"Bob, Jr.\",+44 20 7946 0958,,maybe\n\
                   C6,陳大文,,ordinary,yes\n";
        let mut ok = Vec::new();
        let mut bad = Vec::new();
        parse(csv, &ArchiveConfig::default(), |r, _| match r {
            Ok(row) => ok.push(row),
            Err(e) => bad.push(e),
        })
        .unwrap();
        let lines: Vec<u64> = bad.iter().map(|(l, _)| *l).collect();
        assert_eq!(lines, vec![3, 4, 5, 6], "{bad:?}");
        assert!(bad[0].1.contains("name"));
        assert!(bad[1].1.contains("phone"));
        assert!(bad[2].1.contains("platinum"));
        assert!(bad[3].1.contains("do_not_call"));
        assert_eq!(ok.len(), 2);
        assert_eq!(ok[0].line, 2);
        assert_eq!(ok[1].customer.name, "陳大文");
        assert!(ok[1].customer.do_not_call);
    }

    #[test]
    fn unknown_columns_are_refused_up_front() {
        let err = parse("nmae,phone\nx,1\n", &ArchiveConfig::default(), |_, _| {}).unwrap_err();
        assert!(err.to_string().contains("nmae"));
        let err = parse_parallel("nmae,phone\nx,1\n", &ArchiveConfig::default(), 2, |_, _| {})
            .unwrap_err();
        assert!(err.to_string().contains("nmae"));
    }

    #[test]
    fn the_parallel_parser_hands_over_what_parse_does_in_file_order() {
        // Good rows, rows without a name or with a bad number, blank lines, quoted fields over
        // two lines (so line numbers and records differ).
        let mut csv = String::from("external_ref,name,phone,tier,notes\n");
        for i in 0..3000 {
            csv.push_str(&match i % 7 {
                0 => format!("C{i},,1380013{i:04},,\n"),
                1 => "\n".to_string(),
                2 => format!("C{i},名{i},not-a-number,,\n"),
                3 => format!("C{i},\"Two\nlines {i}\",1380013{i:04},,\"a, b\"\n"),
                _ => format!("C{i},客户{i},1380013{i:04},vip,\n"),
            });
        }
        type Seen = (Result<(u64, String, Vec<String>), (u64, String)>, u64);
        let seen = |r: Result<ImportRow, (u64, String)>, pos: u64| -> Seen {
            let r = r.map(|row| {
                let values = row
                    .customer
                    .identities
                    .into_iter()
                    .map(|(_, v)| v)
                    .collect();
                (row.line, row.customer.name, values)
            });
            (r, pos)
        };
        let cfg = ArchiveConfig::default();
        let mut expected = Vec::new();
        parse(&csv, &cfg, |r, pos| expected.push(seen(r, pos))).unwrap();
        let lines: Vec<u64> = expected
            .iter()
            .map(|(r, _)| match r {
                Ok((line, _, _)) => *line,
                Err((line, _)) => *line,
            })
            .collect();
        assert_eq!(
            expected.len(),
            3000 - 3000 / 7 - 1,
            "blank lines are skipped"
        );
        assert!(lines.windows(2).all(|w| w[0] < w[1]), "file order");
        assert_eq!(expected.iter().filter(|(r, _)| r.is_err()).count(), 858);
        for workers in [1, 2, 3, 8] {
            let mut got = Vec::new();
            parse_parallel(&csv, &cfg, workers, |r, pos| got.push(seen(r, pos))).unwrap();
            assert!(got == expected, "{workers} workers: other rows or order");
        }
        let mut none = 0;
        parse_parallel("name,phone\n", &cfg, 2, |_, _| none += 1).unwrap();
        assert_eq!(none, 0);
    }
}
