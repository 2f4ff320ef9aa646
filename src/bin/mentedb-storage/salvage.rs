//! `mentedb-storage salvage <dir> <new-dir>`: copy every record that can still be read into
//! a new database and say what could not be saved. Exit code 0 if nothing was lost, 1 if
//! something could not be saved, 2 on an error (then nothing useful was written).

use crate::json::Json;
use crate::progress::ProgressBar;
use mentedb_storage::Error;
use mentedb_storage::engine::Options;
use mentedb_storage::salvage::{self, Phase, SalvageProblem, SalvageReport};
use std::path::Path;
use std::process::ExitCode;

/// Runs the command.
pub fn run(dir: &Path, new_dir: &Path, json: bool) -> Result<ExitCode, Error> {
    let mut bars = Bars::default();
    let report = salvage::salvage_with_progress(dir, new_dir, Options::default(), &mut |at| {
        bars.update(at.phase, at.done, at.total)
    })?;
    bars.finish();
    if json {
        println!("{}", report_json(dir, new_dir, &report));
    } else {
        print_summary(dir, new_dir, &report);
    }
    Ok(if report.is_complete() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// One progress bar per phase.
#[derive(Default)]
struct Bars {
    current: Option<(Phase, ProgressBar)>,
}

impl Bars {
    fn update(&mut self, phase: Phase, done: u64, total: u64) {
        if total == 0 {
            return;
        }
        if self
            .current
            .as_ref()
            .is_none_or(|(shown, _)| *shown != phase)
        {
            self.finish();
            let (label, unit) = match phase {
                Phase::Wal => ("salvage: WAL", "pages"),
                Phase::PageFile => ("salvage: pages.db", "pages"),
                Phase::Write => ("salvage: writing", "records"),
                _ => ("salvage", "records"),
            };
            self.current = Some((phase, ProgressBar::counting(label, unit)));
        }
        if let Some((_, bar)) = &mut self.current {
            bar.update(done, total);
        }
    }

    fn finish(&mut self) {
        if let Some((_, mut bar)) = self.current.take() {
            bar.finish();
        }
    }
}

fn print_summary(dir: &Path, new_dir: &Path, report: &SalvageReport) {
    println!(
        "salvaged {} records from {} into {} ({} through the read-only open)",
        report.records_saved,
        dir.display(),
        new_dir.display(),
        report.records_from_open
    );
    println!(
        "examined {} pages of pages.db ({} damaged) and {} WAL frames ({} bytes); {} versions \
         of deleted records skipped",
        report.page_file_pages,
        report.page_file_pages_damaged,
        report.wal_frames,
        report.wal_bytes,
        report.deleted_versions_skipped
    );
    println!("old handle -> new handle: {}", report.map_file.display());
    if report.is_complete() {
        println!("nothing was lost");
    } else {
        println!("could not be saved ({}):", report.lost.len());
        for lost in &report.lost {
            println!("  {}: {lost}", lost.kind.name());
        }
    }
    if !report.notes.is_empty() {
        println!("notes (nothing lost by these):");
        for note in &report.notes {
            println!("  {note}");
        }
    }
}

fn problems_json(problems: &[SalvageProblem]) -> Json {
    Json::Array(
        problems
            .iter()
            .map(|problem| {
                Json::object([
                    ("kind", problem.kind.name().into()),
                    ("file", problem.file.clone().into()),
                    ("offset", problem.offset.into()),
                    (
                        "record",
                        problem
                            .record
                            .map_or(Json::Null, |record| record.to_string().into()),
                    ),
                    ("detail", problem.detail.clone().into()),
                ])
            })
            .collect(),
    )
}

fn report_json(dir: &Path, new_dir: &Path, report: &SalvageReport) -> Json {
    Json::object([
        ("source", dir.display().to_string().into()),
        ("dest", new_dir.display().to_string().into()),
        ("complete", report.is_complete().into()),
        ("records_saved", report.records_saved.into()),
        ("records_from_open", report.records_from_open.into()),
        (
            "deleted_versions_skipped",
            report.deleted_versions_skipped.into(),
        ),
        ("page_file_pages", report.page_file_pages.into()),
        (
            "page_file_pages_damaged",
            report.page_file_pages_damaged.into(),
        ),
        ("wal_frames", report.wal_frames.into()),
        ("wal_bytes", report.wal_bytes.into()),
        (
            "database_id",
            report
                .database_id
                .map_or(Json::Null, |id| format!("{:08x}", id.0).into()),
        ),
        ("newest_lsn", report.newest_lsn.0.into()),
        ("map_file", report.map_file.display().to_string().into()),
        ("lost", problems_json(&report.lost)),
        ("notes", problems_json(&report.notes)),
    ])
}
