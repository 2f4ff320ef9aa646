//! The delete-throughput mode (issue 14, item 4), and its table. Each engine, on a fresh
//! directory each time: store [`DeletePlan::records`] memories in durable batches, then
//! delete them all in durable batches (the engine's best batch: ours
//! `delete_memory_batch`, SQLite one transaction of rowid deletes, redb one write
//! transaction, fjall one write batch + `persist(SyncData)`), once in stored order and once
//! in a seeded shuffled order; and, on a third fresh store, [`DeletePlan::singles`] single
//! deletes (shuffled), one durable commit each. Every run checks with a scan that exactly
//! the deleted records are gone. Beside each rate: the bytes this process wrote to storage
//! per delete meanwhile (`write_bytes` of `/proc/self/io`, every thread counted), which is
//! where the time of a disk-bound delete goes.

use crate::engines::{BenchResult, Engine, Store, Target, ours};
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

/// What one timed stretch of deletes did.
#[derive(Debug, Clone, Copy, Default)]
pub struct Rate {
    pub deletes_per_s: f64,
    /// Bytes written to storage per delete (`/proc/self/io` `write_bytes`).
    pub written_per_delete_bytes: f64,
}

/// One engine's figures.
#[derive(Debug, Clone, Default)]
pub struct EngineDeletes {
    /// Batches, stored order; `None` if the engine has no batch delete.
    pub batch_stored: Option<Rate>,
    pub batch_shuffled: Option<Rate>,
    pub single: Rate,
    pub single_p50_us: f64,
    pub single_p99_us: f64,
    pub seconds: f64,
}

/// Bytes this process (all its threads) has caused to be written to storage so far.
fn written_bytes() -> BenchResult<u64> {
    let text = std::fs::read_to_string("/proc/self/io")?;
    let line = text
        .lines()
        .find(|line| line.starts_with("write_bytes:"))
        .ok_or("no write_bytes in /proc/self/io")?;
    Ok(line
        .split_whitespace()
        .nth(1)
        .ok_or("bad write_bytes line")?
        .parse()?)
}

/// Times `deletes` deletes done by `run`.
fn timed(deletes: usize, run: impl FnOnce() -> BenchResult<()>) -> BenchResult<Rate> {
    let written_before = written_bytes()?;
    let started = Instant::now();
    run()?;
    let seconds = started.elapsed().as_secs_f64();
    let written = written_bytes()?.saturating_sub(written_before);
    Ok(Rate {
        deletes_per_s: deletes as f64 / seconds,
        written_per_delete_bytes: written as f64 / deletes.max(1) as f64,
    })
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

/// Stores everything, deletes it all in batches.
fn batch_run(
    engine: &dyn Engine,
    dir: &Path,
    plan: DeletePlan,
    work: &[Item],
    order: Order,
) -> BenchResult<Rate> {
    let (store, mut targets) = fill(engine, dir, plan, work)?;
    if order == Order::Shuffled {
        shuffle(&mut targets, plan.seed ^ 5);
    }
    let rate = timed(targets.len(), || {
        targets
            .chunks(plan.batch as usize)
            .try_for_each(|chunk| store.delete_batch(chunk))
    })?;
    finish(store, dir, 0)?;
    Ok(rate)
}

/// Stores everything, deletes `plan.singles` shuffled records one commit each; the rate,
/// p50 and p99 latency in µs.
fn single_run(
    engine: &dyn Engine,
    dir: &Path,
    plan: DeletePlan,
    work: &[Item],
) -> BenchResult<(Rate, f64, f64)> {
    let (store, mut targets) = fill(engine, dir, plan, work)?;
    shuffle(&mut targets, plan.seed ^ 6);
    let singles = &targets[..(plan.singles as usize).min(targets.len())];
    let mut latencies: Vec<Duration> = Vec::with_capacity(singles.len());
    let rate = timed(singles.len(), || {
        for target in singles {
            let delete_started = Instant::now();
            store.delete(*target)?;
            latencies.push(delete_started.elapsed());
        }
        Ok(())
    })?;
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
    figures.single = rate;
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

fn rate_cell(rate: Option<Rate>) -> String {
    rate.map_or("n/a (no batch delete)".to_string(), |rate| {
        format!(
            "{} ({:.1})",
            crate::thousands(rate.deletes_per_s),
            rate.written_per_delete_bytes / 1024.0
        )
    })
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
        out.push_str("Each cell: deletes/s (KiB written to storage per delete).\n\n");
        out.push_str("| engine | batches, stored order | batches, shuffled order | single deletes (p50 / p99 µs) |\n");
        out.push_str("|---|---|---|---|\n");
        for (name, outcome) in &self.rows {
            match outcome {
                Ok(f) => out.push_str(&format!(
                    "| {name} | {} | {} | {} ({:.0} / {:.0}) |\n",
                    rate_cell(f.batch_stored),
                    rate_cell(f.batch_shuffled),
                    rate_cell(Some(f.single)),
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
        let Some((name, Ok(ours))) = self.rows.iter().find(|(name, _)| name == ours::NAME) else {
            return vec![format!(
                "{} did not finish or was not run: no targets",
                ours::NAME
            )];
        };
        let mut lines = Vec::new();
        for (label, rate) in [
            ("stored order", ours.batch_stored),
            ("shuffled order", ours.batch_shuffled),
        ] {
            let Some(rate) = rate.map(|rate| rate.deletes_per_s) else {
                continue;
            };
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
                .filter(|(peer, _)| peer != ours::NAME)
                .filter_map(|(peer, outcome)| Some((peer.as_str(), pick(outcome.as_ref().ok()?)?)))
                .max_by(|a, b| a.1.total_cmp(&b.1))
        };
        for (label, pick) in [
            (
                "batch, stored order",
                &(|f: &EngineDeletes| f.batch_stored.map(|rate| rate.deletes_per_s))
                    as &dyn Fn(&EngineDeletes) -> Option<f64>,
            ),
            ("batch, shuffled", &|f: &EngineDeletes| {
                f.batch_shuffled.map(|rate| rate.deletes_per_s)
            }),
            ("single", &|f: &EngineDeletes| Some(f.single.deletes_per_s)),
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
