//! The churn modes' output: one Markdown table of allocated bytes and one of the main
//! file's apparent length (rows: the stored size of round 1, the size after each round,
//! the final size; columns: engines; MiB with 2 decimals), then the ratio lines of the
//! issue 14 targets and what each engine's reclaim does.

use crate::churn::{ChurnPlan, EngineChurn, Sizes, Variant};
use crate::engines::ours;

/// Target of `--churn`: final size / stored size of round 1.
const DELETE_ALL_RATIO_MAX: f64 = 0.25;
/// Target of the file holding one round's data: after the last round / after round 1
/// (`--churn`: stored sizes; `--churn-keep-one`: sizes after each round).
const KEEP_ONE_RATIO_MAX: f64 = 1.15;
/// Ratios closer than this count as equal (they are printed with 3 decimals).
const RATIO_TIE: f64 = 0.0005;

/// One engine's outcome in the report.
pub struct ChurnRow {
    pub name: String,
    pub outcome: Result<EngineChurn, String>,
    pub reclaim: &'static str,
}

/// Everything a churn run prints.
pub struct ChurnReport {
    pub date: String,
    pub machine: String,
    pub command: String,
    pub plan: ChurnPlan,
    pub variant: Variant,
    pub rows: Vec<ChurnRow>,
    pub seconds: f64,
}

/// MiB with 2 decimals; under 1 MiB the exact KiB follow, since an emptied store's few
/// pages would all print as 0.01.
fn mib(bytes: u64) -> String {
    let mib = format!("{:.2}", bytes as f64 / (1024.0 * 1024.0));
    if bytes < 1024 * 1024 {
        format!("{mib} ({} KiB)", bytes.div_ceil(1024))
    } else {
        mib
    }
}

/// Which of the two sizes a table or ratio is about.
#[derive(Debug, Clone, Copy)]
enum Measure {
    Allocated,
    MainLength,
}

impl Measure {
    fn of(self, sizes: Sizes) -> u64 {
        match self {
            Measure::Allocated => sizes.allocated,
            Measure::MainLength => sizes.main_length,
        }
    }
}

impl ChurnReport {
    pub fn table(&self) -> String {
        let deleted = match self.variant {
            Variant::DeleteAll => "every record it stored",
            Variant::KeepOne => "the records of the round before (one round stays live)",
        };
        let mut out = format!(
            "{} · {} · `{}` · {} rounds of {} records stored then {deleted} deleted, batches of {}, rounds alternating between two child processes, {:.0} s\n\n",
            self.date,
            self.machine,
            self.command,
            self.plan.rounds,
            self.plan.records,
            self.plan.batch,
            self.seconds
        );
        out.push_str(
            "Allocated on disk (`st_blocks` × 512, whole directory), MiB, after each round's deletes, reclaim and close (`stored, round N`: after its stores, before its deletes):\n\n",
        );
        out.push_str(&self.sizes_table(Measure::Allocated));
        out.push_str(
            "\nApparent length of the main file (fjall: of the whole directory), MiB:\n\n",
        );
        out.push_str(&self.sizes_table(Measure::MainLength));
        out.push('\n');
        for line in self.ratio_lines() {
            out.push_str(&format!("- {line}\n"));
        }
        for row in &self.rows {
            if let Ok(churn) = &row.outcome {
                out.push_str(&format!("- {} ({:.1} s)\n", row.reclaim, churn.seconds));
            }
        }
        out
    }

    fn sizes_table(&self, measure: Measure) -> String {
        let mut out = String::from("| round |");
        for row in &self.rows {
            out.push_str(&format!(" {} |", row.name));
        }
        out.push_str("\n|---|");
        out.push_str(&"---|".repeat(self.rows.len()));
        out.push('\n');
        let cells = |label: String, pick: &dyn Fn(&EngineChurn) -> Option<Sizes>| {
            let mut line = format!("| {label} |");
            for row in &self.rows {
                let cell = match &row.outcome {
                    Ok(churn) => pick(churn).map_or("n/a".to_string(), |s| mib(measure.of(s))),
                    Err(error) => format!("n/a: {error}"),
                };
                line.push_str(&format!(" {cell} |"));
            }
            line.push('\n');
            line
        };
        out.push_str(&cells(
            "stored, round 1 (before its deletes)".into(),
            &|churn| churn.rounds.first().map(|round| round.stored),
        ));
        for index in 0..self.plan.rounds as usize {
            if index > 0 && matches!(self.variant, Variant::DeleteAll) {
                // The file holding one round's data, round after round.
                out.push_str(&cells(format!("stored, round {}", index + 1), &|churn| {
                    churn.rounds.get(index).map(|round| round.stored)
                }));
            }
            out.push_str(&cells((index + 1).to_string(), &|churn| {
                churn.rounds.get(index).map(|round| round.after)
            }));
        }
        out.push_str(&cells(
            "final (reopen, check, reclaim, close)".into(),
            &|churn| Some(churn.final_sizes),
        ));
        out
    }

