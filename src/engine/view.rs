//! The view: what this process knows of the shared database state, and how it catches up.
//!
//! Between checkpoints the newest version of a changed page lives in the WAL, not in
//! `pages.db` (readers find it through the WAL index, SQLite's idea): the view keeps, for
//! each page changed since the last checkpoint, its frames (the full image first, then the
//! deltas). A page is read from its WAL frames if it has any, else from `pages.db`.
//!
//! Other processes append to the same WAL. The view catches up ([`Inner::refresh`]) by
//! scanning the frames committed since its cursor: each names the page it changed, so
//! exactly those cached pages are dropped. If the WAL's salt changed, another process
//! checkpointed and reset the log, and the whole view and cache are reloaded.
//!
//! Readers learn that something changed from the shared counter file `wal.shm`: writers
//! store their last committed LSN there (no sync; it only signals change), so a reader pays
//! one small `pread` per operation instead of a WAL scan.

use super::Inner;
use crate::error::{Error, Result};
use crate::page::{Lsn, PAGE_SIZE, Page, PageId, PageIdHashing, apply_delta};
use crate::pager::{AllocState, FIRST_DATA_PAGE, Meta, PAGE_FILE_NAME};
use crate::wal::{
    AfterZeros, FrameInfo, ScanStop, WAL_FILE_NAME, WalCursor, WalEntryType, WalHeader,
};
use std::collections::HashMap;
use std::sync::Arc;

/// How often a refresh retries at once (yielding the processor) after meeting a WAL reset
/// by another process; after these it sleeps [`REFRESH_SLEEP`] between attempts.
const REFRESH_ATTEMPTS_QUICK: u32 = 16;
const REFRESH_SLEEP: std::time::Duration = std::time::Duration::from_micros(50);
/// Longest a refresh waits for another process's WAL reset to end (a reset is a truncate, a
/// header write and two `fdatasync`s: about a millisecond here) before it reports what it
/// met.
const REFRESH_WAIT_MAX: std::time::Duration = std::time::Duration::from_secs(2);
/// How often a full reload retries when it meets a checkpoint in progress elsewhere.
const RELOAD_ATTEMPTS_MAX: u32 = 64;

/// True for what reading the WAL while another process resets it looks like: frames that
/// do not verify or reach past the emptied file, a view short of the published counter.
/// Other errors (`EIO`, a dead process) are not waited out.
fn reset_symptom(error: &Error) -> bool {
    match error {
        Error::Corruption { .. } => true,
        Error::Io { source, .. } => source.kind() == std::io::ErrorKind::UnexpectedEof,
        _ => false,
    }
}

/// Whether a refresh checks that the view reaches the published counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Coverage {
    /// Without the writer locks: a view short of the counter may have met a reset by
    /// another process, which is waited out.
    Published,
    /// Under the writer locks, after open: nobody resets the log and every published commit
    /// was appended before it was published, so a view short of the counter met damage.
    Locked,
    /// At open: the counter may come from before a power loss.
    Unchecked,
}

/// What this process knows of the database.
#[derive(Debug, Clone)]
pub(crate) struct View {
    /// End of the committed WAL as known here.
    pub cursor: WalCursor,
    /// False when the WAL has no valid header yet; writers reset it before appending.
    pub wal_ready: bool,
    /// The newest meta page read.
    pub meta: Meta,
    /// Current allocation state (from the last commit, or the meta page).
    pub alloc: AllocState,
    /// Pages changed since the checkpoint, with their frames (image first).
    pub index: HashMap<PageId, Vec<FrameInfo>, PageIdHashing>,
}

impl View {
    /// A view of a database whose WAL holds nothing beyond the checkpoint in `meta`.
    pub fn checkpointed(meta: Meta, header: Option<WalHeader>) -> View {
        let cursor = match header {
            Some(header) => WalCursor::at_start(header),
            None => WalCursor::at_start(WalHeader {
                salt: 0,
                base_lsn: meta.checkpoint_lsn,
                crc: 0,
            }),
        };
        View {
            cursor,
            wal_ready: header.is_some_and(|header| header.base_lsn == meta.checkpoint_lsn),
            alloc: meta.alloc,
            meta,
            index: HashMap::default(),
        }
    }

