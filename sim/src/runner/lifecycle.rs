//! A database's life beyond one directory: backups restored over it in the middle of a
//! run, and handles carried between two databases.
//!
//! The rule checked ([`Rule::Identity`]): a handle names one record of one database for
//! the database's whole life. Found from outside: after a restore, a record stored after the
//! backup gave `NotFound`, the next store got its handle, and the old handle then returned
//! the new record; a handle of database A loaded in database B returned B's record. The
//! simulator never restored a backup or opened a second database, so neither could show.
//! - **Restore**: the model at the last backup is kept; a restore closes every process,
//!   removes the database's files, restores the backup into the directory and reopens
//!   everything. The model becomes the backup's, and every handle known before that the
//!   backup did not hold live joins the deleted handles: stale loads must give `NotFound`,
//!   and a store handing one out again breaks the rule at once ([`Model::stored`]).
//! - **Another database** (`/other`, opened by a process of its own for each check): its
//!   handles loaded here, and ours loaded there, must give `NotFound`.
//!
//! - **A lost log tail** (in seeds that damage stored bytes): every process is killed and
//!   `wal.log` loses synced bytes at its end while `wal.shm` keeps the evidence (the
//!   highest LSN made durable). `verify` (read-only) must change no byte and report a lost
//!   tail exactly when the read-write open refuses the log; if the open accepts it, the
//!   oracle demands every acknowledged write (found from outside: `verify` said clean over
//!   1,040 lost acknowledged stores, and open overwrote the evidence).
//!
//! Both run with faults paused and no crash armed (backups under faults are the
//! `backup_restore` fuzz target's; a crash inside a restore is not simulated yet). The
//! other database is never damaged at rest: the oracle judges only `/db`.

use super::*;
use mentedb_storage::backup;

/// Where the run keeps its backup (outside the database directory).
const BACKUP_FILE: &str = "/backup.mbak";
/// The second database.
const OTHER_DIR: &str = "/other";
/// Records stored in the second database.
const OTHER_RECORDS: usize = 3;

impl Sim {
    /// A simulated process no engine of the run uses (restores, the other database).
    fn admin_pid(&self) -> Pid {
        self.engines.len()
    }

    /// Runs `body` with faults and crash capture paused.
    fn quietly<T>(&mut self, body: impl FnOnce(&mut Sim) -> T) -> T {
        self.fs.disarm();
        self.fs.pause_faults(true);
        self.fs.set_capture_paused(true);
        let result = body(self);
        self.fs.set_capture_paused(false);
        self.fs.pause_faults(self.faults_stopped);
        result
    }

    /// Takes a backup through `process` and keeps the model it holds.
    pub(super) fn backup(&mut self, process: Pid) -> Step {
        if !self.model.pending().is_empty() {
            // Writes whose outcome is unknown: the backup may or may not hold them.
            self.trace
                .push("  skipped: writes of unknown outcome in flight".to_string());
            return Ok(());
        }
        self.quietly(|sim| {
            let result = backup::backup(sim.engine(process)?, Path::new(BACKUP_FILE));
            match result {
                Ok(summary) => {
                    sim.trace.push(format!(
                        "  backed up {} pages at LSN {} ({} live)",
                        summary.pages,
                        summary.source_lsn.0,
                        sim.model.live().len()
                    ));
                    sim.backup = Some(sim.model.clone());
                    Ok(())
                }
                Err(error) => {
                    sim.trace.push(format!("  backup failed: {error}"));
                    sim.classify_error(&error)
                }
            }
        })
    }

    /// Restores the last backup over the database (see the module docs).
    pub(super) fn restore(&mut self) -> Step {
        let Some(backup) = self.backup.clone() else {
            return Ok(());
        };
        if self.fs.corruption_injected() {
            // The damage must stay on disk for the final check to demand it is reported.
            self.trace
                .push("  skipped: injected damage must stay on disk".to_string());
            return Ok(());
        }
        self.quietly(|sim| {
            for pid in 0..sim.engines.len() {
                if let Some(engine) = sim.engines[pid].take()
                    && let Err(error) = engine.close()
                {
                    sim.trace.push(format!("  p{pid} close failed: {error}"));
                    sim.classify_error(&error)?;
                }
            }
            let admin = sim.admin_pid();
            sim.fs.restart_process(admin);
            let vfs = sim.fs.process(admin);
            let dir = Path::new(DIR);
            let listed = vfs
                .list_dir(dir)
                .map_err(|error| broken(Rule::Liveness, format!("list {DIR}: {error}")))?;
            for path in listed {
                vfs.remove_file(&path).map_err(|error| {
                    broken(
                        Rule::Liveness,
                        format!("remove {}: {error}", path.display()),
                    )
                })?;
            }
            vfs.sync_dir(dir)
                .map_err(|error| broken(Rule::Liveness, format!("sync {DIR}: {error}")))?;
            let summary = backup::restore(&*vfs, Path::new(BACKUP_FILE), dir).map_err(|error| {
                broken(
                    Rule::Liveness,
                    format!("restore of a clean backup failed: {error}"),
                )
            })?;
            sim.trace.push(format!(
                "  restored {} pages at LSN {}: {} live, {} handles dead for ever",
                summary.pages,
                summary.source_lsn.0,
                backup.live().len(),
                sim.model
                    .live()
                    .keys()
                    .chain(sim.model.deleted())
                    .filter(|id| !backup.live().contains_key(id))
                    .count()
            ));
            sim.model.restored(&backup);
            sim.restores += 1;
            for pid in 0..sim.engines.len() {
                sim.open(pid)?;
                sim.check(pid, Depth::Contents)?;
            }
            Ok(())
        })
    }

