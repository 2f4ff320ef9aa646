//! The churn modes (issue 14, item 6): does space freed by deletes come back, and does one
//! process find the space another freed? Owns the rounds, the two child processes that run
//! them, and the sizes they report; `churn_report` prints them.
//!
//! A round: open, store [`ChurnPlan::records`] new memories in durable batches, close
//! (the stored size is measured here), reopen, delete in batches (`--churn`: every record
//! this round stored; `--churn-keep-one`: every record the round before stored, so one
//! round's data stays live), [`Store::reclaim`], close (the round's size is measured here).
//! Rounds 1, 3, 5, … run in one child process and rounds 2, 4, … in another, each child
//! reopening the directory the other just closed. After the last round this process opens
//! the store once more, checks what is live, reclaims and closes: the final size.
//!
//! Protocol with a child: this process writes a round number (0-based) a line on the
//! child's stdin; the child answers each with one line on stdout,
//! `ok <stored allocated> <stored length> <after allocated> <after length>` (bytes) or
//! `error <message>`, and exits when stdin ends. The handles a round stored go through a
//! file beside the directory (`<dir>.round-<n>.handles`), as the next round, in the other
//! process, deletes them in keep-one mode.

use crate::engines::{BenchResult, Engine, Handle, Target};
use crate::measure::{allocated_bytes, apparent_bytes};
use crate::workload::items;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Instant;

/// Which records a round deletes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// `--churn`: the records it stored itself; the store is empty after every round.
    DeleteAll,
    /// `--churn-keep-one`: the records the round before stored; one round's records stay.
    KeepOne,
}

impl Variant {
    /// The hidden child argument's word for the variant.
    pub fn word(self) -> &'static str {
        match self {
            Variant::DeleteAll => "delete-all",
            Variant::KeepOne => "keep-one",
        }
    }

    pub fn from_word(word: &str) -> Option<Variant> {
        match word {
            "delete-all" => Some(Variant::DeleteAll),
            "keep-one" => Some(Variant::KeepOne),
            _ => None,
        }
    }
}

/// Sizes of a churn run.
#[derive(Debug, Clone, Copy)]
pub struct ChurnPlan {
    pub seed: u64,
    pub rounds: u64,
    /// Records each round stores.
    pub records: u64,
    /// Records per store batch and per delete batch.
    pub batch: u64,
}

/// Where the space of a store is, in bytes.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sizes {
    /// `st_blocks` × 512 over the whole directory.
    pub allocated: u64,
    /// Apparent length of the main file (of the whole directory for fjall).
    pub main_length: u64,
}

/// What one round measured.
#[derive(Debug, Clone, Copy, Default)]
pub struct RoundSizes {
    /// After the round's stores and a close, before its deletes.
    pub stored: Sizes,
    /// After its deletes, the reclaim and a close.
    pub after: Sizes,
}

/// One engine's churn run.
#[derive(Debug, Clone, Default)]
pub struct EngineChurn {
    pub rounds: Vec<RoundSizes>,
    /// After the last round: reopen, check, reclaim, close.
    pub final_sizes: Sizes,
    pub seconds: f64,
}

/// The sizes of `dir` as `engine` lays it out.
pub fn sizes(engine: &dyn Engine, dir: &Path) -> BenchResult<Sizes> {
    let main_length = match engine.main_file() {
        Some(name) => std::fs::metadata(dir.join(name))?.len(),
        None => apparent_bytes(dir)?,
    };
    Ok(Sizes {
        allocated: allocated_bytes(dir)?,
        main_length,
    })
}

fn handles_file(dir: &Path, round: u64) -> PathBuf {
    let mut name = dir.as_os_str().to_os_string();
    name.push(format!(".round-{round}.handles"));
    PathBuf::from(name)
}

/// The first workload index of a round's records.
fn first_index(plan: ChurnPlan, round: u64) -> u64 {
    round * plan.records
}

/// Stores a round's records in batches and closes; the handles, in workload order.
fn store_round(
    engine: &dyn Engine,
    dir: &Path,
    plan: ChurnPlan,
    round: u64,
) -> BenchResult<Vec<Handle>> {
    let store = engine.open(dir)?;
    let first = first_index(plan, round);
    let mut handles = Vec::with_capacity(plan.records as usize);
    let mut next = first;
    while next < first + plan.records {
        let end = (next + plan.batch).min(first + plan.records);
        handles.extend(store.put_batch(next, &items(plan.seed, next, end))?);
        next = end;
    }
    store.close()?;
    Ok(handles)
}

/// The records a round deletes: its own, or (keep-one) the previous round's, read from the
/// file that round left.
fn targets(
    dir: &Path,
    plan: ChurnPlan,
    variant: Variant,
    round: u64,
    own: &[Handle],
) -> BenchResult<Vec<Target>> {
    let (source, handles) = match variant {
        Variant::DeleteAll => (round, own.to_vec()),
        Variant::KeepOne if round == 0 => return Ok(Vec::new()),
        Variant::KeepOne => {
            let path = handles_file(dir, round - 1);
            let handles = std::fs::read_to_string(&path)?
                .lines()
                .map(str::parse)
                .collect::<Result<Vec<Handle>, _>>()?;
            std::fs::remove_file(&path)?;
            (round - 1, handles)
        }
    };
    let first = first_index(plan, source);
    if handles.len() as u64 != plan.records {
        return Err(format!("round {} left {} handles", source + 1, handles.len()).into());
    }
    Ok(handles
        .into_iter()
        .zip(items(plan.seed, first, first + plan.records))
        .map(|(handle, item)| Target {
            handle,
            key: item.key,
        })
        .collect())
}