    /// Highest LSN committed to the database as known here.
    pub fn last_lsn(&self) -> Lsn {
        self.cursor.last_lsn.max(self.meta.checkpoint_lsn)
    }

    /// Bytes of WAL in use.
    pub fn wal_bytes(&self) -> u64 {
        self.cursor.end
    }

    /// Adds committed frames to the index; returns the pages they change. All or nothing:
    /// on error (a delta for a page without an image) the index is unchanged.
    fn index_frames(&mut self, frames: &[FrameInfo]) -> Result<Vec<PageId>> {
        let mut imaged = std::collections::HashSet::new();
        for frame in frames {
            match frame.kind {
                WalEntryType::PageImage => {
                    imaged.insert(frame.page);
                }
                WalEntryType::PageDelta
                    if !imaged.contains(&frame.page) && !self.index.contains_key(&frame.page) =>
                {
                    return Err(Error::corruption(
                        WAL_FILE_NAME,
                        frame.offset,
                        format!("delta for {} without a page image", frame.page),
                    ));
                }
                WalEntryType::PageDelta | WalEntryType::Commit => {}
            }
        }
        let mut touched = Vec::new();
        for frame in frames {
            match frame.kind {
                WalEntryType::PageImage => {
                    self.index.insert(frame.page, vec![*frame]);
                    touched.push(frame.page);
                }
                WalEntryType::PageDelta => {
                    self.index.entry(frame.page).or_default().push(*frame);
                    touched.push(frame.page);
                }
                WalEntryType::Commit => {}
            }
        }
        Ok(touched)
    }
}

impl Inner {
    /// Catches up with commits of other processes if the shared counter moved; returns the
    /// counter the view now covers (see [`Inner::load_record`]).
    pub(crate) fn refresh_if_changed(&self) -> Result<u64> {
        let published = self.shm.read()?;
        if published != self.shm_seen.load(std::sync::atomic::Ordering::Acquire) {
            self.refresh_with(published)?;
        }
        Ok(published)
    }

    /// Catches up with every commit in the WAL, under the writer locks (nobody resets the
    /// WAL meanwhile), after open: the view must reach the published counter. A view short
    /// of it stopped at a damaged frame that looked like a torn tail (the last one another
    /// process committed, with no later frame to prove it), and the writer appended over
    /// an acknowledged commit, which then answered for another record's handle (found by
    /// `wal_damage_told.rs`, written after the seeds below; no campaign had met it).
    ///
    /// A reset's symptoms are not waited out here: under the writer locks no reset can be
    /// in progress, so a frame that fails to verify is damage, reported after the quick
    /// attempts. Waiting [`REFRESH_WAIT_MAX`] for it held the writer lock past every other
    /// process's lock timeout (found once the simulator flipped WAL bits in multi-process
    /// runs: seeds 305 and 339 of `--faults corrupt`).
    pub(crate) fn refresh(&self) -> Result<()> {
        let published = self.shm.read()?;
        self.refresh_attempts(published, Coverage::Locked)
    }

    /// [`Inner::refresh`] at open, under the writer locks: the published counter may be
    /// higher than the WAL (it may come from before a power loss); `check_no_lost_tail`
    /// judges that from the durable records instead.
    pub(crate) fn refresh_at_open(&self) -> Result<()> {
        let published = self.shm.read()?;
        self.refresh_attempts(published, Coverage::Unchecked)
    }

    /// Catches up with every commit in the WAL without the writer locks (readers).
    pub(crate) fn refresh_unlocked(&self) -> Result<()> {
        let published = self.shm.read()?;
        self.refresh_with(published)
    }

