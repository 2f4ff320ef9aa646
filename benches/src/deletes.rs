//! The delete-throughput mode (issue 14, item 4), and its table. Each engine, on a fresh
//! directory each time: store [`DeletePlan::records`] memories in durable batches, then
//! delete them all in durable batches (the engine's best batch: ours
//! `delete_memory_batch`, SQLite one transaction of rowid deletes, redb one write
//! transaction, fjall one write batch + `persist(SyncData)`), once in stored order and once
//! in a seeded shuffled order; and, on a third fresh store, [`DeletePlan::singles`] single
//! deletes (shuffled), one durable commit each. Every run checks with a scan that exactly
//! the deleted records are gone.

use crate::engines::{BenchResult, Engine, Store, Target};
use crate::workload::{Item, Rng};
use std::path::Path;
use std::time::{Duration, Instant};

/// Target for our engine: deletes/s in durable batches of 500.
const BATCH_DELETES_PER_S_MIN: f64 = 100_000.0;

/// Sizes of the run.
#[derive(Debug, Clone, Copy)]
pub struct DeletePlan {
    pub seed: u64,
    /// Records stored before the deletes.
    pub records: u64,
    /// Records per store batch and per delete batch.
    pub batch: u64,
    /// Single deletes timed.
    pub singles: u64,
}

/// The order batch deletes go in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Order {
    /// The order the records were stored in.
    Stored,
    /// A seeded shuffle.
    Shuffled,
}

/// One engine's figures.
#[derive(Debug, Clone, Default)]
pub struct EngineDeletes {
    /// Deletes/s in batches, stored order; `None` if the engine has no batch delete.
    pub batch_stored: Option<f64>,
    pub batch_shuffled: Option<f64>,
    pub single_per_s: f64,
    pub single_p50_us: f64,
    pub single_p99_us: f64,
    pub seconds: f64,
}

/// Stores `work` in batches into a fresh `dir`; the open store and the records' targets
/// in stored order.
fn fill(
    engine: &dyn Engine,
    dir: &Path,
    plan: DeletePlan,
    work: &[Item],
) -> BenchResult<(Box<dyn Store>, Vec<Target>)> {
    let _ = std::fs::remove_dir_all(dir);
    let store = engine.open(dir)?;
    let mut targets = Vec::with_capacity(work.len());
    for (chunk_index, chunk) in work.chunks(plan.batch as usize).enumerate() {
        let first = chunk_index as u64 * plan.batch;
        let handles = store.put_batch(first, chunk)?;
        targets.extend(handles.into_iter().zip(chunk).map(|(handle, item)| Target {
            handle,
            key: item.key,
        }));
    }
    Ok((store, targets))
}

/// Fisher–Yates with the workload's generator.
fn shuffle(targets: &mut [Target], seed: u64) {
    let mut rng = Rng::new(seed);
    for index in (1..targets.len()).rev() {
        let other = rng.below(index as u64 + 1) as usize;
        targets.swap(index, other);
    }
}

/// Closes the store after checking `live` records remain, and removes the directory.
fn finish(store: Box<dyn Store>, dir: &Path, live: u64) -> BenchResult<()> {
    let scanned = store.scan()?;
    store.close()?;
    let _ = std::fs::remove_dir_all(dir);
    if scanned != live {
        return Err(format!("{scanned} records live after the deletes, expected {live}").into());
    }
    Ok(())
}

/// Stores everything, deletes it all in batches; deletes/s.
fn batch_run(
    engine: &dyn Engine,
    dir: &Path,
    plan: DeletePlan,
    work: &[Item],
    order: Order,
) -> BenchResult<f64> {
    let (store, mut targets) = fill(engine, dir, plan, work)?;
    if order == Order::Shuffled {
        shuffle(&mut targets, plan.seed ^ 5);
    }
    let started = Instant::now();
    for chunk in targets.chunks(plan.batch as usize) {
        store.delete_batch(chunk)?;
    }
    let rate = targets.len() as f64 / started.elapsed().as_secs_f64();
    finish(store, dir, 0)?;
    Ok(rate)
}

/// Stores everything, deletes `plan.singles` shuffled records one commit each; deletes/s,
/// p50 and p99 latency in µs.
fn single_run(
    engine: &dyn Engine,
    dir: &Path,
    plan: DeletePlan,
    work: &[Item],
) -> BenchResult<(f64, f64, f64)> {
    let (store, mut targets) = fill(engine, dir, plan, work)?;
    shuffle(&mut targets, plan.seed ^ 6);
    let singles = &targets[..(plan.singles as usize).min(targets.len())];
    let mut latencies: Vec<Duration> = Vec::with_capacity(singles.len());
    let started = Instant::now();
    for target in singles {
        let delete_started = Instant::now();
        store.delete(*target)?;
        latencies.push(delete_started.elapsed());
    }
    let rate = singles.len() as f64 / started.elapsed().as_secs_f64();
    finish(store, dir, targets.len() as u64 - singles.len() as u64)?;
    latencies.sort_unstable();
    let percentile = |p: f64| {
        latencies
            .get(((latencies.len().saturating_sub(1)) as f64 * p) as usize)
            .map_or(0.0, |latency| latency.as_secs_f64() * 1e6)
    };
    Ok((rate, percentile(0.5), percentile(0.99)))
}

