//! The ack logs (one per writer thread) and the state file, both plain text, both kept
//! outside the filesystem whose power is cut.
//!
//! # Ack log `w<writer>-t<thread>.log`
//! ```text
//! start w1 t0 seed=<hex> checkpoint_wal_bytes=<n> owned=<records owned at start>
//! begin w1 t0 <seq> store <content>
//! ok w1 t0 <seq> <handle>
//! begin w1 t0 <seq> batch <content>,<content>,...
//! ok w1 t0 <seq> <handle>,<handle>,...
//! begin w1 t0 <seq> update <handle> <content>
//! begin w1 t0 <seq> delete <handle>
//! begin w1 t0 <seq> checkpoint
//! ok w1 t0 <seq>
//! fail w1 t0 <seq> io:|engine:|mismatch: <what went wrong>
//! ```
//! A `fail` line starts with its kind: `io:` an I/O error or a poisoned engine (expected
//! only when the filesystem died under the writer), `engine:` any other error, `mismatch:`
//! a load or a result that disagrees with the log. The writer exits after it.
//! `<content>` is `seed:size` ([`Content`]), `<handle>` a `RecordId::to_u128` in decimal.
//! Each line is one `write` to a file opened for appending: a killed process leaves whole
//! lines (a last line without its newline is ignored: its operation had not started).
//! `begin` is written before the call, `ok` after it returned `Ok`; a thread runs one
//! operation at a time, so only its last `begin` can lack its `ok`.
//!
//! # State file `state`
//! ```text
//! powerloss-state 1
//! iteration <checks passed on this database>
//! live <handle> <content>
//! deleted <handle>
//! ```
//! Written by a passed check (to a temporary name, then renamed): the records the database
//! holds, each in-flight operation resolved the way recovery showed.

use crate::content::Content;
use std::collections::{BTreeMap, BTreeSet};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

/// A record handle as logged (`RecordId::to_u128`).
pub type Handle = u128;

pub const STATE_FILE_NAME: &str = "state";
const STATE_HEADER: &str = "powerloss-state 1";

/// A write operation as logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Store(Content),
    Batch(Vec<Content>),
    Update(Handle, Content),
    Delete(Handle),
    Checkpoint,
}

impl Op {
    fn render(&self) -> String {
        match self {
            Op::Store(content) => format!("store {content}"),
            Op::Batch(contents) => format!("batch {}", join(contents)),
            Op::Update(handle, content) => format!("update {handle} {content}"),
            Op::Delete(handle) => format!("delete {handle}"),
            Op::Checkpoint => "checkpoint".to_string(),
        }
    }

    fn parse(words: &[&str]) -> Option<Op> {
        match words {
            ["store", content] => Some(Op::Store(Content::parse(content)?)),
            ["batch", contents] => contents
                .split(',')
                .map(Content::parse)
                .collect::<Option<Vec<_>>>()
                .map(Op::Batch),
            ["update", handle, content] => {
                Some(Op::Update(handle.parse().ok()?, Content::parse(content)?))
            }
            ["delete", handle] => Some(Op::Delete(handle.parse().ok()?)),
            ["checkpoint"] => Some(Op::Checkpoint),
            _ => None,
        }
    }
}

fn join<T: std::fmt::Display>(items: &[T]) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// One thread's ack log, open for appending.
pub struct AckLog {
    file: File,
    prefix: String,
}

impl AckLog {
    pub fn create(dir: &Path, writer: u32, thread: u32) -> io::Result<AckLog> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(format!("w{writer}-t{thread}.log")))?;
        Ok(AckLog {
            file,
            prefix: format!("w{writer} t{thread}"),
        })
    }

    fn line(&mut self, kind: &str, rest: &str) -> io::Result<()> {
        // One `write` per line (the file is unbuffered): a kill leaves whole lines.
        self.file
            .write_all(format!("{kind} {} {rest}\n", self.prefix).as_bytes())
    }

    pub fn start(&mut self, details: &str) -> io::Result<()> {
        self.line("start", details)
    }

    pub fn begin(&mut self, seq: u64, op: &Op) -> io::Result<()> {
        self.line("begin", &format!("{seq} {}", op.render()))
    }

    pub fn ok(&mut self, seq: u64, handles: &[Handle]) -> io::Result<()> {
        if handles.is_empty() {
            self.line("ok", &seq.to_string())
        } else {
            self.line("ok", &format!("{seq} {}", join(handles)))
        }
    }

    pub fn fail(&mut self, seq: u64, detail: &str) -> io::Result<()> {
        self.line("fail", &format!("{seq} {}", detail.replace('\n', " ")))
    }
}

