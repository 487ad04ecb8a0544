//! The benchmark's main scenarios, each a [`Scenario`]: what runs, against what, how.

use std::time::Duration;

use crate::driver::{Mode, RunConfig};
use crate::http::Target;
use crate::scenario::Phases;
use crate::workload::{Workload, SPREAD_PRODUCTS, STANDARD_PRODUCTS};

use super::settings::Settings;

/// One scenario of the benchmark.
pub struct Scenario {
    /// Its name in the results (`views`, `flash-sale-postgres`, ...).
    pub name: &'static str,
    /// What it runs against: `flashstock`, `axum`, `postgres` or `redis`.
    pub label: &'static str,
    pub target: Target,
    pub workload: Workload,
    pub config: RunConfig,
    pub phases: Phases,
    /// Probe the floor (fsync, loopback) again right before it: its figures are compared to the
    /// floor, which moves with what else the machine does.
    pub probe_floor_first: bool,
}

/// The run configuration of a scenario: `connections` for `seconds`, bars if `progress`.
pub fn run_config(mode: Mode, connections: usize, seconds: f64, progress: bool) -> RunConfig {
    let mut config = RunConfig::new(mode, connections, Duration::from_secs_f64(seconds));
    config.progress = progress;
    config
}

/// Every main scenario, in the order they run: views against bare axum then flashstock, the
/// standard mix (closed, burst, open loop), the flash sale, the spread workload, light-load
/// purchases, the flash sale through holds and three-line carts against flashstock, then the last three against PostgreSQL when it runs, then the
/// standard mix (closed loop) and the last three against Redis when it runs.
pub fn main_scenarios(
    s: &Settings,
    shop: &Target,
    bare_axum: Target,
    postgres: Option<Target>,
    redis: Option<Target>,
    progress: bool,
) -> Vec<Scenario> {
    let mut plan = view_and_mix_scenarios(s, shop, bare_axum, progress);
    // Only flashstock's light-load run probes the floor first: its purchase latency is read
    // against the floor.
    plan.extend(purchase_scenarios(
        s,
        shop,
        "flashstock",
        ["flash-sale", "spread", "light-purchases"],
        FloorProbe::BeforeLightLoad,
        progress,
    ));
    plan.extend(checkout_scenarios(s, shop, progress));
    if let Some(pg) = &postgres {
        plan.extend(purchase_scenarios(
            s,
            pg,
            "postgres",
            [
                "flash-sale-postgres",
                "spread-postgres",
                "light-purchases-postgres",
            ],
            FloorProbe::Never,
            progress,
        ));
    }
    if let Some(redis) = &redis {
        plan.push(Scenario {
            name: "standard-closed-redis",
            label: "redis",
            target: redis.clone(),
            workload: Workload::standard(STANDARD_PRODUCTS, 80),
            config: run_config(Mode::Closed, s.connections, s.seconds, progress),
            phases: Phases::SetupAndCheck,
            probe_floor_first: false,
        });
        plan.extend(purchase_scenarios(
            s,
            redis,
            "redis",
            ["flash-sale-redis", "spread-redis", "light-purchases-redis"],
            FloorProbe::Never,
            progress,
        ));
    }
    plan
}

/// Views against bare axum and flashstock, then the standard mix closed, burst and open loop.
fn view_and_mix_scenarios(
    s: &Settings,
    shop: &Target,
    bare_axum: Target,
    progress: bool,
) -> Vec<Scenario> {
    let closed = |connections| run_config(Mode::Closed, connections, s.seconds, progress);
    let scenario = |name, label, target: &Target, workload, config, phases| Scenario {
        name,
        label,
        target: target.clone(),
        workload,
        config,
        phases,
        probe_floor_first: false,
    };
    let standard = |view_percent| Workload::standard(STANDARD_PRODUCTS, view_percent);
    let check = Phases::SetupAndCheck;
    vec![
        scenario(
            "views-axum",
            "axum",
            &bare_axum,
            standard(100),
            closed(s.connections),
            Phases::LoadOnly,
        ),
        scenario(
            "views",
            "flashstock",
            shop,
            standard(100),
            closed(s.connections),
            check,
        ),
        scenario(
            "standard-closed",
            "flashstock",
            shop,
            standard(80),
            closed(s.connections),
            check,
        ),
        scenario(
            "standard-burst",
            "flashstock",
            shop,
            standard(80),
            run_config(Mode::Burst, s.connections, s.seconds, progress),
            check,
        ),
        scenario(
            "standard-open",
            "flashstock",
            shop,
            standard(80),
            run_config(
                Mode::Open { rate: s.open_rate },
                s.connections,
                s.seconds,
                progress,
            ),
            check,
        ),
    ]
}

/// Checkout against flashstock, beside its flash sale and spread workload of the same run: the
/// flash sale bought through holds (hold, then confirm 80% or release 20%), and carts of three
/// lines over the spread workload's products.
fn checkout_scenarios(s: &Settings, shop: &Target, progress: bool) -> [Scenario; 2] {
    let scenario = |name, workload| Scenario {
        name,
        label: "flashstock",
        target: shop.clone(),
        workload,
        config: run_config(Mode::Closed, s.flash_buyers, s.seconds, progress),
        phases: Phases::SetupAndCheck,
        probe_floor_first: false,
    };
    [
        scenario("hold-sale", Workload::hold_sale(s.flash_stock)),
        scenario("cart", Workload::cart(SPREAD_PRODUCTS).in_groups(s.groups)),
    ]
}

/// Whether a group of purchase scenarios probes the floor again.
#[derive(PartialEq)]
enum FloorProbe {
    BeforeLightLoad,
    Never,
}

/// The flash sale, the spread workload and the light-load purchases against `target`, named
/// `names` in that order.
fn purchase_scenarios(
    s: &Settings,
    target: &Target,
    label: &'static str,
    names: [&'static str; 3],
    floor: FloorProbe,
    progress: bool,
) -> [Scenario; 3] {
    let closed = |connections| run_config(Mode::Closed, connections, s.seconds, progress);
    let [flash_sale, spread, light] = names;
    let scenario = |name, workload, config| Scenario {
        name,
        label,
        target: target.clone(),
        workload,
        config,
        phases: Phases::SetupAndCheck,
        probe_floor_first: false,
    };
    [
        scenario(
            flash_sale,
            Workload::flash_sale(s.flash_stock),
            closed(s.flash_buyers),
        ),
        scenario(
            spread,
            Workload::spread(SPREAD_PRODUCTS),
            closed(s.flash_buyers),
        ),
        Scenario {
            probe_floor_first: floor == FloorProbe::BeforeLightLoad,
            ..scenario(
                light,
                Workload::standard(STANDARD_PRODUCTS, 0),
                closed(s.light_buyers),
            )
        },
    ]
}
