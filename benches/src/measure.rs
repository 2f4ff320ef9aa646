//! The phases of one engine's run, in order, on one fresh directory:
//! A (in a child process that then exits without closing: a crash), DA (reopen), A4, B,
//! checkpoint and E, C (warm random loads), S (full scan), D (clean close + reopen), C2
//! (random loads right after that reopen); then, in a second child process, the memory
//! phase (open, random loads, scan: the growth of peak resident memory). Every load checks
//! the text it gets back.

use crate::engines::{BenchResult, Engine, Handle, Store};
use crate::workload::{Item, Rng, items};
use std::path::Path;
use std::time::{Duration, Instant};

/// What the run of one engine measured.
#[derive(Debug, Clone, Default)]
pub struct Figures {
    pub a_puts_per_s: f64,
    pub a_p50_us: f64,
    pub a_p99_us: f64,
    pub a4_puts_per_s: f64,
    pub b_records_per_s: f64,
    pub c_loads_per_s: f64,
    pub c2_loads_per_s: f64,
    pub da_ms: f64,
    pub d_ms: f64,
    pub e_ratio: f64,
    pub s_records_per_s: f64,
    pub records: u64,
    /// Growth of peak resident memory in a process that opens the store, loads and scans.
    pub rss_mib: f64,
}

/// Sizes of the run.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub seed: u64,
    /// Durable single puts of phase A (and of A4).
    pub single_puts: u64,
    /// Records in the data set after B.
    pub records: u64,
    pub batch: u64,
    pub warm_loads: u64,
    pub cold_loads: u64,
}

/// Phase A, run in a child process: durable single puts; prints the figures and every
/// handle, then exits without closing the store.
pub fn child_phase_a(engine: &dyn Engine, dir: &Path, plan: Plan) -> BenchResult<()> {
    let work = items(plan.seed, 0, plan.single_puts);
    let store = engine.open(dir)?;
    let mut latencies = Vec::with_capacity(work.len());
    let started = Instant::now();
    let mut handles = Vec::with_capacity(work.len());
    for (index, item) in work.iter().enumerate() {
        let put_started = Instant::now();
        handles.push(store.put(index as u64, item)?);
        latencies.push(put_started.elapsed());
    }
    let elapsed = started.elapsed();
    latencies.sort_unstable();
    let percentile = |p: f64| latencies[((latencies.len() - 1) as f64 * p) as usize];
    println!(
        "A {} {} {}",
        work.len() as f64 / elapsed.as_secs_f64(),
        micros(percentile(0.5)),
        micros(percentile(0.99))
    );
    for handle in handles {
        println!("{handle}");
    }
    // A crash: no close, no destructors.
    std::process::exit(0)
}

fn micros(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e6
}

/// Opens the store and loads one record: what a reopen costs before the first answer.
fn reopen(
    engine: &dyn Engine,
    dir: &Path,
    handle: Handle,
    item: &Item,
) -> BenchResult<(Box<dyn Store>, f64)> {
    let started = Instant::now();
    let store = engine.open(dir)?;
    let text = store.get(handle, &item.key)?;
    let elapsed = started.elapsed().as_secs_f64() * 1e3;
    check(&text, item)?;
    Ok((store, elapsed))
}

fn check(text: &str, item: &Item) -> BenchResult<()> {
    if text != item.node.content {
        return Err(format!("a load returned other text than stored for {:?}", item.key).into());
    }
    Ok(())
}

/// Random loads of `count` records; loads/s.
fn random_loads(
    store: &dyn Store,
    handles: &[Handle],
    work: &[Item],
    count: u64,
    seed: u64,
) -> BenchResult<f64> {
    let mut rng = Rng::new(seed);
    let picks: Vec<usize> = (0..count)
        .map(|_| rng.below(handles.len() as u64) as usize)
        .collect();
    let started = Instant::now();
    for index in picks {
        let text = store.get(handles[index], &work[index].key)?;
        check(&text, &work[index])?;
    }
    Ok(count as f64 / started.elapsed().as_secs_f64())
}

/// Bytes allocated on disk (`st_blocks` × 512) under `dir`.
pub fn allocated_bytes(dir: &Path) -> std::io::Result<u64> {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let metadata = entry.metadata()?;
        total += if metadata.is_dir() {
            allocated_bytes(&entry.path())?
        } else {
            metadata.blocks() * 512
        };
    }
    Ok(total)
}

/// Apparent length (`st_size`) of every file under `dir`, summed.
pub fn apparent_bytes(dir: &Path) -> std::io::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let metadata = entry.metadata()?;
        total += if metadata.is_dir() {
            apparent_bytes(&entry.path())?
        } else {
            metadata.len()
        };
    }
    Ok(total)
}

