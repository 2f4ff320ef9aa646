//! `verify` reports a lost log tail whenever `wal.shm` holds the evidence, changes no byte
//! while it looks, and agrees with the read-write open.
//!
//! Found from outside: with `wal.log` cut in the middle of 2,000 acknowledged stores,
//! `verify` said clean and opening the database overwrote the evidence. The simulator
//! never cut a synced log, so no rule could notice. Now, in seeds that damage stored bytes,
//! one power-loss step in eight instead kills every process and cuts `wal.log`'s synced tail
//! (`runner::lifecycle`): verify must report "lost" exactly when open refuses. With the
//! read-only open's tail check taken out, 18 of the 19 cuts in `--seeds 0..200 --ops 500
//! --faults swarm` fail the rule (checked by putting the bug back).

use mentedb_sim::runner::{Outcome, RunConfig, run};
use mentedb_sim::simfs::FaultKind;

#[test]
fn the_seeds_that_cut_a_synced_log_tail_pass() {
    let config = RunConfig {
        ops: 500,
        ..RunConfig::default()
    };
    // Which seeds cut the log moves with every change to the engine's I/O sequence (the
    // tail cut is drawn among the power-loss steps), so the test takes the first few seeds
    // of a fixed range that do rather than naming them.
    let mut cut = Vec::new();
    for seed in 0..200 {
        let report = run(seed, &config);
        assert!(
            !matches!(report.outcome, Outcome::Failed(_)),
            "seed {seed}: {:?}",
            report.outcome
        );
        if report.faults.get(&FaultKind::TailCut).copied().unwrap_or(0) > 0 {
            cut.push(seed);
            if cut.len() == 3 {
                return;
            }
        }
    }
    panic!("only seeds {cut:?} of 0..200 cut the log: the tail cut is no longer drawn");
}
