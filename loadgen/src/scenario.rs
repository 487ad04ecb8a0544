//! One scenario end to end: create the catalog, drive the load, check the final state, report.
//! The `loadgen` binary, the benchmark and the CI smoke test all go through [`run_scenario`].

use std::collections::BTreeMap;
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

/// Reads CPU seconds used so far, by process (or group of processes); the scenario records
/// the difference over its load phase (see `RunReport::cpu_s`).
pub type CpuProbe = dyn Fn() -> BTreeMap<String, f64> + Sync;

/// Run `workload` against `target`. `name` and `target_label` only name the report.
pub async fn run_scenario(
    name: &str,
    target_label: &str,
    target: &Target,
    workload: &Workload,
    config: &RunConfig,
    phases: Phases,
) -> Result<RunReport, String> {
    run_scenario_probed(name, target_label, target, workload, config, phases, None).await
}

/// [`run_scenario`], with the CPU each process used during the load phase read by `cpu`.
pub async fn run_scenario_probed(
    name: &str,
    target_label: &str,
    target: &Target,
    workload: &Workload,
    config: &RunConfig,
    phases: Phases,
    cpu: Option<&CpuProbe>,
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
    let before = cpu.map(|read| read());
    let result = run(target, workload.clone(), config).await;
    let cpu_s = cpu.zip(before).map(|(read, before)| {
        read()
            .into_iter()
            .map(|(process, after)| {
                let used = after - before.get(&process).copied().unwrap_or(0.0);
                (process, used.max(0.0))
            })
            .collect()
    });
    let checked = match phases {
        Phases::SetupAndCheck => {
            Some(check(target, &workload.catalog, &result.recorder.ledger).await)
        }
        Phases::LoadOnly => None,
    };
    let mut report = RunReport::new(name, target_label, &workload, config, &result, checked);
    report.cpu_s = cpu_s;
    Ok(report)
}
