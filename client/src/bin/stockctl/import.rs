//! `stockctl product import FILE`: a catalog's creates and restocks in bulk, many products per
//! Raft entry (`POST /v1/admin/products/bulk`), several requests in flight.
//!
//! The file is JSON lines (one [`BulkItem`] per line; `op` may be left out for a create) or CSV
//! with a header naming its columns (`op` optional; `id`, then `name`, `price_cents`, `stock`
//! for a create or `quantity` for a restock). Blank lines and lines starting with `#` are
//! skipped. Every line is read and checked (by the gateway's own checks) before anything is
//! sent; a line that cannot be read or fails a check is reported with its number, and the rest
//! is imported.
//!
//! Requests go in file order, several at once; a request naming a product that an earlier one
//! names too (a restock after its create) waits until the earlier ones are answered, so lines
//! apply in the file's order wherever that order matters.
//!
//! Each request's key is derived from the file's content and the request's first line, so
//! running the same command again after an interruption or an unknown outcome applies nothing
//! twice (within the cluster's client retry horizon, `limits.client_retry_horizon_ms`): the
//! lines already applied come back as `replayed`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use flashstock_api::{
    validate_command, BulkItem, BulkRequest, BulkStatus, ErrorCode, BULK_KEY_LEN_MAX,
};
use flashstock_client::ShopError;
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::task::JoinSet;

use crate::args::{ImportArgs, OutputFormat};
use crate::context::Context;
use crate::error::CliError;
use crate::output::{emit, Table};

/// One line of the file, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// 1-based, as an editor shows it.
    pub number: usize,
    pub item: BulkItem,
}

/// A line that was not imported, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LineError {
    pub line: usize,
    /// The product id, when the line got far enough to name one.
    pub id: Option<String>,
    pub code: ErrorCode,
    pub message: String,
}

/// What an import did, line by line where a line did not go through.
#[derive(Debug, Default, Clone, Serialize)]
pub struct ImportReport {
    pub lines: usize,
    pub created: usize,
    pub restocked: usize,
    /// Of the created and restocked: applied by an earlier run with the same keys.
    pub replayed: usize,
    /// Lines refused (by the file's parser, the gateway's checks or the state machine) or not
    /// applied because their request failed definitely: nothing changed for them.
    pub errors: Vec<LineError>,
    /// Lines whose request's outcome is unknown: run the same command again to learn it.
    pub unknown: Vec<usize>,
    pub seconds: f64,
}