/// The phases after A, in this process. `a_handles` came from the child.
pub fn after_crash(
    engine: &dyn Engine,
    dir: &Path,
    plan: Plan,
    mut figures: Figures,
    a_handles: Vec<Handle>,
) -> BenchResult<(Figures, Vec<Handle>)> {
    let mut work = items(plan.seed, 0, plan.single_puts);
    let (store, da_ms) = reopen(engine, dir, a_handles[0], &work[0])?;
    figures.da_ms = da_ms;
    let mut handles = a_handles;
    for (handle, item) in handles.iter().zip(&work) {
        check(&store.get(*handle, &item.key)?, item)?;
    }

    // A4: four threads, durable single puts each.
    let first = plan.single_puts;
    let a4_work = items(plan.seed, first, first + plan.single_puts);
    let per_thread = (plan.single_puts / 4) as usize;
    let started = Instant::now();
    let a4_handles: Vec<BenchResult<Vec<Handle>>> = std::thread::scope(|scope| {
        let workers: Vec<_> = a4_work
            .chunks(per_thread)
            .enumerate()
            .map(|(thread, chunk)| {
                let store = &store;
                scope.spawn(move || {
                    chunk
                        .iter()
                        .enumerate()
                        .map(|(offset, item)| {
                            store.put(first + (thread * per_thread + offset) as u64, item)
                        })
                        .collect::<BenchResult<Vec<Handle>>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|worker| {
                worker
                    .join()
                    .unwrap_or_else(|_| Err("a writer panicked".into()))
            })
            .collect()
    });
    figures.a4_puts_per_s = a4_work.len() as f64 / started.elapsed().as_secs_f64();
    for chunk in a4_handles {
        handles.extend(chunk?);
    }
    work.extend(a4_work);

    // B: durable batches up to the data-set size.
    let mut next = work.len() as u64;
    let mut batched = 0u64;
    let mut batch_time = Duration::ZERO;
    while next < plan.records {
        let end = (next + plan.batch).min(plan.records);
        let batch = items(plan.seed, next, end);
        let started = Instant::now();
        handles.extend(store.put_batch(next, &batch)?);
        batch_time += started.elapsed();
        batched += batch.len() as u64;
        work.extend(batch);
        next = end;
    }
    figures.b_records_per_s = batched as f64 / batch_time.as_secs_f64().max(1e-9);
    figures.records = work.len() as u64;

    // E: allocated bytes per payload byte after a checkpoint.
    store.checkpoint()?;
    let payload: u64 = work
        .iter()
        .map(|item| {
            mentedb_storage::memory::encoded_record(&item.node)
                .map(|bytes| bytes.len() as u64)
                .unwrap_or(0)
        })
        .sum();
    figures.e_ratio = allocated_bytes(dir)? as f64 / payload as f64;

    // C: warm random loads (every record read once first).
    for (handle, item) in handles.iter().zip(&work) {
        check(&store.get(*handle, &item.key)?, item)?;
    }
    figures.c_loads_per_s = random_loads(&*store, &handles, &work, plan.warm_loads, plan.seed ^ 1)?;

    // S: full scan.
    let started = Instant::now();
    let scanned = store.scan()?;
    figures.s_records_per_s = scanned as f64 / started.elapsed().as_secs_f64();
    if scanned != work.len() as u64 {
        return Err(format!("the scan saw {scanned} records, {} stored", work.len()).into());
    }

    // D: clean close, reopen; C2: loads right after it.
    store.close()?;
    let (store, d_ms) = reopen(engine, dir, handles[0], &work[0])?;
    figures.d_ms = d_ms;
    figures.c2_loads_per_s =
        random_loads(&*store, &handles, &work, plan.cold_loads, plan.seed ^ 2)?;
    store.close()?;
    Ok((figures, handles))
}

/// The memory phase, run in a child process that holds nothing else: opens the store,
/// loads `loads` random records (checking each, the workload regenerated one item at a
/// time), scans, and prints the growth of its peak resident memory since before the open,
/// in KiB. `handles` are the records' handles in workload order.
pub fn child_memory(
    engine: &dyn Engine,
    dir: &Path,
    plan: Plan,
    handles: &[Handle],
) -> BenchResult<()> {
    let before = status_kib("VmRSS:").ok_or("no /proc/self/status")?;
    let store = engine.open(dir)?;
    let mut rng = Rng::new(plan.seed ^ 3);
    for _ in 0..plan.warm_loads {
        let index = rng.below(handles.len() as u64);
        let item = crate::workload::item(plan.seed, index);
        check(&store.get(handles[index as usize], &item.key)?, &item)?;
    }
    let scanned = store.scan()?;
    if scanned != handles.len() as u64 {
        return Err(format!("the scan saw {scanned} records, {} stored", handles.len()).into());
    }
    let peak = status_kib("VmHWM:").ok_or("no VmHWM")?;
    store.close()?;
    println!("{}", peak.saturating_sub(before));
    Ok(())
}

/// A `/proc/self/status` field in KiB.
fn status_kib(field: &str) -> Option<u64> {
    std::fs::read_to_string("/proc/self/status")
        .ok()?
        .lines()
        .find(|line| line.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}
