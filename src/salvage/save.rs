//! Carrying out the plans: which copy of each record is written, and what is reported.
//!
//! For each owner (in order), the plan ([`decide`](super::decide)) gives the versions to
//! try; the first that reads whole ([`extract`](super::extract)) is the page walk's copy.
//! The read-only open's copy is preferred when the page walk's is no newer than the open's
//! view and the two differ, or when the page walk has none; records only the open returned
//! are saved too. Then every live home slot of every handle page whose record was not saved
//! is reported missing.

use super::catalogue::{Catalogue, Reader};
use super::collect::{Candidate, Collected};
use super::decide::{self, HomeEvidence, Plan};
use super::extract::{self, Unreadable};
use super::report::{Findings, ProblemKind};
use super::write::Writer;
use super::{Opened, Phase, SalvageProgress};
use crate::error::Result;
use crate::handle_page;
use crate::memory::MemoryNode;
use crate::page::{Lsn, PageType};
use crate::record_id::{DatabaseId, HOME_SLOTS_PER_PAGE, RecordId};
use crate::slotted::Owner;
use std::collections::HashSet;

/// What the records are saved from.
pub(super) struct Context<'a> {
    /// Pass one's results.
    pub collected: &'a Collected,
    /// The read-only open, if it worked.
    pub opened: Option<&'a Opened>,
    /// The identity old handles carry, and the databases it was restored from (a record
    /// stored before a restore carries its ancestor's identity).
    pub database_id: DatabaseId,
    pub lineage: crate::lineage::Lineage,
}

/// Counts of what was saved.
#[derive(Debug, Default)]
pub(super) struct Saved {
    /// Records written.
    pub records: u64,
    /// Of those, copies from the read-only open.
    pub from_open: u64,
    /// Versions of deleted records not saved.
    pub deleted: u64,
}

/// One record's outcome.
enum Outcome {
    Saved {
        node: MemoryNode,
        len: usize,
        from_open: bool,
        older: Option<(Candidate, String)>,
    },
    Deleted,
    Lost(Unreadable),
}

/// Saves every record it can into `writer` (see the module docs); returns the counts and
/// the writer.
pub(super) fn save_records(
    context: &Context<'_>,
    reader: &mut Reader<'_>,
    writer: Writer,
    findings: &mut Findings,
    progress: &mut dyn FnMut(SalvageProgress),
) -> Result<(Saved, Writer)> {
    let catalogue = &context.collected.catalogue;
    let mut owners: Vec<&Owner> = context.collected.candidates.keys().collect();
    owners.sort_unstable();
    let open_only: Vec<RecordId> = context.opened.map_or_else(Vec::new, |opened| {
        let mut ids: Vec<RecordId> = opened.crcs.keys().copied().collect();
        ids.sort_unstable();
        ids
    });
    let total = (owners.len() + open_only.len()) as u64;
    let mut saving = Saving {
        writer,
        saved: Saved::default(),
        handled: HashSet::new(),
        step: 0,
    };
    for owner in owners {
        saving.step(total, progress);
        let Some(id) = old_handle(context, owner) else {
            continue;
        };
        if !saving.handled.insert(id) {
            continue;
        }
        let evidence = decide::home_evidence(reader, catalogue, owner.home_page, owner.home_slot)?;
        let candidates = &context.collected.candidates[owner];
        let plan = decide::plan(catalogue, *owner, candidates, evidence);
        let outcome = carry_out(context, reader, id, plan, findings)?;
        saving.record(catalogue, id, outcome, findings)?;
    }
    for id in open_only {
        saving.step(total, progress);
        if saving.handled.insert(id)
            && let Some((node, len)) = open_copy(context.opened, id)
        {
            let outcome = Outcome::Saved {
                node,
                len,
                from_open: true,
                older: None,
            };
            saving.record(catalogue, id, outcome, findings)?;
        }
    }
    report_missing(context, reader, &saving.handled, findings)?;
    debug_assert_eq!(saving.writer.saved(), saving.saved.records);
    Ok((saving.saved, saving.writer))
}

/// The state of [`save_records`].
struct Saving {
    writer: Writer,
    saved: Saved,
    /// Records whose outcome is decided (saved, deleted or reported).
    handled: HashSet<RecordId>,
    step: u64,
}

impl Saving {
    fn step(&mut self, total: u64, progress: &mut dyn FnMut(SalvageProgress)) {
        self.step += 1;
        progress(SalvageProgress {
            phase: Phase::Write,
            done: self.step,
            total,
        });
    }