pub async fn import(ctx: &Context, args: ImportArgs) -> Result<(), CliError> {
    let client = ctx.shop_client()?;
    let bytes = if args.file.as_os_str() == "-" {
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut bytes)
            .map_err(|e| CliError::Usage(format!("reading standard input: {e}")))?;
        bytes
    } else {
        std::fs::read(&args.file)
            .map_err(|e| CliError::Usage(format!("reading {}: {e}", args.file.display())))?
    };
    let text = String::from_utf8(bytes)
        .map_err(|e| CliError::Usage(format!("the file is not UTF-8: {e}")))?;
    let prefix = match args.key {
        Some(key) => key,
        None => format!("import-{}", &hex(&Sha256::digest(text.as_bytes()))[..16]),
    };
    let (lines, mut errors) = parse(&text);
    let chunks: Vec<Vec<Line>> = lines.chunks(args.chunk).map(<[Line]>::to_vec).collect();
    let waits = waits_for_earlier(&chunks);
    if let Some(longest) = chunks
        .iter()
        .map(|c| chunk_key(&prefix, c))
        .max_by_key(String::len)
    {
        if longest.len() > BULK_KEY_LEN_MAX {
            return Err(CliError::Usage(format!(
                "--key is too long: a request's key ({longest}) must be at most \
                 {BULK_KEY_LEN_MAX} characters"
            )));
        }
    }
    let began = Instant::now();
    let bar = progress_bar(ctx, lines.len() as u64);
    let mut report = ImportReport {
        lines: lines.len() + errors.len(),
        ..ImportReport::default()
    };
    let client = Arc::new(client);
    let mut pending = chunks.into_iter().zip(waits).peekable();
    let mut in_flight = JoinSet::new();
    let mut fatal = None;
    loop {
        while fatal.is_none() && in_flight.len() < args.parallel {
            // A chunk about a product of an earlier chunk is sent once those are answered.
            if pending.peek().is_some_and(|(_, waits)| *waits) && !in_flight.is_empty() {
                break;
            }
            let Some((chunk, _)) = pending.next() else {
                break;
            };
            let key = chunk_key(&prefix, &chunk);
            let (client, step) = (client.clone(), ctx.for_step(ctx.timeout));
            in_flight.spawn(async move {
                let request = BulkRequest {
                    items: chunk.iter().map(|line| line.item.clone()).collect(),
                };
                let sent =
                    tokio::time::timeout(step.remaining(), client.bulk_with_key(&key, &request));
                let answer = sent.await.unwrap_or_else(|_| {
                    Err(ShopError::OutcomeUnknown {
                        message: format!("no answer within {:?}", step.timeout),
                    })
                });
                (chunk, answer)
            });
        }
        let Some(joined) = in_flight.join_next().await else {
            break;
        };
        let (chunk, answer) = joined.expect("an import request does not panic");
        bar.inc(chunk.len() as u64);
        if let Err(error) = record(&mut report, &mut errors, &chunk, answer) {
            // Refused for what every request is (no admin token, say): stop sending.
            fatal.get_or_insert(error);
        }
    }
    bar.finish_and_clear();
    if let Some(error) = fatal {
        return Err(error);
    }
    errors.sort_by_key(|e| e.line);
    report.errors = errors;
    report.unknown.sort_unstable();
    report.seconds = began.elapsed().as_secs_f64();
    match ctx.output {
        OutputFormat::Table => print!("{}", human(&report)),
        OutputFormat::Json => emit(ctx.output, &report, || Table::new(&[])),
    }
    if !report.unknown.is_empty() {
        Err(CliError::unknown(
            format!("{} lines have an unknown outcome", report.unknown.len()),
            "run the same command again: its keys make it safe, and it learns their outcome",
        ))
    } else if !report.errors.is_empty() {
        Err(CliError::failed(
            report.errors[0].code.clone(),
            format!(
                "{} lines were not imported (the report above names them; this code is the \
                 first's)",
                report.errors.len()
            ),
        ))
    } else {
        Ok(())
    }
}

/// For each chunk, whether it names a product that an earlier chunk names too: then it must be
/// applied after them (a restock after the create), and is not sent alongside them. Within a
/// chunk, items apply in order anyway (one entry).
fn waits_for_earlier(chunks: &[Vec<Line>]) -> Vec<bool> {
    let mut seen = std::collections::HashSet::new();
    chunks
        .iter()
        .map(|chunk| {
            let waits = chunk.iter().any(|line| seen.contains(line.item.id()));
            seen.extend(chunk.iter().map(|line| line.item.id()));
            waits
        })
        .collect()
}

/// The key of the request carrying `chunk`: the import's prefix and the chunk's first line.
fn chunk_key(prefix: &str, chunk: &[Line]) -> String {
    format!("{prefix}-{}", chunk.first().map_or(0, |l| l.number))
}

