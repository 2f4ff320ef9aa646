//! Power-loss driver for a real filesystem that drops what was not synced (LazyFS), run by
//! `tests/lazyfs/powerloss.sh` (see `tests/lazyfs/README.md`). It uses only the public API.
//!
//! ```text
//! powerloss writer <db-dir> <ack-log-dir> <writer-id 0..3> <threads 1..=2> <seed>
//! powerloss check  <db-dir> <ack-log-dir> [--filesystem-died]
//! ```
//!
//! `writer` opens the database and runs its threads until it is killed; each thread logs
//! every write before it starts and after it is acknowledged (module `log`). `check`, run
//! after the kill and the power cut, reopens the database and holds it against the logs
//! (module `check`); it prints one summary line and exits 0, or prints the violations and
//! exits 1 (2: the check itself could not run). `--filesystem-died`: the cut killed the
//! filesystem under the writers, so writes that failed with I/O errors are expected; they
//! count as in flight.

mod check;
mod content;
mod log;
mod writer;

use std::path::PathBuf;

const USAGE: &str = "usage: powerloss writer <db-dir> <ack-log-dir> <writer-id> <threads> <seed>\n       powerloss check <db-dir> <ack-log-dir> [--filesystem-died]";

fn main() {
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    let code = match arguments
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["writer", db, logs, writer, threads, seed] => {
            let parsed = (writer.parse(), threads.parse(), seed.parse());
            let (Ok(writer), Ok(threads), Ok(seed)) = parsed else {
                eprintln!("{USAGE}");
                std::process::exit(2);
            };
            match writer::run(
                &PathBuf::from(db),
                &PathBuf::from(logs),
                writer,
                threads,
                seed,
            ) {
                Ok(()) => 0,
                Err(error) => {
                    eprintln!("powerloss writer {writer}: {error}");
                    3
                }
            }
        }
        ["check", db, logs] => check::run(&PathBuf::from(db), &PathBuf::from(logs), false),
        ["check", db, logs, "--filesystem-died"] => {
            check::run(&PathBuf::from(db), &PathBuf::from(logs), true)
        }
        _ => {
            eprintln!("{USAGE}");
            2
        }
    };
    std::process::exit(code);
}