/// Records live after a round's deletes.
fn live_after(plan: ChurnPlan, variant: Variant) -> u64 {
    match variant {
        Variant::DeleteAll => 0,
        Variant::KeepOne => plan.records,
    }
}

/// One round, in a child process.
fn round(
    engine: &dyn Engine,
    dir: &Path,
    plan: ChurnPlan,
    variant: Variant,
    round: u64,
) -> BenchResult<RoundSizes> {
    let own = store_round(engine, dir, plan, round)?;
    let stored = sizes(engine, dir)?;
    let text: String = own.iter().map(|handle| format!("{handle}\n")).collect();
    std::fs::write(handles_file(dir, round), text)?;
    let targets = targets(dir, plan, variant, round, &own)?;

    let mut store = engine.open(dir)?;
    for chunk in targets.chunks(plan.batch as usize) {
        store.delete_batch(chunk)?;
    }
    let live = store.scan()?;
    if live != live_after(plan, variant) {
        return Err(format!("round {}: {live} records live after its deletes", round + 1).into());
    }
    store.reclaim()?;
    store.close()?;
    if variant == Variant::DeleteAll {
        std::fs::remove_file(handles_file(dir, round))?;
    }
    Ok(RoundSizes {
        stored,
        after: sizes(engine, dir)?,
    })
}

/// The child process: runs the rounds it is sent until stdin ends.
pub fn child(
    engine: &dyn Engine,
    dir: &Path,
    plan: ChurnPlan,
    variant: Variant,
) -> BenchResult<()> {
    let mut stdout = std::io::stdout().lock();
    for line in std::io::stdin().lock().lines() {
        let number: u64 = line?.trim().parse()?;
        match round(engine, dir, plan, variant, number) {
            Ok(sizes) => writeln!(
                stdout,
                "ok {} {} {} {}",
                sizes.stored.allocated,
                sizes.stored.main_length,
                sizes.after.allocated,
                sizes.after.main_length
            )?,
            Err(error) => {
                writeln!(stdout, "error {error}")?;
                stdout.flush()?;
                return Err(error);
            }
        }
        stdout.flush()?;
    }
    Ok(())
}

/// A running child and its pipes.
struct Worker {
    process: Child,
    input: Option<ChildStdin>,
    output: BufReader<ChildStdout>,
}

impl Worker {
    fn spawn(engine: &dyn Engine, dir: &Path, variant: Variant) -> BenchResult<Worker> {
        let mut process = Command::new(std::env::current_exe()?)
            .args([
                "--child-churn",
                engine.name(),
                &dir.display().to_string(),
                variant.word(),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let input = process.stdin.take().ok_or("no child stdin")?;
        let output = BufReader::new(process.stdout.take().ok_or("no child stdout")?);
        Ok(Worker {
            process,
            input: Some(input),
            output,
        })
    }

    fn run(&mut self, round: u64) -> BenchResult<RoundSizes> {
        let input = self.input.as_mut().ok_or("child stdin closed")?;
        writeln!(input, "{round}")?;
        input.flush()?;
        let mut line = String::new();
        if self.output.read_line(&mut line)? == 0 {
            return Err(format!("round {}: the child exited without an answer", round + 1).into());
        }
        parse_answer(&line).map_err(|error| format!("round {}: {error}", round + 1).into())
    }

    /// Closes stdin and waits for the child to exit.
    fn finish(mut self) -> BenchResult<()> {
        drop(self.input.take());
        let status = self.process.wait()?;
        if !status.success() {
            return Err(format!("a churn child exited with {status}").into());
        }
        Ok(())
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // Only reached with the child still running after an error: stop it.
        if self.input.is_some() {
            let _ = self.process.kill();
            let _ = self.process.wait();
        }
    }
}

fn parse_answer(line: &str) -> Result<RoundSizes, String> {
    let line = line.trim();
    if let Some(message) = line.strip_prefix("error ") {
        return Err(message.to_string());
    }
    let numbers: Vec<u64> = line
        .strip_prefix("ok ")
        .ok_or_else(|| format!("bad answer {line:?}"))?
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()
        .map_err(|error| format!("bad answer {line:?}: {error}"))?;
    let [
        stored_allocated,
        stored_length,
        after_allocated,
        after_length,
    ] = numbers[..]
    else {
        return Err(format!("bad answer {line:?}"));
    };
    Ok(RoundSizes {
        stored: Sizes {
            allocated: stored_allocated,
            main_length: stored_length,
        },
        after: Sizes {
            allocated: after_allocated,
            main_length: after_length,
        },
    })
}

/// Runs every round of one engine, alternating two children, then the final step here.
pub fn run_engine(
    engine: &dyn Engine,
    dir: &Path,
    plan: ChurnPlan,
    variant: Variant,
) -> BenchResult<EngineChurn> {
    let started = Instant::now();
    let _ = std::fs::remove_dir_all(dir);
    let mut workers = [
        Worker::spawn(engine, dir, variant)?,
        Worker::spawn(engine, dir, variant)?,
    ];
    let mut rounds = Vec::with_capacity(plan.rounds as usize);
    for number in 0..plan.rounds {
        rounds.push(workers[(number % 2) as usize].run(number)?);
    }
    for worker in workers {
        worker.finish()?;
    }
    let mut store = engine.open(dir)?;
    let live = store.scan()?;
    if live != live_after(plan, variant) {
        return Err(format!("after the last round {live} records are live").into());
    }
    store.reclaim()?;
    store.close()?;
    let final_sizes = sizes(engine, dir)?;
    if let Some(last) = plan.rounds.checked_sub(1) {
        let _ = std::fs::remove_file(handles_file(dir, last));
    }
    Ok(EngineChurn {
        rounds,
        final_sizes,
        seconds: started.elapsed().as_secs_f64(),
    })
}
