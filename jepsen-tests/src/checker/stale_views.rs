//! Invariant 10, **cut-off gateways own up**: a gateway cut off from every voter (the
//! `stale-gateway` fault) turns not-ready within its bound, and no view it serves while cut off
//! claims more freshness than it has.
//!
//! Per fault: `/v1/ready` answered 503 within `gateway.ready_leader_silence_ms` plus
//! [`NOT_READY_TOLERANCE_MS`]; and every view of that gateway invoked after the cut and answered
//! before the reconnection carries an `x-staleness-ms` of at least the time from the cut to the
//! view's invocation, less [`STALENESS_TOLERANCE_MS`] (`unknown` also claims nothing). A missing
//! header is a violation. Passes vacuously, and says so, in runs without the fault.

use crate::checker::{Invariant, Verdict};
use crate::history::{History, OpResult};
use crate::nemesis::stale_gateway::{Figures, NOT_READY_TOLERANCE_MS, STALENESS_TOLERANCE_MS};

pub const NAME: &str = "cut-off gateways own up";

pub fn cut_off_gateways_own_up(history: &History, cuts: &[Figures]) -> Invariant {
    let mut verdict = Verdict::new(NAME);
    if cuts.is_empty() {
        return verdict.finish("no gateway was cut off from the voters in this run".into());
    }
    let (mut views, mut past_bound) = (0, 0);
    let mut not_ready = Vec::new();
    for cut in cuts {
        match cut.not_ready_after_ms {
            Some(ms) if ms <= cut.bound_ms + NOT_READY_TOLERANCE_MS => not_ready.push(ms),
            Some(ms) => verdict.fail(format!(
                "gateway {} turned not-ready only {ms} ms after the cut (bound {} ms + {} ms)",
                cut.gateway, cut.bound_ms, NOT_READY_TOLERANCE_MS
            )),
            None => verdict.fail(format!(
                "gateway {} never answered not-ready in the {} ms it was cut off (bound {} ms)",
                cut.gateway,
                cut.reconnect_ms.saturating_sub(cut.cut_ms),
                cut.bound_ms
            )),
        }
        for op in history.views() {
            let OpResult::Viewed {
                served_by: Some(served),
                ..
            } = &op.result
            else {
                continue;
            };
            let while_cut = op.invoked_ms >= cut.cut_ms && op.completed_ms < cut.reconnect_ms;
            if served.gateway != cut.url || !while_cut {
                continue;
            }
            views += 1;
            let since_cut = op.invoked_ms - cut.cut_ms;
            if since_cut > cut.bound_ms {
                past_bound += 1;
            }
            let least = since_cut.saturating_sub(STALENESS_TOLERANCE_MS);
            match served.staleness.as_deref() {
                Some(flashstock_api::STALENESS_UNKNOWN) => {}
                Some(text) => match text.parse::<u64>() {
                    Ok(ms) if ms >= least => {}
                    Ok(ms) => verdict.fail(format!(
                        "a view of {} by gateway {} at {} ms, {since_cut} ms after the cut, \
                         claims to be {ms} ms stale",
                        op.product, cut.gateway, op.invoked_ms
                    )),
                    Err(_) => verdict.fail(format!(
                        "a view by gateway {} at {} ms has a bad staleness {text:?}",
                        cut.gateway, op.invoked_ms
                    )),
                },
                None => verdict.fail(format!(
                    "a view by gateway {} at {} ms, cut off, has no staleness header",
                    cut.gateway, op.invoked_ms
                )),
            }
        }
    }
    verdict.finish(format!(
        "{} cut(s): not ready after {not_ready:?} ms; {views} views served cut off, {past_bound} \
         of them past the bound, each at least as stale as the cut is old",
        cuts.len()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{OpRecord, ServedBy};

    fn cut() -> Figures {
        Figures {
            gateway: 101,
            url: "http://gw".into(),
            bound_ms: 2000,
            cut_ms: 1000,
            reconnect_ms: 5000,
            not_ready_after_ms: Some(2100),
        }
    }

    fn view(at_ms: u64, gateway: &str, staleness: Option<&str>) -> OpRecord {
        crate::history::test_view(
            at_ms,
            at_ms + 5,
            Some(1),
            Some(ServedBy {
                gateway: gateway.into(),
                staleness: staleness.map(str::to_owned),
            }),
        )
    }

    fn passed(ops: Vec<OpRecord>, cuts: &[Figures]) -> bool {
        let mut history = History::default();
        history.extend(ops);
        cut_off_gateways_own_up(&history, cuts).passed
    }

    #[test]
    fn views_of_a_cut_off_gateway_must_be_at_least_as_stale_as_the_cut() {
        let honest = vec![
            view(1500, "http://gw", Some("600")),
            view(4000, "http://gw", Some("3100")),
            view(4500, "http://gw", Some(flashstock_api::STALENESS_UNKNOWN)),
            // Another gateway, before the cut, after the reconnection: not judged.
            view(4000, "http://other", Some("5")),
            view(500, "http://gw", Some("5")),
            view(6000, "http://gw", Some("5")),
        ];
        assert!(passed(honest.clone(), &[cut()]));
        // 3000 ms after the cut, yet claims 40 ms.
        let mut lying = honest.clone();
        lying.push(view(4000, "http://gw", Some("40")));
        assert!(!passed(lying, &[cut()]));
        let mut bare = honest;
        bare.push(view(4000, "http://gw", None));
        assert!(!passed(bare, &[cut()]));
    }

    #[test]
    fn a_cut_off_gateway_must_turn_not_ready_within_its_bound() {
        let late = Figures {
            not_ready_after_ms: Some(2000 + NOT_READY_TOLERANCE_MS + 1),
            ..cut()
        };
        assert!(!passed(vec![], &[late]));
        let never = Figures {
            not_ready_after_ms: None,
            ..cut()
        };
        assert!(!passed(vec![], &[never]));
        assert!(passed(vec![], &[cut()]));
        assert!(passed(vec![], &[]));
    }
}