    /// Catches up with every commit in the WAL and notes `published` (read before) as seen.
    ///
    /// Another process may reset the WAL while this reads it (a checkpoint; readers hold no
    /// lock): a frame then fails to read back, the scan meets the new life's bytes or an
    /// emptied file, or the meta page read was the one before the checkpoint. The view is
    /// then left as it was, and the next attempt reads the new header and reloads; the
    /// attempts go on while the reset may still be in progress ([`REFRESH_WAIT_MAX`]).
    /// Without the writer locks: the view must reach `published` (see
    /// [`Inner::refresh_once`]).
    pub(crate) fn refresh_with(&self, published: u64) -> Result<()> {
        self.refresh_attempts(published, Coverage::Published)
    }

    fn refresh_attempts(&self, published: u64, coverage: Coverage) -> Result<()> {
        if self.frozen.load(std::sync::atomic::Ordering::Acquire) {
            return Ok(());
        }
        let deadline = crate::sched::now() + REFRESH_WAIT_MAX;
        let mut attempt = 0;
        loop {
            match self.refresh_once(published, coverage) {
                Err(error)
                    if super::page_reads::touches_wal(&error)
                        && (attempt < REFRESH_ATTEMPTS_QUICK
                            || (coverage == Coverage::Published
                                && reset_symptom(&error)
                                && crate::sched::now() < deadline)) =>
                {
                    attempt += 1;
                    if attempt <= REFRESH_ATTEMPTS_QUICK {
                        crate::sched::pause();
                    } else {
                        crate::sched::sleep(REFRESH_SLEEP);
                    }
                }
                other => return other,
            }
        }
    }

    fn refresh_once(&self, published: u64, coverage: Coverage) -> Result<()> {
        let mut view = self.write_view();
        let header = self.wal.read_header()?;
        let same_life = header.is_some_and(|header| {
            view.wal_ready
                && header.salt == view.cursor.salt
                && header.base_lsn == view.cursor.base_lsn
        });
        let before = view.clone();
        let caught_up = if same_life {
            self.catch_up(&mut view)
        } else {
            self.reload(&mut view)
        };
        if let Err(error) = caught_up {
            // A failed attempt leaves the view as it was (a reset seen midway: the next
            // attempt reloads, which empties the cache).
            *view = before;
            return Err(error);
        }
        // Every commit published was appended before it was published, and a checkpoint
        // covers every commit before it: a view short of `published` read the WAL while a
        // checkpoint reset it. Trusting it left a reader with a stale cached page and the
        // counter marked seen, so it returned a record as it was before an acknowledged
        // update until the next commit anywhere (found by the simulator's concurrent
        // groups: a load raced another process's checkpoint, seed 128).
        let published_lsn = Lsn(published);
        if coverage == Coverage::Locked
            && published_lsn.is_valid()
            && view.last_lsn() < published_lsn
        {
            let reached = view.last_lsn();
            let end = view.cursor.end;
            *view = before;
            return Err(Error::corruption(
                WAL_FILE_NAME,
                end,
                format!(
                    "the WAL ends at LSN {} but LSN {} was published: a committed frame \
                     after it was damaged; run `mentedb-storage verify` and `salvage`",
                    reached.0, published_lsn.0
                ),
            ));
        }
        if coverage == Coverage::Published
            && published_lsn.is_valid()
            && view.last_lsn() < published_lsn
        {
            let reached = view.last_lsn();
            *view = before;
            return Err(Error::corruption(
                WAL_FILE_NAME,
                0,
                format!(
                    "the WAL reaches LSN {} but LSN {} was published: it changed while it \
                     was read",
                    reached.0, published_lsn.0
                ),
            ));
        }
        self.shm_seen
            .store(published, std::sync::atomic::Ordering::Release);
        Ok(())
    }

