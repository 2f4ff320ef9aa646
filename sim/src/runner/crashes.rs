//! Crashes and the checks after them: kills and power cuts armed inside operations,
//! recovery in every process, crash images of captured points, and the final phase
//! (liveness after faults stop, detection of every injected damage), and recovery by every
//! process at once after a power loss.

use super::*;
use crate::sched::ActorBody;

impl Sim {
    /// Sometimes arms a process kill or a power cut in the middle of the next operation.
    pub(super) fn arm_crash(&mut self, op: &Op) {
        let process = match op {
            Op::Store { process, .. }
            | Op::Batch { process, .. }
            | Op::Update { process, .. }
            | Op::Delete { process, .. }
            | Op::DeleteMany { process, .. }
            | Op::Apply { process, .. }
            | Op::Compact { process }
            | Op::Checkpoint { process } => *process,
            _ => return,
        };
        // A compaction makes hundreds of calls (moves in batches, then a checkpoint that
        // shrinks the file): crashes land anywhere in it, and more often.
        let (calls_max, rate) = match op {
            Op::Compact { .. } => (600, 8),
            _ => (24, 1),
        };
        match below(&mut *self.rng, 1000) {
            roll if roll < 10 * rate => {
                let calls = 1 + below(&mut *self.rng, calls_max);
                self.fs.kill_process_after(process, calls);
            }
            roll if roll < 18 * rate => {
                let calls = 1 + below(&mut *self.rng, calls_max);
                self.fs.cut_power_after(calls);
            }
            _ => {}
        }
    }

    /// After an operation: settles a power cut and recovers every dead process.
    pub(super) fn recover_from_crashes(&mut self) -> Step {
        if self.fs.power_cut_fired() {
            self.trace.push("power cut fired".to_string());
            return self.power_loss();
        }
        for pid in 0..self.engines.len() {
            if self.fs.is_killed(pid) {
                self.trace.push(format!("p{pid} was killed"));
                // Killed in the middle of an operation: the disk may hold a half-done
                // change, so the structure is checked too.
                self.restart(pid, Depth::Full)?;
            }
        }
        Ok(())
    }

    pub(super) fn power_loss(&mut self) -> Step {
        for engine in &mut self.engines {
            *engine = None;
        }
        self.fs.power_loss();
        if self.engines.len() > 1 && chance(&mut *self.rng, 500_000) {
            self.recover_together()?;
        } else {
            for pid in 0..self.engines.len() {
                self.open(pid)?;
            }
        }
        self.check(0, Depth::Full)?;
        if chance(&mut *self.rng, 250_000) {
            self.recover_again()?;
        }
        Ok(())
    }

    /// Recovery is idempotent: killing a process right after its recovery and recovering
    /// again must give exactly the state the first recovery gave (the model adopted it, so
    /// nothing may differ now).
    pub(super) fn recover_again(&mut self) -> Step {
        self.trace
            .push("p0 killed after recovery; recovering again".to_string());
        self.engines[0] = None;
        self.fs.kill_process(0);
        self.open(0)?;
        match self.check(0, Depth::Full) {
            Err(Stop::Broken(violation)) => Err(broken(
                Rule::Recovery,
                format!("a second recovery differs from the first: {violation}"),
            )),
            other => other,
        }
    }

    /// Checks every crash image of the captured points against the model as it was during
    /// the operation (the operation in flight).
    pub(super) fn explore(&mut self, points: Vec<CrashPoint>, undo: Undo) -> Step {
        let mut model = self.model.clone();
        for (change, before) in undo.into_iter().rev() {
            model.reopen_change(change, &before);
        }
        let corruption_injected = self.fs.corruption_injected();
        for point in points {
            let images = point.images(
                EXPLORE_SUBSET_WRITES_MAX,
                512,
                EXPLORE_IMAGES_MAX,
                self.seed ^ self.images,
            );
            self.trace.push(format!(
                "  exploring {} crash images of {} unsynced writes",
                images.len(),
                point.pending_writes()
            ));
            for (index, image) in images.iter().enumerate() {
                let fs = SimFs::from_image(image, self.seed, FaultConfig::none());
                let engine = match StorageEngine::open_with(Path::new(DIR), self.options(&fs, 0)) {
                    Ok(engine) => engine,
                    Err(error) if error.is_corruption() && corruption_injected => continue,
                    Err(error) => {
                        return Err(broken(
                            Rule::Liveness,
                            format!("crash image {index}: open failed: {error}"),
                        ));
                    }
                };
                let mut candidate = model.clone();
                match oracle::check_recovered(
                    &engine,
                    &mut candidate,
                    corruption_injected,
                    Depth::Full,
                ) {
                    Ok(_) => self.images += 1,
                    Err(violation) => {
                        return Err(Stop::Broken(Violation {
                            rule: violation.rule,
                            detail: format!("crash image {index}: {}", violation.detail),
                        }));
                    }
                }
            }
        }
        Ok(())
    }

