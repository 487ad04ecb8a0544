//! One scenario end to end: create the catalog, drive the load, check the final state, report.
//! The `loadgen` binary, the benchmark and the CI smoke test all go through [`run_scenario`].

use std::sync::Arc;

use crate::check::check;
use crate::driver::{run, RunConfig};
use crate::http::Target;
use crate::report::RunReport;
use crate::setup::create_products;
use crate::workload::Workload;

/// What a scenario does besides sending load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phases {
    /// Create the catalog, then check the final state: a real shop (cluster or PostgreSQL).
    SetupAndCheck,
    /// Send load only: a server with no state (the bare axum baseline).
    LoadOnly,
}

/// Run `workload` against `target`. `name` and `target_label` only name the report.
pub async fn run_scenario(
    name: &str,
    target_label: &str,
    target: &Target,
    workload: &Workload,
    config: &RunConfig,
    phases: Phases,
) -> Result<RunReport, String> {
    if phases == Phases::SetupAndCheck {
        create_products(
            target,
            &workload.catalog,
            0..workload.catalog.products,
            config.progress,
        )
        .await?;
    }
    let workload = Arc::new(workload.clone());
    let result = run(target, workload.clone(), config).await;
    let checked = match phases {
        Phases::SetupAndCheck => {
            Some(check(target, &workload.catalog, &result.recorder.ledger).await)
        }
        Phases::LoadOnly => None,
    };
    Ok(RunReport::new(
        name,
        target_label,
        &workload,
        config,
        &result,
        checked,
    ))
}