/// One logged operation and, if it was acknowledged, the handles its `ok` line gave.
#[derive(Debug, Clone)]
pub struct Logged {
    pub seq: u64,
    pub op: Op,
    pub acked: Option<Vec<Handle>>,
}

/// A thread's log, parsed: its operations in order (only the last may be unacknowledged)
/// and any `fail` lines.
#[derive(Debug, Default)]
pub struct ThreadLog {
    pub name: String,
    pub ops: Vec<Logged>,
    pub failures: Vec<String>,
}

/// Parses one ack log; `Err` says which line breaks the format or the begin/ok protocol.
pub fn parse_thread_log(name: &str, text: &str) -> Result<ThreadLog, String> {
    let mut log = ThreadLog {
        name: name.to_string(),
        ..ThreadLog::default()
    };
    let complete = match text.rfind('\n') {
        Some(end) => &text[..=end],
        None => "",
    };
    for (index, line) in complete.lines().enumerate() {
        let bad = |why: &str| format!("{name} line {}: {why}: {line:?}", index + 1);
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["start", ..] => {}
            ["fail", ..] => log.failures.push(line.to_string()),
            ["begin", _, _, seq, op @ ..] => {
                let seq: u64 = seq.parse().map_err(|_| bad("bad sequence number"))?;
                let op = Op::parse(op).ok_or_else(|| bad("bad operation"))?;
                if let Some(last) = log.ops.last() {
                    if last.acked.is_none() {
                        return Err(bad(
                            "a begin while the previous operation is unacknowledged",
                        ));
                    }
                    if last.seq >= seq {
                        return Err(bad("sequence numbers do not increase"));
                    }
                }
                log.ops.push(Logged {
                    seq,
                    op,
                    acked: None,
                });
            }
            ["ok", _, _, seq, handles @ ..] => {
                let seq: u64 = seq.parse().map_err(|_| bad("bad sequence number"))?;
                let last = log.ops.last_mut().ok_or_else(|| bad("ok without begin"))?;
                if last.seq != seq || last.acked.is_some() {
                    return Err(bad("ok does not match the last begin"));
                }
                let handles = match handles {
                    [] => Vec::new(),
                    [list] => list
                        .split(',')
                        .map(str::parse)
                        .collect::<Result<Vec<Handle>, _>>()
                        .map_err(|_| bad("bad handle"))?,
                    _ => return Err(bad("bad handle list")),
                };
                last.acked = Some(handles);
            }
            _ => return Err(bad("unknown line")),
        }
    }
    Ok(log)
}

/// What the database holds after the last passed check.
#[derive(Debug, Default, Clone)]
pub struct State {
    pub iteration: u64,
    pub live: BTreeMap<Handle, Content>,
    pub deleted: BTreeSet<Handle>,
}

impl State {
    /// Reads the state file; an absent file is a fresh database's empty state.
    pub fn load(dir: &Path) -> Result<State, String> {
        let path = dir.join(STATE_FILE_NAME);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(State::default()),
            Err(error) => return Err(format!("read {}: {error}", path.display())),
        };
        let mut lines = text.lines();
        if lines.next() != Some(STATE_HEADER) {
            return Err(format!(
                "{} does not start with {STATE_HEADER:?}",
                path.display()
            ));
        }
        let mut state = State::default();
        for line in lines {
            let bad = || format!("{}: bad line {line:?}", path.display());
            match line.split_whitespace().collect::<Vec<_>>().as_slice() {
                ["iteration", count] => state.iteration = count.parse().map_err(|_| bad())?,
                ["live", handle, content] => {
                    let handle = handle.parse().map_err(|_| bad())?;
                    let content = Content::parse(content).ok_or_else(bad)?;
                    state.live.insert(handle, content);
                }
                ["deleted", handle] => {
                    state.deleted.insert(handle.parse().map_err(|_| bad())?);
                }
                _ => return Err(bad()),
            }
        }
        Ok(state)
    }

    /// Replaces the state file (written aside, synced, then renamed over it).
    pub fn save(&self, dir: &Path) -> io::Result<()> {
        let mut text = format!("{STATE_HEADER}\niteration {}\n", self.iteration);
        for (handle, content) in &self.live {
            text.push_str(&format!("live {handle} {content}\n"));
        }
        for handle in &self.deleted {
            text.push_str(&format!("deleted {handle}\n"));
        }
        let temporary = dir.join(format!("{STATE_FILE_NAME}.tmp"));
        let mut file = File::create(&temporary)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&temporary, dir.join(STATE_FILE_NAME))
    }
}

/// The ack logs in `dir` (`*.log`), sorted by name.
pub fn ack_log_paths(dir: &Path) -> io::Result<Vec<std::path::PathBuf>> {
    let mut paths = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|extension| extension == "log") {
            paths.push(path);
        }
    }
    paths.sort();
    Ok(paths)
}