/// Count one request's answer into the report. An error that every request would meet is
/// returned, to stop the import.
fn record(
    report: &mut ImportReport,
    errors: &mut Vec<LineError>,
    chunk: &[Line],
    answer: Result<flashstock_api::BulkResponse, ShopError>,
) -> Result<(), CliError> {
    let failed = |code: ErrorCode, message: &str, errors: &mut Vec<LineError>| {
        errors.extend(chunk.iter().map(|line| LineError {
            line: line.number,
            id: Some(line.item.id().to_owned()),
            code: code.clone(),
            message: message.to_owned(),
        }));
    };
    match answer {
        Ok(response) => {
            for (line, result) in chunk.iter().zip(response.results) {
                match result.status {
                    BulkStatus::Created | BulkStatus::Restocked => {
                        report.replayed += usize::from(result.replayed);
                        if result.status == BulkStatus::Created {
                            report.created += 1;
                        } else {
                            report.restocked += 1;
                        }
                    }
                    BulkStatus::Rejected => {
                        let error = result.error.unwrap_or(flashstock_api::ErrorBody {
                            code: ErrorCode::Internal,
                            message: "rejected without a reason".into(),
                        });
                        errors.push(LineError {
                            line: line.number,
                            id: Some(result.id),
                            code: error.code,
                            message: error.message,
                        });
                    }
                }
            }
            Ok(())
        }
        Err(ShopError::OutcomeUnknown { .. }) => {
            report.unknown.extend(chunk.iter().map(|l| l.number));
            Ok(())
        }
        Err(ShopError::Unavailable { message }) => {
            failed(ErrorCode::Unavailable, &message, errors);
            Ok(())
        }
        Err(ShopError::Rejected { code, message, .. }) => {
            failed(code.clone(), &message, errors);
            match code {
                ErrorCode::InvalidRequest | ErrorCode::IdempotencyKeyReused => Ok(()),
                code => Err(CliError::failed(code, message)),
            }
        }
    }
}

fn progress_bar(ctx: &Context, total: u64) -> indicatif::ProgressBar {
    if ctx.output != OutputFormat::Table {
        return indicatif::ProgressBar::hidden();
    }
    // Drawn on standard error, and only when it is a terminal.
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} lines, {per_sec}, {eta} left",
        )
        .expect("a valid template"),
    );
    bar
}

fn human(report: &ImportReport) -> String {
    let mut out = String::new();
    if !report.errors.is_empty() {
        let mut table = Table::new(&["LINE", "ID", "CODE", "MESSAGE"]);
        for e in &report.errors {
            table.push(vec![
                e.line.to_string(),
                e.id.clone().unwrap_or_default(),
                e.code.to_string(),
                e.message.clone(),
            ]);
        }
        out.push_str(&table.render());
    }
    if !report.unknown.is_empty() {
        out.push_str(&format!(
            "outcome unknown for {} lines (from line {}): run the same command again\n",
            report.unknown.len(),
            report.unknown[0]
        ));
    }
    let applied = report.created + report.restocked;
    // A rate over less than a second says more about the clock than the cluster.
    let rate = if report.seconds >= 1.0 {
        format!(" ({:.0} applied/s)", applied as f64 / report.seconds)
    } else {
        String::new()
    };
    out.push_str(&format!(
        "{} lines in {:.1} s{rate}: {} created, {} restocked ({} of them replayed), \
         {} not imported, {} unknown\n",
        report.lines,
        report.seconds,
        report.created,
        report.restocked,
        report.replayed,
        report.errors.len(),
        report.unknown.len()
    ));
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Read every line of `text`: JSON lines when the first line to read starts with `{`, else CSV
/// with a header.
pub fn parse(text: &str) -> (Vec<Line>, Vec<LineError>) {
    let mut rows = text
        .lines()
        .enumerate()
        .map(|(i, line)| (i + 1, line.trim_end_matches('\r')))
        .filter(|(_, line)| !line.trim().is_empty() && !line.trim_start().starts_with('#'))
        .peekable();
    let json = rows
        .peek()
        .is_some_and(|(_, line)| line.trim_start().starts_with('{'));
    let mut lines = Vec::new();
    let mut errors = Vec::new();
    let mut push = |number: usize, item: Result<BulkItem, String>| {
        let mut error = |id: Option<String>, message: String| {
            errors.push(LineError {
                line: number,
                id,
                code: ErrorCode::InvalidRequest,
                message,
            })
        };
        match item {
            // The gateway's own checks, so that one bad line does not refuse a whole request.
            Ok(item) => match validate_command(&item.clone().into_command("check".into())) {
                Ok(()) => lines.push(Line { number, item }),
                Err(message) => error(Some(item.id().to_owned()), message),
            },
            Err(message) => error(None, message),
        }
    };
    if json {
        for (number, row) in rows {
            push(number, json_item(row));
        }
    } else if let Some((number, header)) = rows.next() {
        match csv_header(header) {
            Ok(columns) => {
                for (number, row) in rows {
                    push(number, csv_item(&columns, row));
                }
            }
            Err(message) => push(number, Err(message)),
        }
    }
    (lines, errors)
}

/// One JSON line: a bulk item, `op` defaulting to `create`.
fn json_item(row: &str) -> Result<BulkItem, String> {
    let mut value: serde_json::Value =
        serde_json::from_str(row).map_err(|e| format!("not JSON: {e}"))?;
    let object = value.as_object_mut().ok_or("a line is one JSON object")?;
    object.entry("op").or_insert_with(|| "create".into());
    serde_json::from_value(value).map_err(|e| e.to_string())
}

const CSV_COLUMNS: [&str; 6] = ["op", "id", "name", "price_cents", "stock", "quantity"];

/// The header: which known column each field is.
fn csv_header(row: &str) -> Result<Vec<&'static str>, String> {
    let fields = csv_fields(row)?;
    let mut columns = Vec::with_capacity(fields.len());
    for field in fields {
        let name = field.trim();
        let column = CSV_COLUMNS.iter().find(|c| **c == name).ok_or_else(|| {
            format!(
                "unknown column {name:?} (known: {})",
                CSV_COLUMNS.join(", ")
            )
        })?;
        if columns.contains(column) {
            return Err(format!("column {name:?} appears twice"));
        }
        columns.push(*column);
    }
    if !columns.contains(&"id") {
        return Err("the header has no id column".into());
    }
    Ok(columns)
}