    /// Applies the frames committed after the view's cursor.
    fn catch_up(&self, view: &mut View) -> Result<()> {
        // This process opened the log since the last crash, so what it reads is the page
        // cache, which has no holes: zeros after the chain end it (see `wal::format`).
        let scan = self.wal.scan_after(&view.cursor, AfterZeros::End)?;
        if let ScanStop::Corruption { offset, detail } = &scan.stop {
            crate::rare_paths::hit(crate::rare_paths::RarePath::DamagedFrameProven);
            return Err(Error::corruption(WAL_FILE_NAME, *offset, detail.clone()));
        }
        let committed = &scan.frames[..scan.committed_frames];
        if committed.is_empty() {
            // Nothing new (every writer's catch-up before its commit, alone).
            return Ok(());
        }
        let cursor = view.cursor.after(&scan);
        self.apply_committed(view, committed, cursor, None, CacheUpdate::ApplyFrames)?;
        self.check_page_count(view)
    }

    /// Every page below the allocation state's page count must exist: in the page file or
    /// in the WAL (a new page is logged whole in the transaction that allocates it, and a
    /// checkpoint syncs the pages it writes before the meta page that counts them). A
    /// larger count is corruption, and trusting it would send scans and integrity checks
    /// over pages that were never written: a crafted meta page claiming 2^30 pages made a
    /// scan run for hours, and a crafted WAL with one frame for a far page id made the
    /// integrity check time out (the `wal_recovery` fuzz target).
    fn check_page_count(&self, view: &View) -> Result<()> {
        let file_pages = (self.pages.len()? / PAGE_SIZE as u64).max(FIRST_DATA_PAGE.0);
        let page_count = view.alloc.page_count;
        let past_file = page_count.saturating_sub(file_pages);
        let logged_past_file = view
            .index
            .keys()
            .filter(|id| id.0 >= file_pages && id.0 < page_count)
            .count() as u64;
        if logged_past_file == past_file {
            return Ok(());
        }
        // A reader holds no lock: a checkpoint may have cut the file after this view was
        // read (it drops trailing free pages once the WAL is reset). The file length was
        // read first, so a cut before it means the header has changed by now, and the
        // refresh starts over on the new log (found by the simulator's concurrent groups:
        // a load raced a checkpoint that shrank the file, seed 68 of the 3-process crash
        // campaign, reported as corruption).
        let header = self.wal.read_header()?;
        let same_life = header.is_some_and(|header| {
            header.salt == view.cursor.salt && header.base_lsn == view.cursor.base_lsn
        });
        if view.wal_ready && !same_life {
            return Err(Error::corruption(
                WAL_FILE_NAME,
                0,
                "the WAL was reset while it was read (a checkpoint cut the page file)",
            ));
        }
        Err(Error::corruption(
            PAGE_FILE_NAME,
            0,
            format!(
                "the allocation state claims {page_count} pages, but the page file holds \
                 {file_pages} and the WAL only {logged_past_file} of the {past_file} after them"
            ),
        ))
    }

    /// Adds committed frames to the view (once: frames at or below the cursor are already
    /// in), drops the cached copies of the pages they change, and takes the allocation
    /// state from `alloc` or else from the last commit frame.
    pub(crate) fn apply_committed(
        &self,
        view: &mut View,
        frames: &[FrameInfo],
        cursor: WalCursor,
        alloc: Option<AllocState>,
        cache: CacheUpdate,
    ) -> Result<()> {
        if cursor.last_lsn <= view.cursor.last_lsn {
            return Ok(());
        }
        // Everything that can fail comes before the view changes: a failed catch-up leaves
        // the view as it was, ready for another attempt.
        let alloc = match (alloc, frames.last()) {
            (Some(alloc), _) => alloc,
            (None, Some(last)) => self.read_alloc(cursor.salt, last)?,
            (None, None) => view.alloc,
        };
        let mut touched = view.index_frames(frames)?;
        touched.sort_unstable();
        touched.dedup();
        for page in touched {
            match cache {
                CacheUpdate::Invalidate => self.pool.invalidate(page),
                CacheUpdate::ApplyFrames => {
                    self.bring_cached_page_up_to_date(page, frames, cursor.salt)
                }
            }
        }
        view.alloc = alloc;
        view.cursor = cursor;
        Ok(())
    }

