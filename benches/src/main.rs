//! `compare`: runs every engine on the same seeded agent-memory workload, one after
//! another in this process (phase A in a child process that then dies without closing),
//! and prints one table. See `README.md` for the columns. Two other modes: `--churn` /
//! `--churn-keep-one` (does deleted space come back, across processes: `churn`) and
//! `--deletes` (delete throughput: `deletes`).
//!
//! `cargo run --release --manifest-path benches/Cargo.toml -- [--scale K] [--json] [--only NAME]`
//! `cargo run --release --manifest-path benches/Cargo.toml -- --churn|--churn-keep-one|--deletes [--only NAME]`

mod baseline;
mod churn;
mod churn_report;
mod deletes;
mod engines;
mod measure;
mod workload;

use engines::{BenchResult, Engine, Handle};
use measure::{Figures, Plan};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

const SEED: u64 = 0x6d65_6e74_6564_6221;
const SINGLE_PUTS: u64 = 2_000;
const DEFAULT_RECORDS: u64 = 20_000;
/// The churn modes: rounds, records a round, batch.
const CHURN_PLAN: churn::ChurnPlan = churn::ChurnPlan {
    seed: SEED,
    rounds: 20,
    records: 10_000,
    batch: 500,
};
/// The delete-throughput mode.
const DELETE_PLAN: deletes::DeletePlan = deletes::DeletePlan {
    seed: SEED,
    records: 100_000,
    batch: 500,
    singles: 2_000,
};

/// What the run measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// The comparison table.
    Table,
    Churn(churn::Variant),
    Deletes,
}

struct Args {
    mode: Mode,
    scale: u64,
    json: bool,
    only: Option<String>,
}

fn parse_args(args: &[String]) -> BenchResult<Args> {
    let mut parsed = Args {
        mode: Mode::Table,
        scale: 0,
        json: false,
        only: None,
    };
    let mut index = 0;
    while index < args.len() {
        match args[index].as_str() {
            "--json" => parsed.json = true,
            "--churn" => parsed.mode = Mode::Churn(churn::Variant::DeleteAll),
            "--churn-keep-one" => parsed.mode = Mode::Churn(churn::Variant::KeepOne),
            "--deletes" => parsed.mode = Mode::Deletes,
            "--scale" => {
                index += 1;
                parsed.scale = args.get(index).ok_or("--scale needs a number")?.parse()?;
            }
            "--only" => {
                index += 1;
                parsed.only = Some(args.get(index).ok_or("--only needs a name")?.clone());
            }
            other => return Err(format!("unknown argument {other}").into()),
        }
        index += 1;
    }
    if parsed.mode != Mode::Table && (parsed.json || parsed.scale > 0) {
        return Err("--json and --scale are for the comparison table only".into());
    }
    Ok(parsed)
}