    /// Each finished engine's value of `ratio`.
    fn ratios(&self, ratio: &dyn Fn(&EngineChurn) -> Option<f64>) -> Vec<(String, f64)> {
        self.rows
            .iter()
            .filter_map(|row| {
                let churn = row.outcome.as_ref().ok()?;
                Some((row.name.clone(), ratio(churn)?))
            })
            .collect()
    }

    fn ratio_lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        for measure in [Measure::Allocated, Measure::MainLength] {
            let what = match measure {
                Measure::Allocated => "allocated",
                Measure::MainLength => "main file length",
            };
            let stored_first = move |churn: &EngineChurn| {
                churn.rounds.first().map(|round| measure.of(round.stored))
            };
            let after = move |churn: &EngineChurn, index: usize| {
                churn.rounds.get(index).map(|round| measure.of(round.after))
            };
            let last = self.plan.rounds.saturating_sub(1) as usize;
            match self.variant {
                Variant::DeleteAll => {
                    let stored = move |churn: &EngineChurn, index: usize| {
                        churn
                            .rounds
                            .get(index)
                            .map(|round| measure.of(round.stored))
                    };
                    lines.push(ratio_line(
                        &format!(
                            "churn, {what}: stored size of round {} / stored size of round 1 (one round's data each time)",
                            last + 1
                        ),
                        &self.ratios(&|churn| divide(stored(churn, last)?, stored(churn, 0)?)),
                        matches!(measure, Measure::Allocated).then_some(KEEP_ONE_RATIO_MAX),
                    ));
                    let target =
                        matches!(measure, Measure::Allocated).then_some(DELETE_ALL_RATIO_MAX);
                    lines.push(ratio_line(
                        &format!("churn, {what}: final size (all deleted, reclaimed) / stored size of round 1"),
                        &self.ratios(&|churn| {
                            divide(measure.of(churn.final_sizes), stored_first(churn)?)
                        }),
                        target,
                    ));
                    lines.push(ratio_line(
                        &format!(
                            "churn, {what}: after round {} / after round 1 (flat is 1.00)",
                            last + 1
                        ),
                        &self.ratios(&|churn| divide(after(churn, last)?, after(churn, 0)?)),
                        None,
                    ));
                }
                Variant::KeepOne => {
                    let target =
                        matches!(measure, Measure::Allocated).then_some(KEEP_ONE_RATIO_MAX);
                    lines.push(ratio_line(
                        &format!(
                            "keep-one-round, {what}: after round {} / after round 1",
                            last + 1
                        ),
                        &self.ratios(&|churn| divide(after(churn, last)?, after(churn, 0)?)),
                        target,
                    ));
                    // An engine whose size swings from round to round (fjall's journals)
                    // can end on a low; the largest size of any round shows the swing.
                    lines.push(ratio_line(
                        &format!("keep-one-round, {what}: largest after any round / after round 1"),
                        &self.ratios(&|churn| {
                            let peak = churn
                                .rounds
                                .iter()
                                .map(|round| measure.of(round.after))
                                .max()?;
                            divide(peak, after(churn, 0)?)
                        }),
                        None,
                    ));
                }
            }
        }
        lines
    }
}

fn divide(numerator: u64, denominator: u64) -> Option<f64> {
    (denominator > 0).then(|| numerator as f64 / denominator as f64)
}

/// `label: engine value, …` (lower is better), the target verdict for our engine and
/// whether it is the lowest of the engines measured.
fn ratio_line(label: &str, values: &[(String, f64)], target: Option<f64>) -> String {
    let listed: Vec<String> = values
        .iter()
        .map(|(name, value)| format!("{name} {value:.3}"))
        .collect();
    let mut line = format!("{label}: {}", listed.join(", "));
    let Some(ours) = values
        .iter()
        .find(|(name, _)| name == ours::NAME)
        .map(|(_, value)| *value)
    else {
        line.push_str(&format!(" ({} not measured)", ours::NAME));
        return line;
    };
    if let Some(max) = target {
        let verdict = if ours <= max { "met" } else { "MISSED" };
        line.push_str(&format!(
            " — target <= {max:.2} for ours: {ours:.3}, {verdict}"
        ));
    }
    let best = values
        .iter()
        .map(|(_, value)| *value)
        .fold(f64::INFINITY, f64::min);
    let best_names: Vec<&str> = values
        .iter()
        .filter(|(_, value)| (*value - best).abs() < RATIO_TIE)
        .map(|(name, _)| name.as_str())
        .collect();
    let verdict = if (ours - best).abs() < RATIO_TIE {
        "is the best of the engines measured"
    } else {
        "is not the best"
    };
    line.push_str(&format!(
        "; {} {verdict} (best: {} at {best:.3})",
        ours::NAME,
        best_names.join(", ")
    ));
    line
}