    /// Applies the new delta frames of `id` to its cached copy, which is current up to the
    /// view's cursor (the cache's invariant), so the copy is current after them: cheaper
    /// than dropping it and rebuilding the page from its image and every delta since the
    /// checkpoint on the next read, which made writers in several processes spend most of
    /// their time decompressing page images. Anything unusual (an image frame, a frame
    /// that does not read back) drops the copy instead.
    fn bring_cached_page_up_to_date(&self, id: PageId, frames: &[FrameInfo], salt: u32) {
        let Some(cached) = self.pool.get(id) else {
            // Not cached, but a reader may be filling it from the view before these frames:
            // invalidating bumps the pool's version, which refuses that stale fill.
            self.pool.invalidate(id);
            return;
        };
        let mut page = Page::clone(&cached);
        drop(cached);
        for frame in frames
            .iter()
            .filter(|frame| frame.page == id && frame.kind != WalEntryType::Commit)
        {
            if frame.kind != WalEntryType::PageDelta {
                self.pool.invalidate(id);
                return;
            }
            if frame.lsn <= page.lsn() {
                continue;
            }
            let applied = self.wal.read_entry(salt, frame).and_then(|entry| {
                apply_delta(&mut page, &entry.payload)
                    .map_err(|error| error.at(WAL_FILE_NAME, frame.offset))
            });
            if applied.is_err() {
                self.pool.invalidate(id);
                return;
            }
            page.set_lsn(frame.lsn);
        }
        self.pool.install(id, Arc::new(page), true);
    }

    fn read_alloc(&self, salt: u32, commit: &FrameInfo) -> Result<AllocState> {
        let entry = self.wal.read_entry(salt, commit)?;
        AllocState::decode(&entry.payload).map_err(|error| error.at(WAL_FILE_NAME, commit.offset))
    }

    /// Rebuilds the view from the meta page and the whole WAL, and empties the cache.
    pub(super) fn reload(&self, view: &mut View) -> Result<()> {
        let mut attempt = 0;
        loop {
            let meta = self.pages.load_meta()?.ok_or_else(|| {
                Error::corruption(
                    PAGE_FILE_NAME,
                    0,
                    "no valid meta page in an initialised database",
                )
            })?;
            let header = self.wal.read_header()?;
            match self.load_view(meta, header) {
                Ok(loaded) => {
                    self.check_page_count(&loaded)?;
                    *view = loaded;
                    self.pool.clear();
                    return Ok(());
                }
                Err(Reload::Retry(_)) if attempt < RELOAD_ATTEMPTS_MAX => {
                    crate::rare_paths::hit(crate::rare_paths::RarePath::ReloadRetried);
                    attempt += 1;
                    crate::sched::pause();
                }
                Err(Reload::Retry(error) | Reload::Fail(error)) => return Err(error),
            }
        }
    }