fn plan(scale: u64) -> Plan {
    let sample = workload::items(SEED, 0, 200);
    let average = sample
        .iter()
        .map(|item| {
            mentedb_storage::memory::encoded_record(&item.node)
                .map(|bytes| bytes.len() as u64)
                .unwrap_or(2048)
        })
        .sum::<u64>()
        / sample.len() as u64;
    let records = if scale == 0 {
        DEFAULT_RECORDS
    } else {
        scale * engines::CACHE_BYTES as u64 / average
    };
    Plan {
        seed: SEED,
        single_puts: SINGLE_PUTS,
        records: records.max(3 * SINGLE_PUTS),
        batch: 500,
        warm_loads: 100_000,
        cold_loads: 20_000,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let outcome = match args.first().map(String::as_str) {
        Some("--child-a") => child(&args[1..]),
        Some("--child-memory") => child_memory(&args[1..]),
        Some("--child-churn") => child_churn(&args[1..]),
        _ => parse_args(&args).and_then(|parsed| match parsed.mode {
            Mode::Table => parent(&parsed),
            Mode::Churn(variant) => churn_mode(&parsed, variant),
            Mode::Deletes => deletes_mode(&parsed),
        }),
    };
    if let Err(error) = outcome {
        eprintln!("error: {error}");
        std::process::exit(2);
    }
}

fn child(args: &[String]) -> BenchResult<()> {
    let [name, dir, scale] = args else {
        return Err("usage: --child-a <engine> <dir> <scale>".into());
    };
    let engine = engines::by_name(name).ok_or("unknown engine")?;
    measure::child_phase_a(&*engine, Path::new(dir), plan(scale.parse()?))
}

fn child_memory(args: &[String]) -> BenchResult<()> {
    let [name, dir, scale, handles] = args else {
        return Err("usage: --child-memory <engine> <dir> <scale> <handles file>".into());
    };
    let engine = engines::by_name(name).ok_or("unknown engine")?;
    let handles = std::fs::read_to_string(handles)?
        .lines()
        .map(str::parse)
        .collect::<Result<Vec<Handle>, _>>()?;
    measure::child_memory(&*engine, Path::new(dir), plan(scale.parse()?), &handles)
}

fn child_churn(args: &[String]) -> BenchResult<()> {
    let [name, dir, variant] = args else {
        return Err("usage: --child-churn <engine> <dir> <delete-all|keep-one>".into());
    };
    let engine = engines::by_name(name).ok_or("unknown engine")?;
    let variant = churn::Variant::from_word(variant).ok_or("unknown churn variant")?;
    churn::child(&*engine, Path::new(dir), CHURN_PLAN, variant)
}

/// The engines of a list that `--only` keeps.
fn selected(list: Vec<Box<dyn Engine>>, only: Option<&str>) -> Vec<Box<dyn Engine>> {
    list.into_iter()
        .filter(|engine| only.is_none_or(|only| engine.name().contains(only)))
        .collect()
}

/// The temporary directory of this run and an engine's directory in it.
fn run_root() -> BenchResult<PathBuf> {
    let root = std::env::temp_dir().join(format!("mentedb-bench-{}", std::process::id()));
    std::fs::create_dir_all(&root)?;
    Ok(root)
}

fn engine_dir(root: &Path, engine: &dyn Engine) -> PathBuf {
    root.join(engine.name().replace([' ', '(', ')', ',', '+'], "_"))
}

fn churn_mode(args: &Args, variant: churn::Variant) -> BenchResult<()> {
    let root = run_root()?;
    let started = Instant::now();
    let mut rows = Vec::new();
    for engine in selected(engines::churn(), args.only.as_deref()) {
        eprintln!("{} ...", engine.name());
        let outcome =
            churn::run_engine(&*engine, &engine_dir(&root, &*engine), CHURN_PLAN, variant)
                .map_err(|error| error.to_string());
        if let Ok(figures) = &outcome {
            eprintln!("  {:.1} s", figures.seconds);
        }
        rows.push(churn_report::ChurnRow {
            name: engine.name().to_string(),
            outcome,
            reclaim: engine.reclaim_notes(),
        });
    }
    let _ = std::fs::remove_dir_all(&root);
    let flag = match variant {
        churn::Variant::DeleteAll => "--churn",
        churn::Variant::KeepOne => "--churn-keep-one",
    };
    let report = churn_report::ChurnReport {
        date: today(),
        machine: machine(),
        command: format!("cargo run --release --manifest-path benches/Cargo.toml -- {flag}"),
        plan: CHURN_PLAN,
        variant,
        rows,
        seconds: started.elapsed().as_secs_f64(),
    };
    print!("{}", report.table());
    Ok(())
}

fn deletes_mode(args: &Args) -> BenchResult<()> {
    let root = run_root()?;
    let started = Instant::now();
    let work = workload::items(SEED, 0, DELETE_PLAN.records);
    let mut rows = Vec::new();
    for engine in selected(engines::deletes(), args.only.as_deref()) {
        eprintln!("{} ...", engine.name());
        let outcome =
            deletes::run_engine(&*engine, &engine_dir(&root, &*engine), DELETE_PLAN, &work)
                .map_err(|error| error.to_string());
        if let Ok(figures) = &outcome {
            eprintln!("  {:.1} s", figures.seconds);
        }
        rows.push((engine.name().to_string(), outcome));
    }
    let _ = std::fs::remove_dir_all(&root);
    let report = deletes::DeletesReport {
        date: today(),
        machine: machine(),
        command: "cargo run --release --manifest-path benches/Cargo.toml -- --deletes".to_string(),
        plan: DELETE_PLAN,
        rows,
        seconds: started.elapsed().as_secs_f64(),
    };
    print!("{}", report.table());
    Ok(())
}

/// Runs the memory phase of an engine in a child; its peak resident memory growth in MiB.
fn memory_phase(
    engine: &dyn Engine,
    dir: &Path,
    scale: u64,
    handles: &[Handle],
) -> BenchResult<f64> {
    let list = dir.with_extension("handles");
    let text: String = handles.iter().map(|handle| format!("{handle}\n")).collect();
    std::fs::write(&list, text)?;
    let output = Command::new(std::env::current_exe()?)
        .args([
            "--child-memory",
            engine.name(),
            &dir.display().to_string(),
            &scale.to_string(),
            &list.display().to_string(),
        ])
        .output()?;
    let _ = std::fs::remove_file(&list);
    if !output.status.success() {
        return Err(format!(
            "memory phase failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        )
        .into());
    }
    let kib: f64 = String::from_utf8(output.stdout)?.trim().parse()?;
    Ok(kib / 1024.0)
}

/// Runs one engine: phase A in a child, the rest here, then the memory phase in a child.
fn run_engine(engine: &dyn Engine, root: &Path, scale: u64) -> BenchResult<Figures> {
    let dir = root.join(engine.name().replace([' ', '(', ')', ','], "_"));
    let _ = std::fs::remove_dir_all(&dir);
    let output = Command::new(std::env::current_exe()?)
        .args([
            "--child-a",
            engine.name(),
            &dir.display().to_string(),
            &scale.to_string(),
        ])
        .output()?;
    if !output.status.success() {
        return Err(format!(
            "phase A failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        )
        .into());
    }
    let text = String::from_utf8(output.stdout)?;
    let mut lines = text.lines();
    let first = lines.next().ok_or("phase A printed nothing")?;
    let numbers: Vec<f64> = first
        .split_whitespace()
        .skip(1)
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    let [a, p50, p99] = numbers[..] else {
        return Err("phase A printed a bad line".into());
    };
    let handles = lines.map(str::parse).collect::<Result<Vec<Handle>, _>>()?;
    let figures = Figures {
        a_puts_per_s: a,
        a_p50_us: p50,
        a_p99_us: p99,
        ..Figures::default()
    };
    let result = measure::after_crash(engine, &dir, plan(scale), figures, handles).and_then(
        |(mut figures, handles)| {
            figures.rss_mib = memory_phase(engine, &dir, scale, &handles)?;
            Ok(figures)
        },
    );
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|line| line.starts_with("model name"))
        .and_then(|line| line.split(':').nth(1))
        .unwrap_or("unknown CPU")
        .trim()
        .to_string();
    let cores = cpuinfo
        .lines()
        .filter(|line| line.starts_with("processor"))
        .count();
    format!("{model}, {cores} cores")
}

fn today() -> String {
    Command::new("date")
        .arg("+%Y-%m-%d")
        .output()
        .ok()
        .and_then(|output| String::from_utf8(output.stdout).ok())
        .map(|text| text.trim().to_string())
        .unwrap_or_default()
}

fn parent(args: &Args) -> BenchResult<()> {
    let plan = plan(args.scale);
    let root: PathBuf = std::env::temp_dir().join(format!("mentedb-bench-{}", std::process::id()));
    std::fs::create_dir_all(&root)?;
    let started = Instant::now();
    let mut rows: Vec<(String, Result<Figures, String>, &'static str)> = Vec::new();
    for engine in engines::all() {
        if args
            .only
            .as_deref()
            .is_some_and(|only| !engine.name().contains(only))
        {
            continue;
        }
        eprintln!("{} ...", engine.name());
        let engine_started = Instant::now();
        let outcome = run_engine(&*engine, &root, args.scale).map_err(|error| error.to_string());
        eprintln!("  {:.1} s", engine_started.elapsed().as_secs_f64());
        rows.push((engine.name().to_string(), outcome, engine.notes()));
    }
    eprintln!("baselines ...");
    let append = baseline::append_fdatasync(&root.join("baseline"), SINGLE_PUTS)?;
    let overwrite = baseline::overwrite_fdatasync(&root.join("baseline"), SINGLE_PUTS)?;
    let _ = std::fs::remove_dir_all(&root);
    let command = format!(
        "cargo run --release --manifest-path benches/Cargo.toml --{}",
        if args.scale > 0 {
            format!(" --scale {}", args.scale)
        } else {
            String::new()
        }
    );
    let report = Report {
        date: today(),
        machine: machine(),
        command,
        plan,
        rows,
        append,
        overwrite,
        seconds: started.elapsed().as_secs_f64(),
    };
    if args.json {
        println!("{}", report.json());
    } else {
        print!("{}", report.table());
    }
    Ok(())
}

struct Report {
    date: String,
    machine: String,
    command: String,
    plan: Plan,
    rows: Vec<(String, Result<Figures, String>, &'static str)>,
    append: f64,
    overwrite: f64,
    seconds: f64,
}

fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value);
    let mut out = String::new();
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

impl Report {
    fn ours(&self) -> Option<&Figures> {
        self.rows
            .first()
            .and_then(|(_, figures, _)| figures.as_ref().ok())
    }

    /// The best other engine's value of a figure (higher is better unless `lower`).
    fn best_peer(&self, figure: impl Fn(&Figures) -> f64, lower: bool) -> Option<(f64, String)> {
        // Peers only: our own variants (the sealed sync mode) are not peers.
        self.rows
            .iter()
            .skip(1)
            .filter(|(name, _, _)| !name.starts_with("mentedb-storage (this"))
            .filter_map(|(name, figures, _)| {
                figures.as_ref().ok().map(|f| (figure(f), name.clone()))
            })
            .filter(|(value, _)| value.is_finite() && *value > 0.0)
            .reduce(|best, next| {
                let better = if lower {
                    next.0 < best.0
                } else {
                    next.0 > best.0
                };
                if better { next } else { best }
            })
    }

    fn table(&self) -> String {
        let mut out = format!(
            "{} · {} · `{}` · {} records (~{} MiB), {} durable single puts, batches of {}, {:.0} s\n\n",
            self.date,
            self.machine,
            self.command,
            self.plan.records,
            self.plan.records * 2 / 1024,
            self.plan.single_puts,
            self.plan.batch,
            self.seconds
        );
        out.push_str("| engine | A puts/s (p50 / p99 µs) | A4 puts/s | B rec/s | C loads/s | C2 loads/s | DA ms | D ms | E | S rec/s | RSS MiB |\n");
        out.push_str("|---|---|---|---|---|---|---|---|---|---|---|\n");
        for (name, figures, _) in &self.rows {
            match figures {
                Ok(f) => out.push_str(&format!(
                    "| {name} | {} ({:.0} / {:.0}) | {} | {} | {} | {} | {:.2} | {:.2} | {:.3} | {} | {:.0} |\n",
                    thousands(f.a_puts_per_s),
                    f.a_p50_us,
                    f.a_p99_us,
                    thousands(f.a4_puts_per_s),
                    thousands(f.b_records_per_s),
                    thousands(f.c_loads_per_s),
                    thousands(f.c2_loads_per_s),
                    f.da_ms,
                    f.d_ms,
                    f.e_ratio,
                    thousands(f.s_records_per_s),
                    f.rss_mib
                )),
                Err(error) => out.push_str(&format!("| {name} | n/a: {error} | | | | | | | | | |\n")),
            }
        }
        out.push_str(&format!(
            "| raw 2 KiB append + fdatasync | {} | | | | | | | | | |\n",
            thousands(self.append)
        ));
        out.push_str(&format!(
            "| raw 2 KiB overwrite in place + fdatasync | {} | | | | | | | | | |\n\n",
            thousands(self.overwrite)
        ));
        for line in self.ratios() {
            out.push_str(&format!("- {line}\n"));
        }
        for (_, _, note) in &self.rows {
            if !note.is_empty() {
                out.push_str(&format!("- {note}\n"));
            }
        }
        out
    }

    fn ratios(&self) -> Vec<String> {
        let Some(ours) = self.ours() else {
            return vec!["our engine did not finish: no ratios".to_string()];
        };
        let mut lines = Vec::new();
        let mut ratio =
            |label: &str, figure: &dyn Fn(&Figures) -> f64, target: &str, lower: bool| {
                if let Some((best, name)) = self.best_peer(figure, lower) {
                    let value = if lower {
                        best / figure(ours)
                    } else {
                        figure(ours) / best
                    };
                    lines.push(format!(
                        "{label}: {value:.2}x the best peer ({name}) (target {target})"
                    ));
                }
            };
        ratio("A", &|f| f.a_puts_per_s, ">= 1.2x", false);
        ratio("B", &|f| f.b_records_per_s, ">= 1.0x", false);
        ratio("C", &|f| f.c_loads_per_s, ">= 1.3x", false);
        ratio("C2", &|f| f.c2_loads_per_s, ">= 1.0x", false);
        ratio("S", &|f| f.s_records_per_s, ">= 1.5x", false);
        lines.push(format!(
            "A: {:.2}x the raw overwrite-in-place baseline (target >= 0.9x)",
            ours.a_puts_per_s / self.overwrite
        ));
        lines.push(format!(
            "A4: {:.2}x our own A (target >= 3x)",
            ours.a4_puts_per_s / ours.a_puts_per_s
        ));
        lines.push(format!(
            "DA {:.2} ms (target <= 2 ms), D {:.2} ms (target <= 1 ms), E {:.3} (target <= 1.15)",
            ours.da_ms, ours.d_ms, ours.e_ratio
        ));
        lines
    }

    fn json(&self) -> String {
        let rows: Vec<String> = self
            .rows
            .iter()
            .map(|(name, figures, _)| match figures {
                Ok(f) => format!(
                    "{{\"engine\":\"{name}\",\"a_puts_per_s\":{:.1},\"a_p50_us\":{:.1},\"a_p99_us\":{:.1},\"a4_puts_per_s\":{:.1},\"b_records_per_s\":{:.1},\"c_loads_per_s\":{:.1},\"c2_loads_per_s\":{:.1},\"da_ms\":{:.3},\"d_ms\":{:.3},\"e_ratio\":{:.4},\"s_records_per_s\":{:.1},\"records\":{},\"rss_mib\":{:.1}}}",
                    f.a_puts_per_s, f.a_p50_us, f.a_p99_us, f.a4_puts_per_s, f.b_records_per_s,
                    f.c_loads_per_s, f.c2_loads_per_s, f.da_ms, f.d_ms, f.e_ratio,
                    f.s_records_per_s, f.records, f.rss_mib
                ),
                Err(error) => format!(
                    "{{\"engine\":\"{name}\",\"error\":\"{}\"}}",
                    error.replace('\\', "\\\\").replace('"', "\\\"")
                ),
            })
            .collect();
        format!(
            "{{\"date\":\"{}\",\"machine\":\"{}\",\"command\":\"{}\",\"records\":{},\"raw_append_fdatasync_per_s\":{:.1},\"raw_overwrite_fdatasync_per_s\":{:.1},\"engines\":[{}]}}",
            self.date,
            self.machine,
            self.command,
            self.plan.records,
            self.append,
            self.overwrite,
            rows.join(",")
        )
    }
}