    /// Faults stop; the power is cut once more; every process recovers; the engine must
    /// accept writes; after a checkpoint and a clean reopen, every injected damage still
    /// on disk inside the page file must be reported by the integrity check.
    pub(super) fn final_phase(&mut self) -> Step {
        self.trace.push("final phase: faults stop".to_string());
        self.fs.disarm();
        self.faults_stopped = true;
        self.fs.set_faults_active(false);
        self.fs.stop_capturing();
        self.power_loss()?;
        for pid in 1..self.engines.len() {
            self.check(pid, Depth::Full)?;
        }
        self.liveness()?;
        self.detection()?;
        self.space()
    }

    pub(super) fn liveness(&mut self) -> Step {
        let free_before = self.free_pages(0)?;
        let nodes: Vec<MemoryNode> = (0..3)
            .map(|_| crate::workload::node(&mut *self.rng, crate::workload::NodeSize::Typical))
            .collect();
        let engine = self.engine(0)?;
        let mut ids = Vec::new();
        for node in &nodes {
            match engine.store_memory(node) {
                Ok(id) => ids.push(id),
                Err(error) => {
                    let error_text = error.to_string();
                    self.classify_error(&error)?;
                    return Err(broken(
                        Rule::Liveness,
                        format!("store after faults stopped: {error_text}"),
                    ));
                }
            }
        }
        for (id, node) in ids.iter().zip(nodes) {
            self.model
                .stored(*id, node)
                .map_err(|detail| broken(Rule::Durability, detail))?;
        }
        self.free_space_was_found(free_before)?;
        let engine = self.engine(0)?;
        if let Err(error) = engine.checkpoint() {
            let error_text = error.to_string();
            self.classify_error(&error)?;
            return Err(broken(
                Rule::Liveness,
                format!("checkpoint after faults stopped: {error_text}"),
            ));
        }
        self.trace.push("liveness ok".to_string());
        self.check(0, Depth::Full)
    }

    pub(super) fn detection(&mut self) -> Step {
        for engine in &mut self.engines {
            if let Some(engine) = engine.take() {
                let _ = engine.close();
            }
        }
        self.open(0)?;
        let engine = self.engine(0)?;
        let page_file_bytes = engine.page_count() * 64 * 1024;
        // `verify` as an operator runs it: the integrity check, and both meta slots (a
        // misdirected page write can land on the older one, which no read of the database
        // touches; a slot torn by a crash is rewritten by the first checkpoint after it, and
        // the final phase checkpointed).
        let verifier = self.engines.len();
        self.fs.restart_process(verifier);
        let report = mentedb_storage::backup::verify_database(
            Path::new(DIR),
            self.options(&self.fs, verifier).read_only(),
        );
        let due: Vec<_> = self
            .fs
            .damage()
            .into_iter()
            .filter(|damage| damage.file == "pages.db" && damage.offset < page_file_bytes)
            .collect();
        match report {
            Err(error) if error.is_corruption() && !due.is_empty() => {
                Err(Stop::Detected(error.to_string()))
            }
            Ok(report) if !report.is_clean() && !due.is_empty() => {
                // Every damaged page named, not just some problem somewhere: a misdirected
                // write must be found where it landed and at the page it was meant for.
                let page = mentedb_storage::PAGE_SIZE as u64;
                let unnamed: Vec<_> = due
                    .iter()
                    .filter(|damage| {
                        let start = damage.offset - damage.offset % page;
                        !report.problems.iter().any(|problem| {
                            problem.file.ends_with("pages.db")
                                && problem.offset >= start
                                && problem.offset < start + page
                        })
                    })
                    .collect();
                if unnamed.is_empty() {
                    Err(Stop::Detected(format!("{:?}", report.problems)))
                } else {
                    Err(broken(
                        Rule::Detection,
                        format!(
                            "damage at pages the check did not name: {unnamed:?}; it named: {:?}",
                            report.problems
                        ),
                    ))
                }
            }
            Ok(report) if report.is_clean() && due.is_empty() => {
                self.trace.push("detection ok: no damage left".to_string());
                Ok(())
            }
            Ok(report) if report.is_clean() => Err(broken(
                Rule::Detection,
                format!("injected damage not detected by the integrity check: {due:?}"),
            )),
            Ok(report) => Err(broken(
                Rule::Detection,
                format!(
                    "integrity problems with no damage left on disk: {:?}",
                    report.problems
                ),
            )),
            Err(error) => {
                self.classify_error(&error)?;
                Err(broken(
                    Rule::Liveness,
                    format!("integrity check failed: {error}"),
                ))
            }
        }
    }

