//! `stockctl archive ...`: the order archive's progress, and sales reports read from it.
//!
//! The cursor and the backlog are replicated, so any voter knows them; the last error and the
//! time of the last batch belong to the leader's archiver, so `status` reads the leader. A report
//! is computed by a voter from the archive database.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use flashstock_api::{ArchiveReport, ArchiveStatus, ErrorCode, NodeStatus};
use serde::Serialize;

use crate::args::{ArchiveCommand, ReportArgs};
use crate::cluster::{answered, leader_status, none_answered, probe_all};
use crate::context::Context;
use crate::error::CliError;
use crate::output::{cents, emit, opt, Table};

pub async fn run(ctx: &Context, command: ArchiveCommand) -> Result<(), CliError> {
    match command {
        ArchiveCommand::Status => status(ctx).await,
        ArchiveCommand::Report(args) => report(ctx, args).await,
    }
}

/// `archive status --output json`: the leader's view.
#[derive(Serialize)]
struct StatusReport {
    leader: u64,
    #[serde(flatten)]
    archive: ArchiveStatus,
}

async fn status(ctx: &Context) -> Result<(), CliError> {
    let client = ctx.voter_client()?;
    let probes = probe_all(&client, ctx.endpoints()?).await;
    let statuses: Vec<&NodeStatus> = answered(&probes).collect();
    if statuses.is_empty() {
        return Err(none_answered(&probes));
    }
    let leader = leader_status(&statuses).ok_or_else(|| {
        CliError::failed(ErrorCode::NoLeader, "no endpoint reports itself leader")
    })?;
    let archive = leader.archive.clone().ok_or_else(|| {
        CliError::failed(
            ErrorCode::NotAVoter,
            format!("node {} reports no archive status", leader.id),
        )
    })?;
    let report = StatusReport {
        leader: leader.id,
        archive,
    };
    emit(ctx.output, &report, || status_table(&report, now_ms()));
    Ok(())
}

fn status_table(report: &StatusReport, now_ms: u64) -> Table {
    let archive = &report.archive;
    let mut table = Table::new(&["FIELD", "VALUE"]);
    let state = match (archive.enabled, archive.active) {
        (false, _) => "off (no archive.postgres_url)".to_owned(),
        (true, true) => format!("on, archiving on leader {}", report.leader),
        (true, false) => format!("on, leader {} is not archiving yet", report.leader),
    };
    let last_batch = archive.last_batch_at_ms.map_or_else(
        || "-".to_owned(),
        |at| format!("{:.1} s ago", now_ms.saturating_sub(at) as f64 / 1000.0),
    );
    for (field, value) in [
        ("archive", state),
        ("cursor", opt(archive.cursor.map(|id| id.0))),
        ("backlog", archive.backlog.to_string()),
        ("orders placed", archive.orders_placed.to_string()),
        ("orders held", archive.orders_held.to_string()),
        ("last batch", last_batch),
        (
            "last error",
            archive.last_error.clone().unwrap_or_else(|| "-".into()),
        ),
    ] {
        table.push(vec![field.to_owned(), value]);
    }
    table
}

async fn report(ctx: &Context, args: ReportArgs) -> Result<(), CliError> {
    let client = ctx.voter_client()?;
    let (from_ms, to_ms) = match (args.from, args.to) {
        (Some(from), Some(to)) => (from, to),
        _ => {
            let now = now_ms();
            (now.saturating_sub(args.since.as_millis() as u64), now + 1)
        }
    };
    if from_ms >= to_ms {
        return Err(CliError::Usage("--from must be before --to".into()));
    }
    // Any voter reads the same database; take the first that answers.
    let mut last_error = None;
    for endpoint in ctx.endpoints()? {
        match client.archive_report(endpoint, from_ms, to_ms).await {
            Ok(report) => {
                emit(ctx.output, &report, || report_table(&report));
                return Ok(());
            }
            Err(error) => {
                let error = CliError::from(error);
                // The archive's own answers are the same on every voter.
                if matches!(
                    error.code(),
                    Some(
                        ErrorCode::ArchiveDisabled
                            | ErrorCode::InvalidRequest
                            | ErrorCode::Unauthorized
                    )
                ) {
                    return Err(error);
                }
                last_error = Some(error);
            }
        }
    }
    Err(last_error
        .unwrap_or_else(|| CliError::failed(ErrorCode::Unavailable, "no endpoint answered")))
}

fn report_table(report: &ArchiveReport) -> Table {
    let mut table = Table::new(&["PRODUCT", "ORDERS", "UNITS", "REVENUE", "CANCELLED", "NET"]);
    for row in &report.products {
        table.push(vec![
            row.product.clone(),
            row.orders.to_string(),
            row.units.to_string(),
            cents(row.revenue_cents),
            row.cancelled_units.to_string(),
            cents(row.net_revenue_cents),
        ]);
    }
    let sum = |f: fn(&flashstock_api::ArchiveReportRow) -> u64| -> u64 {
        report.products.iter().map(f).sum()
    };
    table.push(vec![
        "TOTAL".into(),
        sum(|r| r.orders).to_string(),
        sum(|r| r.units).to_string(),
        cents(sum(|r| r.revenue_cents)),
        sum(|r| r.cancelled_units).to_string(),
        cents(sum(|r| r.net_revenue_cents)),
    ]);
    table
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis() as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use flashstock_api::{ArchiveReportRow, OrderId};

    #[test]
    fn status_table_says_where_the_archive_stands() {
        let report = StatusReport {
            leader: 2,
            archive: ArchiveStatus {
                enabled: true,
                active: true,
                cursor: Some(OrderId(65536)),
                backlog: 12,
                orders_placed: 40,
                orders_held: 30,
                last_error: Some("archive database unavailable: refused".into()),
                last_error_kind: Some(flashstock_api::ArchiveErrorKind::DatabaseUnavailable),
                last_batch_at_ms: Some(10_000),
            },
        };
        let text = status_table(&report, 12_500).render();
        assert!(text.contains("on, archiving on leader 2"), "{text}");
        assert!(text.contains("backlog        12"), "{text}");
        assert!(text.contains("2.5 s ago"), "{text}");
        assert!(text.contains("refused"), "{text}");
    }

    #[test]
    fn report_table_ends_with_totals() {
        let row = |product: &str, units| ArchiveReportRow {
            product: product.into(),
            orders: units,
            units,
            revenue_cents: units * 150,
            cancelled_units: 1,
            net_revenue_cents: (units - 1) * 150,
        };
        let report = ArchiveReport {
            from_ms: 0,
            to_ms: 1,
            products: vec![row("mug", 2), row("tee", 3)],
        };
        let text = report_table(&report).render();
        assert!(
            text.ends_with("TOTAL    5       5      7.50     2          4.50\n"),
            "{text}"
        );
    }
}
