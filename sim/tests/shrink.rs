//! `--shrink` finds a small run that still fails, and its replay command reproduces it.
//! The failure is the canary's (a scan with three or more records live), so the test does
//! not depend on a bug being present.

use mentedb_sim::oracle::Rule;
use mentedb_sim::runner::{Outcome, RunConfig, run};
use mentedb_sim::shrink::shrink;

#[test]
fn a_canary_failure_shrinks_to_a_few_steps_and_replays_from_its_keep_list() {
    let config = RunConfig {
        ops: 300,
        faults: "swarm".to_string(),
        canary: true,
        ..RunConfig::default()
    };
    let seed = (0..20)
        .find(|&seed| {
            matches!(&run(seed, &config).outcome,
                Outcome::Failed(failure) if failure.violation.rule == Rule::Canary)
        })
        .expect("a canary seed in 0..20");
    let shrunk = shrink(seed, &config, |_, _| {}).expect("it fails");
    assert!(
        shrunk.steps_kept <= 12,
        "seed {seed}: {} of {} steps kept",
        shrunk.steps_kept,
        shrunk.steps_drawn
    );
    assert!(shrunk.steps_kept < shrunk.steps_drawn);
    let replayed = run(seed, &shrunk.config);
    assert!(
        matches!(&replayed.outcome, Outcome::Failed(failure) if failure.violation.rule == Rule::Canary),
        "{:?}",
        replayed.outcome
    );
    assert_eq!(replayed.trace_hash, shrunk.report.trace_hash);
}

#[test]
fn a_passing_seed_has_nothing_to_shrink() {
    let config = RunConfig {
        ops: 50,
        faults: "none".to_string(),
        ..RunConfig::default()
    };
    assert!(shrink(3, &config, |_, _| {}).is_err());
}
