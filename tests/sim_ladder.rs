//! The short simulator ladder the mutation runs use in their test (`mutants/run`, README
//! "Mutation testing"): a few seeds of each campaign kind (swarm, crash with three
//! processes, io, corrupt), each required to pass or to catch its injected corruption.
//! Ignored in the ordinary test run, where CI runs longer campaigns of the same kinds.

use mentedb_sim::campaign::Campaign;
use mentedb_sim::runner::{Outcome, RunConfig};

fn rung(faults: &str, processes: Option<usize>, seeds: std::ops::Range<u64>, ops: usize) {
    let campaign = Campaign::new(RunConfig {
        ops,
        processes,
        faults: faults.to_string(),
        ..RunConfig::default()
    });
    for seed in seeds {
        let report = campaign.run_checked(seed);
        if let Outcome::Failed(failure) = &report.outcome {
            panic!(
                "{faults} seed {seed}: {failure:?}\nreplay: {}",
                campaign.replay_command(seed)
            );
        }
    }
}

#[test]
#[ignore = "the mutation runs' test; CI runs longer campaigns"]
fn the_short_ladder_passes() {
    rung("swarm", None, 0..12, 300);
    rung("crash", Some(3), 0..6, 300);
    rung("io", None, 0..8, 300);
    rung("corrupt", None, 0..8, 300);
}
