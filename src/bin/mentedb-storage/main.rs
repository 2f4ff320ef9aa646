//! `mentedb-storage`: the operator's tool for a mentedb-storage database directory.
//!
//! `verify`, `stats`, `dump`, `backup`, `restore`, `checkpoint`, `compact`, `salvage`. Every
//! command that reads a database opens it as any process would (recovery included; other
//! processes may keep using it), except `verify`, `stats`, `dump` and `salvage`, which open
//! it read-only and change nothing. Exit codes: 0 success (and a clean `verify`, a `salvage`
//! that lost nothing), 1 `verify` found problems or `salvage` could not save something,
//! 2 an error — printed as one line saying what failed, on which file, and what to do.

mod dump;
mod json;
mod progress;
mod salvage;

use clap::{Parser, Subcommand};
use json::Json;
use mentedb_storage::backup;
use mentedb_storage::engine::{IntegrityProblem, Options};
use mentedb_storage::vfs::RealFs;
use mentedb_storage::{Error, PAGE_SIZE, StorageEngine};
use progress::ProgressBar;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(
    name = "mentedb-storage",
    version,
    about = "Inspect, verify, back up and restore a mentedb-storage database"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check every page, the meta pages and the WAL of a database directory, or every
    /// chunk and page of a backup file. Exit code 0 clean, 1 problems found.
    Verify {
        /// A database directory or a backup file.
        path: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Page counts, live records, bytes, fill factor, WAL size, checkpoint LSN.
    Stats {
        /// The database directory.
        dir: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Human-readable views of the WAL, a page or a record (the meta state by default).
    Dump {
        /// The database directory.
        dir: PathBuf,
        /// Every frame in the WAL.
        #[arg(long)]
        wal: bool,
        /// One page: its header and, for a data page, its slots.
        #[arg(long, value_name = "N")]
        page: Option<u64>,
        /// One record, by its handle (`dddddddd-pppppppp-ssss-nnnnnnnnnnnn`).
        #[arg(long, value_name = "ID")]
        record: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Back up a database (online: others may keep writing) into a new file.
    Backup {
        /// The database directory.
        dir: PathBuf,
        /// The backup file to create (must not exist).
        file: PathBuf,
    },
    /// Restore a backup file into a new or empty directory.
    Restore {
        /// The backup file.
        file: PathBuf,
        /// The directory to restore into (new or empty).
        dir: PathBuf,
    },
    /// Move every change from the WAL into the page file and empty the WAL.
    Checkpoint {
        /// The database directory.
        dir: PathBuf,
    },
    /// Copy every record of a damaged database that can still be read and verified (pages
    /// of pages.db and WAL frames, also past damage) into a new database, and report what
    /// could not be saved, with file and offset. The source is only read. Handles change:
    /// <NEW_DIR>/salvage-map.txt lists each saved record's old and new handle. Exit code 0
    /// nothing lost, 1 something could not be saved.
    Salvage {
        /// The damaged database directory (only read).
        dir: PathBuf,
        /// The directory for the new database (must be new or empty).
        new_dir: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Move records from the end of the file into free room nearer its start and give the
    /// freed tail back to the file system (online: others may keep using the database;
    /// handles stay valid).
    Compact {
        /// The database directory.
        dir: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {}", explain(&error));
            ExitCode::from(2)
        }
    }
}

/// One line: what went wrong and what to do.
fn explain(error: &Error) -> String {
    let hint = match error {
        Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            " (check the path)"
        }
        Error::Io { source, .. } if source.kind() == std::io::ErrorKind::PermissionDenied => {
            " (check the file permissions)"
        }
        Error::Corruption { .. } => " (run `mentedb-storage verify` for the full picture)",
        Error::NotFound => " (the handle names no live record)",
        Error::Locked(_) => " (wait for the other process, or stop it)",
        _ => "",
    };
    format!("{error}{hint}")
}

fn open(dir: &Path) -> Result<StorageEngine, Error> {
    backup::open_existing(dir, Options::default())
}

/// Opens for the commands that only look (`stats`, `dump`): nothing on disk changes, and a
/// damaged database opens as far as it can be read; what the open went past is printed to
/// stderr.
pub(crate) fn open_to_look(dir: &Path) -> Result<StorageEngine, Error> {
    let engine = backup::open_existing(dir, Options::default().read_only())?;
    for note in engine.open_notes() {
        eprintln!(
            "warning: {} at offset {}: {}",
            note.file, note.offset, note.detail
        );
    }
    Ok(engine)
}

fn run(command: Command) -> Result<ExitCode, Error> {
    match command {
        Command::Verify { path, json } => verify(&path, json),
        Command::Stats { dir, json } => stats(&dir, json),
        Command::Dump {
            dir,
            wal,
            page,
            record,
            json,
        } => dump::dump(&dir, wal, page, record.as_deref(), json),
        Command::Backup { dir, file } => {
            let engine = open(&dir)?;
            let mut bar = ProgressBar::new("backup");
            let summary = backup::backup_with_progress(&engine, &file, &mut |done, total| {
                bar.update(done, total)
            })?;
            bar.finish();
            println!(
                "backed up {} pages at LSN {} into {} ({} bytes)",
                summary.pages,
                summary.source_lsn.0,
                file.display(),
                summary.backup_bytes
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Restore { file, dir } => {
            let mut bar = ProgressBar::new("restore");
            let summary =
                backup::restore_with_progress(&RealFs::new(), &file, &dir, &mut |done, total| {
                    bar.update(done, total)
                })?;
            bar.finish();
            println!(
                "restored {} pages at LSN {} into {}",
                summary.pages,
                summary.source_lsn.0,
                dir.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Compact { dir } => {
            let engine = open(&dir)?;
            let mut bar = ProgressBar::new("compact");
            let report = engine
                .compact_with_progress(&mut |progress| bar.update(progress.done, progress.total))?;
            bar.finish();
            println!(
                "compacted {}: {} records and {} overflow chains moved; {} pages -> {} pages \
                 ({} bytes given back)",
                dir.display(),
                report.records_moved,
                report.chains_moved,
                report.pages_before,
                report.pages_after,
                report.bytes_returned()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Salvage { dir, new_dir, json } => salvage::run(&dir, &new_dir, json),
        Command::Checkpoint { dir } => {
            let engine = open(&dir)?;
            engine.checkpoint()?;
            println!(
                "checkpointed {} at LSN {}; WAL now {} bytes",
                dir.display(),
                engine.checkpoint_lsn().0,
                engine.wal_bytes()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn problems_json(problems: &[IntegrityProblem]) -> Json {
    Json::Array(
        problems
            .iter()
            .map(|problem| {
                Json::object([
                    ("file", problem.file.clone().into()),
                    ("offset", problem.offset.into()),
                    ("detail", problem.detail.clone().into()),
                ])
            })
            .collect(),
    )
}

fn verify(path: &Path, json: bool) -> Result<ExitCode, Error> {
    let mut space = None;
    let (what, pages, problems) = if path.is_file() {
        let mut bar = ProgressBar::new("verify");
        let check = backup::verify_with_progress(&RealFs::new(), path, &mut |done, total| {
            bar.update(done, total)
        })?;
        bar.finish();
        ("backup", check.pages, check.problems)
    } else {
        let report = backup::verify_database(path, Options::default().read_only())?;
        space = Some((
            report.free_pages,
            report.free_page_bytes(),
            report.free_record_bytes,
            report.compact_would_return_bytes(),
        ));
        ("database", report.pages, report.problems)
    };
    let space_json = match space {
        Some((free_pages, free_page_bytes, free_record_bytes, compact)) => Json::object([
            ("free_pages", free_pages.into()),
            ("free_page_bytes", free_page_bytes.into()),
            ("free_record_bytes", free_record_bytes.into()),
            ("compact_would_return_bytes", compact.into()),
        ]),
        None => Json::Null,
    };
    if json {
        println!(
            "{}",
            Json::object([
                ("path", path.display().to_string().into()),
                ("kind", what.into()),
                ("pages", pages.into()),
                ("clean", problems.is_empty().into()),
                ("space", space_json),
                ("problems", problems_json(&problems)),
            ])
        );
    } else if problems.is_empty() {
        println!("{what} {}: clean ({pages} pages checked)", path.display());
        if let Some((free_pages, free_page_bytes, free_record_bytes, compact)) = space {
            println!(
                "space: {free_pages} free pages ({free_page_bytes} bytes), {free_record_bytes} \
                 bytes free inside record pages; compact would give back about {compact} bytes"
            );
        }
    } else {
        println!(
            "{what} {}: {} problem(s) in {pages} pages",
            path.display(),
            problems.len()
        );
        for problem in &problems {
            println!(
                "  {} at offset {}: {}",
                problem.file, problem.offset, problem.detail
            );
        }
    }
    Ok(if problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn stats(dir: &Path, json: bool) -> Result<ExitCode, Error> {
    let engine = open_to_look(dir)?;
    let stats = engine.stats()?;
    let report = &stats.report;
    if json {
        println!(
            "{}",
            Json::object([
                ("pages", report.pages.into()),
                ("data_pages", report.data_pages.into()),
                ("handle_pages", report.handle_pages.into()),
                ("map_pages", report.map_pages.into()),
                ("overflow_pages", report.overflow_pages.into()),
                ("free_pages", report.free_pages.into()),
                ("free_page_bytes", report.free_page_bytes().into()),
                ("free_record_bytes", report.free_record_bytes.into()),
                (
                    "compact_would_return_bytes",
                    report.compact_would_return_bytes().into()
                ),
                ("live_records", report.live_records.into()),
                ("record_bytes", report.record_bytes.into()),
                ("fill_factor", stats.fill_factor().into()),
                ("page_file_bytes", stats.page_file_bytes.into()),
                ("wal_bytes", stats.wal_bytes.into()),
                ("checkpoint_lsn", stats.checkpoint_lsn.0.into()),
                ("last_lsn", stats.last_lsn.0.into()),
                ("buffer_pool_pages", stats.buffer_pool_pages.into()),
                (
                    "buffer_pool_bytes",
                    (stats.buffer_pool_pages * PAGE_SIZE).into()
                ),
                ("problems", problems_json(&report.problems)),
            ])
        );
    } else {
        println!("database        {}", dir.display());
        println!(
            "pages           {} ({} record, {} handle, {} overflow, {} free, {} space map, 2 meta)",
            report.pages,
            report.data_pages,
            report.handle_pages,
            report.overflow_pages,
            report.free_pages,
            report.map_pages
        );
        println!("live records    {}", report.live_records);
        println!("record bytes    {}", report.record_bytes);
        println!(
            "free space      {} free pages ({} bytes), {} bytes free inside record pages",
            report.free_pages,
            report.free_page_bytes(),
            report.free_record_bytes
        );
        println!(
            "compact         would give back about {} bytes",
            report.compact_would_return_bytes()
        );
        println!(
            "fill factor     {:.1}% of data and overflow page space",
            stats.fill_factor() * 100.0
        );
        println!("pages.db        {} bytes", stats.page_file_bytes);
        println!("wal.log         {} bytes in use", stats.wal_bytes);
        println!("checkpoint LSN  {}", stats.checkpoint_lsn.0);
        println!("last LSN        {}", stats.last_lsn.0);
        println!(
            "buffer pool     {} pages ({} MiB) per process (default setting)",
            stats.buffer_pool_pages,
            stats.buffer_pool_pages * PAGE_SIZE / (1024 * 1024)
        );
        if !report.problems.is_empty() {
            println!(
                "problems        {} (run `mentedb-storage verify`)",
                report.problems.len()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