fn csv_item(columns: &[&'static str], row: &str) -> Result<BulkItem, String> {
    let fields = csv_fields(row)?;
    if fields.len() != columns.len() {
        return Err(format!(
            "{} fields where the header has {}",
            fields.len(),
            columns.len()
        ));
    }
    let by_name: BTreeMap<&str, String> = columns.iter().copied().zip(fields).collect();
    let text = |name: &str| -> Result<String, String> {
        by_name
            .get(name)
            .filter(|v| !v.is_empty())
            .cloned()
            .ok_or_else(|| format!("no {name}"))
    };
    let number = |name: &str| -> Result<u64, String> {
        text(name)?
            .trim()
            .parse()
            .map_err(|_| format!("{name} is not a whole number"))
    };
    let op = by_name.get("op").map_or("create", |op| op.trim());
    match op {
        "" | "create" => Ok(BulkItem::Create {
            id: text("id")?,
            name: text("name")?,
            price_cents: number("price_cents")?,
            stock: number("stock")?,
        }),
        "restock" => Ok(BulkItem::Restock {
            id: text("id")?,
            quantity: number("quantity")?,
        }),
        other => Err(format!("unknown op {other:?}: create or restock")),
    }
}

/// The fields of one CSV row: separated by commas, a field in double quotes may hold commas,
/// and `""` inside quotes is one quote. A quoted field does not span lines.
fn csv_fields(row: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut chars = row.chars().peekable();
    loop {
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    Some('"') => break,
                    Some(c) => field.push(c),
                    None => return Err("a quoted field is not closed on its line".into()),
                }
            }
            match chars.next() {
                None => {
                    fields.push(field);
                    return Ok(fields);
                }
                Some(',') => {}
                Some(c) => return Err(format!("{c:?} after a closing quote")),
            }
        } else {
            loop {
                match chars.next() {
                    None => {
                        fields.push(field);
                        return Ok(fields);
                    }
                    Some(',') => break,
                    Some('"') => return Err("a quote inside an unquoted field".into()),
                    Some(c) => field.push(c),
                }
            }
        }
        fields.push(field);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create(id: &str, name: &str, price_cents: u64, stock: u64) -> BulkItem {
        BulkItem::Create {
            id: id.into(),
            name: name.into(),
            price_cents,
            stock,
        }
    }

    #[test]
    fn json_lines_default_to_create_and_report_bad_lines_by_number() {
        let text = "{\"id\":\"a\",\"name\":\"A\",\"price_cents\":100,\"stock\":5}\n\
                    \n\
                    # a comment\n\
                    {\"op\":\"restock\",\"id\":\"a\",\"quantity\":3}\n\
                    {\"id\":\"b\",\"name\":\"B\"}\n\
                    not json\n";
        let (lines, errors) = parse(text);
        assert_eq!(
            lines,
            vec![
                Line {
                    number: 1,
                    item: create("a", "A", 100, 5)
                },
                Line {
                    number: 4,
                    item: BulkItem::Restock {
                        id: "a".into(),
                        quantity: 3
                    }
                },
            ]
        );
        assert_eq!(
            errors.iter().map(|e| e.line).collect::<Vec<_>>(),
            vec![5, 6]
        );
        assert!(errors[0].message.contains("price_cents"), "{errors:?}");
    }

    #[test]
    fn csv_reads_quoted_fields_and_mixed_ops() {
        let text = "op,id,name,price_cents,stock,quantity\r\n\
                    create,a,\"Shoe, red \"\"fast\"\"\",1999,10,\r\n\
                    restock,a,,,,4\n\
                    create,b,Hat,12x,1,\n\
                    sell,c,,,,\n\
                    create,d,\"open,1,1,\n\
                    create,bad id!,Hat,1,1,\n";
        let (lines, errors) = parse(text);
        assert_eq!(
            lines,
            vec![
                Line {
                    number: 2,
                    item: create("a", "Shoe, red \"fast\"", 1999, 10)
                },
                Line {
                    number: 3,
                    item: BulkItem::Restock {
                        id: "a".into(),
                        quantity: 4
                    }
                },
            ]
        );
        let reasons: Vec<(usize, &str)> = errors
            .iter()
            .map(|e| (e.line, e.message.as_str()))
            .collect();
        assert_eq!(
            reasons,
            vec![
                (4, "price_cents is not a whole number"),
                (5, "unknown op \"sell\": create or restock"),
                (6, "a quoted field is not closed on its line"),
                (
                    7,
                    "product id must be 1 to 64 ASCII letters, digits, '-' or '_'"
                ),
            ]
        );
        assert_eq!(errors[3].id.as_deref(), Some("bad id!"));
    }

    #[test]
    fn a_csv_header_must_name_known_columns_and_an_id() {
        let (lines, errors) = parse("id,colour\na,red\n");
        assert!(lines.is_empty());
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].line, 1);
        assert!(errors[0].message.contains("unknown column \"colour\""));
        let (_, errors) = parse("name,stock\nA,1\n");
        assert_eq!(errors[0].message, "the header has no id column");
    }

    #[test]
    fn a_chunk_about_an_earlier_chunks_product_waits_for_it() {
        let line = |number, item| Line { number, item };
        let restock = |id: &str| BulkItem::Restock {
            id: id.into(),
            quantity: 1,
        };
        let chunks = vec![
            vec![line(1, create("a", "A", 1, 1)), line(2, restock("a"))],
            vec![line(3, create("b", "B", 1, 1))],
            vec![line(4, restock("a"))],
            vec![line(5, create("c", "C", 1, 1))],
        ];
        assert_eq!(waits_for_earlier(&chunks), vec![false, false, true, false]);
    }

    #[test]
    fn a_chunk_key_names_its_first_line() {
        let chunk = [Line {
            number: 17,
            item: create("a", "A", 1, 1),
        }];
        assert_eq!(chunk_key("import-ab", &chunk), "import-ab-17");
    }
}