/// Every run of one engine.
pub fn run_engine(
    engine: &dyn Engine,
    dir: &Path,
    plan: DeletePlan,
    work: &[Item],
) -> BenchResult<EngineDeletes> {
    let started = Instant::now();
    let mut figures = EngineDeletes::default();
    if engine.batch_delete() {
        figures.batch_stored = Some(batch_run(engine, dir, plan, work, Order::Stored)?);
        figures.batch_shuffled = Some(batch_run(engine, dir, plan, work, Order::Shuffled)?);
    }
    let (rate, p50, p99) = single_run(engine, dir, plan, work)?;
    figures.single_per_s = rate;
    figures.single_p50_us = p50;
    figures.single_p99_us = p99;
    figures.seconds = started.elapsed().as_secs_f64();
    Ok(figures)
}

/// Everything the mode prints.
pub struct DeletesReport {
    pub date: String,
    pub machine: String,
    pub command: String,
    pub plan: DeletePlan,
    pub rows: Vec<(String, Result<EngineDeletes, String>)>,
    pub seconds: f64,
}

fn rate_cell(rate: Option<f64>) -> String {
    rate.map_or("n/a (no batch delete)".to_string(), crate::thousands)
}

impl DeletesReport {
    pub fn table(&self) -> String {
        let mut out = format!(
            "{} · {} · `{}` · {} records stored in batches of {} then deleted in durable batches of {}; {} durable single deletes; {:.0} s\n\n",
            self.date,
            self.machine,
            self.command,
            self.plan.records,
            self.plan.batch,
            self.plan.batch,
            self.plan.singles,
            self.seconds
        );
        out.push_str("| engine | batch deletes/s, stored order | batch deletes/s, shuffled | single deletes/s (p50 / p99 µs) |\n");
        out.push_str("|---|---|---|---|\n");
        for (name, outcome) in &self.rows {
            match outcome {
                Ok(f) => out.push_str(&format!(
                    "| {name} | {} | {} | {} ({:.0} / {:.0}) |\n",
                    rate_cell(f.batch_stored),
                    rate_cell(f.batch_shuffled),
                    crate::thousands(f.single_per_s),
                    f.single_p50_us,
                    f.single_p99_us
                )),
                Err(error) => out.push_str(&format!("| {name} | n/a: {error} | | |\n")),
            }
        }
        out.push('\n');
        for line in self.target_lines() {
            out.push_str(&format!("- {line}\n"));
        }
        for (name, outcome) in &self.rows {
            if let Ok(f) = outcome {
                out.push_str(&format!("- {name}: {:.1} s\n", f.seconds));
            }
        }
        out
    }

    fn target_lines(&self) -> Vec<String> {
        let Some((name, Ok(ours))) = self.rows.first() else {
            return vec!["our engine did not finish: no targets".to_string()];
        };
        let mut lines = Vec::new();
        for (label, rate) in [
            ("stored order", ours.batch_stored),
            ("shuffled order", ours.batch_shuffled),
        ] {
            let Some(rate) = rate else { continue };
            let verdict = if rate >= BATCH_DELETES_PER_S_MIN {
                "met"
            } else {
                "MISSED"
            };
            lines.push(format!(
                "{name}, batches of {}, {label}: {} deletes/s (target >= {}: {verdict})",
                self.plan.batch,
                crate::thousands(rate),
                crate::thousands(BATCH_DELETES_PER_S_MIN)
            ));
        }
        let best_peer = |pick: &dyn Fn(&EngineDeletes) -> Option<f64>| {
            self.rows
                .iter()
                .skip(1)
                .filter_map(|(peer, outcome)| Some((peer.as_str(), pick(outcome.as_ref().ok()?)?)))
                .max_by(|a, b| a.1.total_cmp(&b.1))
        };
        for (label, pick) in [
            (
                "batch, stored order",
                &(|f: &EngineDeletes| f.batch_stored) as &dyn Fn(&EngineDeletes) -> Option<f64>,
            ),
            ("batch, shuffled", &|f: &EngineDeletes| f.batch_shuffled),
            ("single", &|f: &EngineDeletes| Some(f.single_per_s)),
        ] {
            if let (Some(value), Some((peer, best))) = (pick(ours), best_peer(pick)) {
                lines.push(format!(
                    "{label}: ours {:.2}x the best peer ({peer})",
                    value / best
                ));
            }
        }
        lines
    }
}