    fn load_view(&self, meta: Meta, header: Option<WalHeader>) -> Result<View, Reload> {
        let Some(header) = header else {
            return Ok(View::checkpointed(meta, None));
        };
        let mut view = View::checkpointed(meta.clone(), Some(header));
        let scan = self
            .wal
            .scan_after(&view.cursor, AfterZeros::Probe)
            .map_err(Reload::Fail)?;
        // A read-only open goes past what a read-write open refuses, and notes it: the
        // committed frames before WAL damage, the meta page alone when the log does not
        // fit it (see `open`). Only at open, under the writer locks: later, the same
        // symptoms are a concurrent checkpoint and are retried.
        let salvage = self.salvaging.load(std::sync::atomic::Ordering::Acquire);
        if let ScanStop::TornTail(_) = &scan.stop {
            crate::rare_paths::hit(crate::rare_paths::RarePath::TornTailAtOpen);
        }
        if let ScanStop::Corruption { offset, detail } = &scan.stop {
            crate::rare_paths::hit(crate::rare_paths::RarePath::DamagedFrameProven);
            if !salvage {
                return Err(Reload::Fail(Error::corruption(
                    WAL_FILE_NAME,
                    *offset,
                    detail.clone(),
                )));
            }
            self.note(
                WAL_FILE_NAME,
                *offset,
                format!(
                    "{detail}; read up to the last commit before it (LSN {})",
                    scan.committed_lsn.0
                ),
            );
        }
        if header.base_lsn > meta.checkpoint_lsn {
            let detail = format!(
                "the WAL starts after LSN {} but the newest meta page has checkpoint LSN {}",
                header.base_lsn.0, meta.checkpoint_lsn.0
            );
            if !salvage {
                return Err(Reload::Retry(Error::corruption(PAGE_FILE_NAME, 0, detail)));
            }
            self.note(
                PAGE_FILE_NAME,
                0,
                format!("{detail}; the WAL was set aside"),
            );
            return Ok(View::checkpointed(meta, None));
        }
        if scan.committed_lsn <= meta.checkpoint_lsn {
            view.cursor = view.cursor.after(&scan);
            return Ok(view);
        }
        if header.base_lsn != meta.checkpoint_lsn {
            let detail = format!(
                "WAL from LSN {} to {} straddles the checkpoint at LSN {}",
                header.base_lsn.0, scan.committed_lsn.0, meta.checkpoint_lsn.0
            );
            if !salvage {
                return Err(Reload::Fail(Error::corruption(WAL_FILE_NAME, 0, detail)));
            }
            self.note(WAL_FILE_NAME, 0, format!("{detail}; the WAL was set aside"));
            return Ok(View::checkpointed(meta, None));
        }
        let committed = &scan.frames[..scan.committed_frames];
        let cursor = view.cursor.after(&scan);
        self.apply_committed(&mut view, committed, cursor, None, CacheUpdate::Invalidate)
            .map_err(Reload::Fail)?;
        Ok(view)
    }

    /// Rebuilds a page from its WAL frames: the image, then each newer delta in LSN order
    /// (a delta at or below the page's LSN is already in, which keeps redo idempotent).
    pub(crate) fn rebuild_page(&self, id: PageId, frames: &[FrameInfo], salt: u32) -> Result<Page> {
        let Some((image_frame, deltas)) = frames.split_first() else {
            return Err(Error::corruption(
                WAL_FILE_NAME,
                0,
                format!("no frames for {id}"),
            ));
        };
        let at = |frame: &FrameInfo| {
            let offset = frame.offset;
            move |error: crate::error::DecodeError| error.at(WAL_FILE_NAME, offset)
        };
        let image = self.wal.read_entry(salt, image_frame)?;
        let mut page = Page::from_bytes(&image.payload).map_err(at(image_frame))?;
        if page.id() != id || page.lsn() != image_frame.lsn {
            return Err(Error::corruption(
                WAL_FILE_NAME,
                image_frame.offset,
                format!("image of {id} holds {} at LSN {}", page.id(), page.lsn().0),
            ));
        }
        for delta in deltas {
            if delta.lsn <= page.lsn() {
                continue;
            }
            let entry = self.wal.read_entry(salt, delta)?;
            apply_delta(&mut page, &entry.payload).map_err(at(delta))?;
            page.set_lsn(delta.lsn);
        }
        Ok(page)
    }
}

/// What catching up does to the cached copies of the pages new frames change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CacheUpdate {
    /// Drop them (own commits, whose new pages are installed right after; reloads, which
    /// empty the cache anyway).
    Invalidate,
    /// Apply the new frames to them (commits of other processes).
    ApplyFrames,
}

/// Outcome of one reload attempt that did not succeed.
enum Reload {
    /// The meta page and WAL disagree in a way a concurrent checkpoint explains.
    Retry(Error),
    /// A real error.
    Fail(Error),
}