    /// Opens every process at once after a power loss, sometimes cutting the power again in
    /// the middle of their recoveries (up to [`RECOVERY_CRASHES_MAX`] times in a row), or
    /// killing one of them. Processes whose concurrent open failed open alone afterwards.
    pub(super) fn recover_together(&mut self) -> Step {
        for crash in 0..=RECOVERY_CRASHES_MAX {
            self.fs.set_capture_paused(true);
            for pid in 0..self.engines.len() {
                self.fs.restart_process(pid);
            }
            let cut = crash < RECOVERY_CRASHES_MAX && chance(&mut *self.rng, 200_000);
            if cut {
                let calls = 1 + below(&mut *self.rng, 30 * self.engines.len() as u64);
                self.fs.cut_power_after(calls);
            } else if chance(&mut *self.rng, 100_000) {
                let pid = below(&mut *self.rng, self.engines.len() as u64) as usize;
                let calls = 1 + below(&mut *self.rng, 40);
                self.fs.kill_process_after(pid, calls);
            }
            self.recoveries_together += 1;
            let results = {
                let bodies: Vec<ActorBody<'_, Result<StorageEngine, Error>>> =
                    (0..self.engines.len())
                        .map(|pid| {
                            let options = self.options(&self.fs, pid);
                            Box::new(move || StorageEngine::open_with(Path::new(DIR), options))
                                as ActorBody<'_, Result<StorageEngine, Error>>
                        })
                        .collect();
                self.schedule.run(bodies)
            };
            self.fs.disarm();
            self.fs.set_capture_paused(false);
            // Panics first: an earlier process's corruption error must not hide one.
            if let Some((pid, Err(panic))) = results
                .iter()
                .enumerate()
                .find(|(_, result)| result.is_err())
            {
                return Err(broken(
                    Rule::NoPanic,
                    format!("p{pid} open during a concurrent recovery: panic: {panic}"),
                ));
            }
            for (pid, result) in results.into_iter().enumerate() {
                match result {
                    Err(_) => unreachable!("panics were reported above"),
                    Ok(Ok(engine)) if !self.fs.is_killed(pid) => {
                        self.trace.push(format!("p{pid} recovered (together)"));
                        self.engines[pid] = Some(engine);
                    }
                    Ok(Ok(_)) => self.trace.push(format!("p{pid} killed at the end of open")),
                    Ok(Err(error)) => {
                        self.trace
                            .push(format!("p{pid} open (together) failed: {error}"));
                        self.classify_error(&error)?;
                    }
                }
            }
            if !self.fs.power_cut_fired() {
                break;
            }
            self.trace
                .push("power cut during the recovery of every process".to_string());
            for engine in &mut self.engines {
                *engine = None;
            }
            self.fs.power_loss();
        }
        for pid in 0..self.engines.len() {
            if self.engines[pid].is_none() || self.fs.is_killed(pid) {
                self.engines[pid] = None;
                self.open(pid)?;
            }
        }
        Ok(())
    }
}
