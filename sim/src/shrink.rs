//! `--shrink`: the smallest run of a failing seed that still breaks the same rule.
//!
//! A run is the seed's drawn steps (each one operation or a group, with the seed of its own
//! decisions: crash points, picks) on a disk whose faults the profile sets. Shrinking
//! removes steps (first everything after the failing one, then chunks of halving size,
//! down to single steps: delta debugging) and switches faults off one at a time, keeping
//! each change after which the run still fails with the same rule. The kept steps run as
//! drawn; what moves is the disk's own fault stream, which follows the filesystem calls,
//! so a removal can make the failure vanish (it is then put back) but never invents one.
//!
//! The result is a replay command (`--seed N --keep … --faults-off …`) and the full trace
//! of the smallest run, ready to pin as a regression (`RunConfig::keep`, `faults_off`).

use crate::oracle::Rule;
use crate::runner::{Outcome, RunConfig, RunReport, run};
use crate::simfs::FaultConfig;

/// Most candidate runs one shrink makes (each is a whole run).
pub const SHRINK_RUNS_MAX: usize = 2_000;

/// What a shrink found.
#[derive(Debug)]
pub struct Shrunk {
    /// The configuration of the smallest failing run (`keep` and `faults_off` set).
    pub config: RunConfig,
    /// Its report, with the whole trace.
    pub report: RunReport,
    /// Steps the seed drew, and steps kept.
    pub steps_drawn: usize,
    pub steps_kept: usize,
    /// Candidate runs made.
    pub runs: usize,
}

/// Shrinks `seed` under `config`; `Err` with the reason if the seed does not fail.
/// `progress` is called after every candidate run with (runs so far, steps kept).
pub fn shrink(
    seed: u64,
    config: &RunConfig,
    mut progress: impl FnMut(usize, usize),
) -> Result<Shrunk, String> {
    let mut config = RunConfig {
        tail: usize::MAX,
        ..config.clone()
    };
    let first = run(seed, &config);
    let Outcome::Failed(failure) = &first.outcome else {
        return Err(format!(
            "seed {seed} does not fail ({:?}): nothing to shrink",
            first.outcome
        ));
    };
    let rule = failure.violation.rule;
    let steps_drawn = first.steps_drawn;
    let mut best = first.clone();
    let mut keep: Vec<usize> = config
        .keep
        .clone()
        .unwrap_or_else(|| (0..steps_drawn).collect());
    let mut runs = 1;
    let mut still_fails = |keep: &[usize], faults_off: &[String], runs: &mut usize| {
        *runs += 1;
        let candidate = RunConfig {
            keep: Some(keep.to_vec()),
            faults_off: faults_off.to_vec(),
            ..config.clone()
        };
        let report = run(seed, &candidate);
        progress(*runs, keep.len());
        same_rule(&report, rule).then_some(report)
    };
    // Everything after the step the failure stopped in.
    if let Some(last) = first.failed_in_step {
        let cut: Vec<usize> = keep
            .iter()
            .copied()
            .filter(|&index| index <= last)
            .collect();
        if cut.len() < keep.len()
            && let Some(report) = still_fails(&cut, &config.faults_off, &mut runs)
        {
            keep = cut;
            best = report;
        }
    }
    let mut faults_off = config.faults_off.clone();
    for pass in 0..2 {
        let mut chunk = (keep.len() / 2).max(1);
        loop {
            let mut start = 0;
            while start < keep.len() && runs < SHRINK_RUNS_MAX {
                let end = (start + chunk).min(keep.len());
                let candidate: Vec<usize> =
                    keep[..start].iter().chain(&keep[end..]).copied().collect();
                match still_fails(&candidate, &faults_off, &mut runs) {
                    Some(report) => {
                        keep = candidate;
                        best = report;
                    }
                    None => start = end,
                }
            }
            if chunk == 1 || runs >= SHRINK_RUNS_MAX {
                break;
            }
            chunk /= 2;
        }
        if pass == 1 {
            break;
        }
        for name in FaultConfig::SWITCHES {
            // Only faults this run has: switching off one it lacks changes nothing.
            let mut switched = best.fault_config.clone();
            switched.switch_off(name);
            if switched == best.fault_config || runs >= SHRINK_RUNS_MAX {
                continue;
            }
            let mut candidate = faults_off.clone();
            candidate.push(name.to_string());
            if let Some(report) = still_fails(&keep, &candidate, &mut runs) {
                faults_off = candidate;
                best = report;
            }
        }
    }
    config.keep = Some(keep.clone());
    config.faults_off = faults_off;
    Ok(Shrunk {
        config,
        report: best,
        steps_drawn,
        steps_kept: keep.len(),
        runs,
    })
}

fn same_rule(report: &RunReport, rule: Rule) -> bool {
    matches!(&report.outcome, Outcome::Failed(failure) if failure.violation.rule == rule)
}

/// `--keep`'s value: step indices and ranges, `3,17,40-52`.
pub fn parse_keep(text: &str) -> Result<Vec<usize>, String> {
    let mut keep = Vec::new();
    for part in text.split(',').filter(|part| !part.is_empty()) {
        let number = |text: &str| {
            text.trim()
                .parse::<usize>()
                .map_err(|_| format!("'{text}' in --keep is not a step index"))
        };
        match part.split_once('-') {
            Some((from, to)) => {
                let (from, to) = (number(from)?, number(to)?);
                if from > to {
                    return Err(format!("the range {part} in --keep is backwards"));
                }
                keep.extend(from..=to);
            }
            None => keep.push(number(part)?),
        }
    }
    keep.sort_unstable();
    keep.dedup();
    Ok(keep)
}

/// `--keep`'s value for `keep` (runs of consecutive steps as ranges).
pub fn format_keep(keep: &[usize]) -> String {
    let mut parts = Vec::new();
    let mut index = 0;
    while index < keep.len() {
        let start = keep[index];
        let mut end = start;
        while index + 1 < keep.len() && keep[index + 1] == end + 1 {
            index += 1;
            end += 1;
        }
        parts.push(if end > start {
            format!("{start}-{end}")
        } else {
            start.to_string()
        });
        index += 1;
    }
    parts.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keep_lists_round_trip_through_their_text() {
        let keep = vec![0, 1, 2, 5, 9, 10];
        assert_eq!(format_keep(&keep), "0-2,5,9-10");
        assert_eq!(parse_keep("0-2,5,9-10").expect("parse"), keep);
        assert_eq!(parse_keep("5,1,1").expect("parse"), vec![1, 5]);
        assert!(parse_keep("4-2").is_err());
        assert!(parse_keep("x").is_err());
    }
}