    /// Writes or reports one record's outcome.
    fn record(
        &mut self,
        catalogue: &Catalogue,
        id: RecordId,
        outcome: Outcome,
        findings: &mut Findings,
    ) -> Result<()> {
        match outcome {
            Outcome::Saved {
                node,
                len,
                from_open,
                older,
            } => {
                if let Some((candidate, reason)) = older {
                    findings.lose_record(
                        ProblemKind::OlderVersion,
                        catalogue.location(candidate.version),
                        id,
                        format!("saved an older version: {reason}"),
                    );
                }
                self.saved.records += 1;
                self.saved.from_open += u64::from(from_open);
                self.writer.add(id, node, len)?;
            }
            Outcome::Deleted => self.saved.deleted += 1,
            Outcome::Lost(why) => {
                findings.lose_record(why.kind, (why.file, why.offset), id, why.detail);
            }
        }
        Ok(())
    }
}

fn old_handle(context: &Context<'_>, owner: &Owner) -> Option<RecordId> {
    let issuer = context.lineage.issuer(context.database_id, owner.serial);
    RecordId::new(issuer, owner.home_page, owner.home_slot, owner.serial)
}

/// The read-only open's copy of `id`, with its size, if it returned one.
fn open_copy(opened: Option<&Opened>, id: RecordId) -> Option<(MemoryNode, usize)> {
    let opened = opened?;
    if !opened.crcs.contains_key(&id) {
        return None;
    }
    let node = opened.engine.load_memory(id).ok()?;
    let len = node.record_size_lower_bound();
    Some((node, len))
}

/// True if the open returned `id` and its view is at least as new as `as_of`.
fn open_covers(opened: Option<&Opened>, id: RecordId, as_of: Lsn) -> bool {
    opened.is_some_and(|opened| opened.crcs.contains_key(&id) && as_of <= opened.last_lsn)
}

/// Carries out one record's plan.
fn carry_out(
    context: &Context<'_>,
    reader: &mut Reader<'_>,
    id: RecordId,
    plan: Plan,
    findings: &mut Findings,
) -> Result<Outcome> {
    let catalogue = &context.collected.catalogue;
    let from_open = |older: Option<(Candidate, String)>| {
        open_copy(context.opened, id).map(|(node, len)| Outcome::Saved {
            node,
            len,
            from_open: true,
            older,
        })
    };
    match plan {
        Plan::Deleted { as_of } => {
            if open_covers(context.opened, id, as_of)
                && let Some(outcome) = from_open(None)
            {
                self_check_note(findings, id, "the page walk found it deleted");
                return Ok(outcome);
            }
            Ok(Outcome::Deleted)
        }
        Plan::Uncertain { candidate, detail } => {
            if let Some(outcome) = from_open(None) {
                return Ok(outcome);
            }
            let (file, offset) = catalogue.location(candidate.version);
            Ok(Outcome::Lost(Unreadable {
                kind: ProblemKind::Uncertain,
                file,
                offset,
                detail,
            }))
        }
        Plan::Save { order, older } => save_from(context, reader, id, &order, older, findings),
    }
}

/// Tries `order` (newest first) and picks the copy to save: the page walk's, or the
/// read-only open's (see the module docs).
fn save_from(
    context: &Context<'_>,
    reader: &mut Reader<'_>,
    id: RecordId,
    order: &[Candidate],
    older: Option<String>,
    findings: &mut Findings,
) -> Result<Outcome> {
    let catalogue = &context.collected.catalogue;
    let newest = order[0];
    let (found, failure) = first_readable(reader, catalogue, order)?;
    let failure_text = failure.as_ref().map(|why| {
        format!(
            "its newest version (LSN {}) could not be read: {}",
            catalogue.get(newest.version).lsn.0,
            why.detail
        )
    });
    // Why what is saved may be older than the record's current version, if it may be.
    let older = match &found {
        Some((0, _, _)) => older,
        Some((_, candidate, _)) => {
            let same = if candidate.content == newest.content {
                " (the version saved has the same slot, so its bytes are likely the same, but \
                 that cannot be proved)"
            } else {
                ""
            };
            failure_text.clone().map(|text| format!("{text}{same}"))
        }
        None => failure_text.clone(),
    };
    let open_crc = context.opened.and_then(|opened| opened.crcs.get(&id));
    let use_open = match &found {
        None => open_crc.is_some(),
        Some((rank, candidate, read)) => {
            let as_of = catalogue.get(candidate.version).as_of;
            let agrees = *rank == 0
                && older.is_none()
                && open_crc.is_some_and(|crc| *crc == crc32fast::hash(&read.bytes));
            open_covers(context.opened, id, as_of) && !agrees
        }
    };
    if use_open && let Some((node, len)) = open_copy(context.opened, id) {
        if matches!(found, Some((0, _, _))) && older.is_none() {
            self_check_note(findings, id, "the page walk read other bytes");
        }
        let current = open_covers(context.opened, id, catalogue.get(newest.version).as_of);
        let reason = older.unwrap_or_else(|| "its newest version could not be read".to_string());
        return Ok(Outcome::Saved {
            node,
            len,
            from_open: true,
            older: (!current).then_some((newest, reason)),
        });
    }
    Ok(match found {
        Some((_, candidate, read)) => Outcome::Saved {
            len: read.bytes.len(),
            node: read.node,
            from_open: false,
            older: older.map(|reason| (candidate, reason)),
        },
        None => Outcome::Lost(failure.unwrap_or(Unreadable {
            kind: ProblemKind::Undecodable,
            file: crate::pager::PAGE_FILE_NAME,
            offset: 0,
            detail: "no version reads".to_string(),
        })),
    })
}