    /// Loads a handle of another database here and one of ours there (see the module
    /// docs).
    pub(super) fn foreign_load(&mut self, process: Pid, pick: u64) -> Step {
        self.quietly(|sim| {
            let admin = sim.admin_pid();
            sim.fs.restart_process(admin);
            sim.fs.spare_from_damage(Path::new(OTHER_DIR));
            let options = Options::default()
                .vfs(sim.fs.process(admin))
                .lock_timeout(SIM_LOCK_TIMEOUT);
            let other =
                StorageEngine::open_with(Path::new(OTHER_DIR), options).map_err(|error| {
                    broken(
                        Rule::Liveness,
                        format!("open of the other database: {error}"),
                    )
                })?;
            if sim.foreign.is_empty() {
                for index in 0..OTHER_RECORDS {
                    let node = MemoryNode::new(
                        mentedb_storage::AgentId::new(),
                        mentedb_storage::MemoryType::Semantic,
                        format!("a memory of the other database, {index}"),
                        vec![index as f32; 4],
                    );
                    let id = other.store_memory(&node).map_err(|error| {
                        broken(
                            Rule::Liveness,
                            format!("store in the other database: {error}"),
                        )
                    })?;
                    sim.foreign.push((id, node));
                }
            }
            let (theirs, their_node) =
                sim.foreign[(pick % sim.foreign.len() as u64) as usize].clone();
            match other.load_memory(theirs) {
                Ok(node) if node == their_node => {}
                other_result => {
                    return Err(broken(
                        Rule::Durability,
                        format!("the other database lost {theirs:?}: {other_result:?}"),
                    ));
                }
            }
            let ours = sim.pick_live(pick);
            if let Some((ours, _)) = &ours {
                match other.load_memory(*ours) {
                    Err(Error::NotFound) => {}
                    Ok(node) => {
                        return Err(broken(
                            Rule::Identity,
                            format!(
                                "our {ours:?} loads in another database as {}",
                                oracle::short(&node)
                            ),
                        ));
                    }
                    Err(error) => sim.classify_error(&error)?,
                }
            }
            drop(other);
            sim.foreign_loads += 1;
            match sim.engine(process)?.load_memory(theirs) {
                Err(Error::NotFound) => Ok(()),
                Ok(node) => Err(broken(
                    Rule::Identity,
                    format!(
                        "p{process}: {theirs:?} of another database loads here as {}",
                        oracle::short(&node)
                    ),
                )),
                Err(error) => sim.classify_error(&error),
            }
        })
    }

    /// Kills every process and cuts `wal.log`'s synced tail (see the module docs).
    pub(super) fn cut_log(&mut self) -> Step {
        for pid in 0..self.engines.len() {
            self.engines[pid] = None;
            self.fs.kill_process(pid);
        }
        let wal = Path::new(DIR).join("wal.log");
        let header = mentedb_storage::wal::format::WAL_HEADER_SIZE as u64;
        match self.fs.cut_synced_tail(&wal, header) {
            Some(cut) => self
                .trace
                .push(format!("  wal.log cut at {cut}: synced bytes lost")),
            None => self.trace.push("  nothing synced to cut".to_string()),
        }
        let flagged = self.quietly(|sim| {
            let files = ["pages.db", "wal.log", "wal.shm"];
            let bytes = |sim: &Sim| -> Vec<Option<Vec<u8>>> {
                files
                    .iter()
                    .map(|name| sim.fs.file_bytes(&Path::new(DIR).join(name)))
                    .collect()
            };
            let before = bytes(sim);
            let admin = sim.admin_pid();
            sim.fs.restart_process(admin);
            let options = Options::default()
                .vfs(sim.fs.process(admin))
                .lock_timeout(SIM_LOCK_TIMEOUT);
            let report = backup::verify_database(Path::new(DIR), options);
            if bytes(sim) != before {
                return Err(broken(
                    Rule::Detection,
                    "verify changed the database's files",
                ));
            }
            let report = report
                .map_err(|error| broken(Rule::Detection, format!("verify failed: {error}")))?;
            let flagged = report
                .problems
                .iter()
                .any(|problem| problem.file == "wal.log" && problem.detail.contains("lost"));
            sim.trace.push(format!(
                "  verify: {} problems{}",
                report.problems.len(),
                if flagged {
                    ", a lost tail among them"
                } else {
                    ""
                }
            ));
            Ok(flagged)
        })?;
        self.fs.restart_process(0);
        self.fs.pause_faults(true);
        let opened = StorageEngine::open_with(Path::new(DIR), self.options(&self.fs, 0));
        self.fs.pause_faults(self.faults_stopped);
        match opened {
            Err(error) if error.is_corruption() => {
                if !flagged {
                    return Err(broken(
                        Rule::Detection,
                        format!("open refused the log but verify reported no lost tail: {error}"),
                    ));
                }
                Err(Stop::Detected(error.to_string()))
            }
            Err(error) => Err(broken(
                Rule::Liveness,
                format!("open after the cut failed: {error}"),
            )),
            Ok(engine) => {
                if flagged {
                    return Err(broken(
                        Rule::Detection,
                        "verify reported a lost tail but open accepted the log",
                    ));
                }
                self.engines[0] = Some(engine);
                for pid in 0..self.engines.len() {
                    if self.engines[pid].is_none() {
                        self.open(pid)?;
                    }
                    self.check(pid, Depth::Contents)?;
                }
                Ok(())
            }
        }
    }
}