/// A read version: its rank in the order tried, its candidate, and what was read.
type Found = (usize, Candidate, extract::Read);

/// The first of `order` that reads whole, and why the first that failed did.
fn first_readable(
    reader: &mut Reader<'_>,
    catalogue: &Catalogue,
    order: &[Candidate],
) -> Result<(Option<Found>, Option<Unreadable>)> {
    let mut failure = None;
    for (rank, candidate) in order.iter().enumerate() {
        match extract::read_candidate(reader, catalogue, candidate)? {
            Ok(read) => return Ok((Some((rank, *candidate, read)), failure)),
            Err(why) => {
                failure.get_or_insert(why);
            }
        }
    }
    Ok((None, failure))
}

fn self_check_note(findings: &mut Findings, id: RecordId, what: &str) {
    findings.note(
        ProblemKind::Note,
        crate::pager::PAGE_FILE_NAME,
        0,
        format!(
            "self-check: record {id} is live in the read-only open's view, but {what}; the \
             open's copy was saved"
        ),
    );
}

/// Reports every live home slot of every handle page whose record was not handled.
fn report_missing(
    context: &Context<'_>,
    reader: &mut Reader<'_>,
    handled: &HashSet<RecordId>,
    findings: &mut Findings,
) -> Result<()> {
    let catalogue = &context.collected.catalogue;
    let reported: HashSet<RecordId> = findings
        .lost
        .iter()
        .filter_map(|lost| lost.record)
        .collect();
    for page in catalogue.pages() {
        let Some(index) = catalogue.newest_readable(page) else {
            continue;
        };
        if catalogue.get(index).kind != Some(PageType::Handles) {
            continue;
        }
        let Ok(loaded) = reader.load(catalogue, index)? else {
            continue;
        };
        let newer_unreadable = catalogue.newest(page) != Some(index);
        for slot in 0..HOME_SLOTS_PER_PAGE {
            let Ok(Some(home)) = handle_page::read(&loaded, slot) else {
                continue;
            };
            let Some(id) = RecordId::new(
                context.lineage.issuer(context.database_id, home.serial),
                page,
                slot,
                home.serial,
            ) else {
                continue;
            };
            if handled.contains(&id) || reported.contains(&id) {
                continue;
            }
            let evidence = HomeEvidence {
                as_of: catalogue.get(index).as_of,
                home: Some(home),
                newer_unreadable,
            };
            let (location, detail) = missing_detail(catalogue, &evidence);
            findings.lose_record(ProblemKind::RecordMissing, location, id, detail);
        }
    }
    Ok(())
}

/// Where a record its handle page names is missing from, and why.
fn missing_detail(catalogue: &Catalogue, evidence: &HomeEvidence) -> ((&'static str, u64), String) {
    let Some(home) = evidence.home else {
        return ((crate::pager::PAGE_FILE_NAME, 0), String::new());
    };
    let record_page = home.record_page;
    let since = if evidence.newer_unreadable {
        " (the newest version of its handle page does not verify: it may have been deleted \
         since)"
    } else {
        ""
    };
    match catalogue.newest(record_page) {
        None => (
            (crate::pager::PAGE_FILE_NAME, record_page.offset()),
            format!(
                "its handle page says it is live in {record_page} slot {}, but no version of \
                 that page was found{since}",
                home.record_slot
            ),
        ),
        Some(index) => {
            let version = catalogue.get(index);
            let state = if version.kind.is_none() {
                "does not verify".to_string()
            } else {
                format!(
                    "(newest version, LSN {}) does not hold it: the version that did is lost",
                    version.lsn.0
                )
            };
            (
                catalogue.location(index),
                format!(
                    "its handle page says it is live in {record_page} slot {}, but that page \
                     {state}{since}",
                    home.record_slot
                ),
            )
        }
    }
}
