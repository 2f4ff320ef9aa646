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
    /// The identity old handles carry.
    pub database_id: DatabaseId,
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
    mut writer: Writer,
    findings: &mut Findings,
    progress: &mut dyn FnMut(SalvageProgress),
) -> Result<(Saved, Writer)> {
    let catalogue = &context.collected.catalogue;
    let mut owners: Vec<&Owner> = context.collected.candidates.keys().collect();
    owners.sort_unstable();
    let mut done: HashSet<RecordId> = HashSet::new();
    let mut saved = Saved::default();
    let open_only: Vec<RecordId> = context.opened.map_or_else(Vec::new, |opened| {
        let mut ids: Vec<RecordId> = opened.crcs.keys().copied().collect();
        ids.sort_unstable();
        ids
    });
    let total = (owners.len() + open_only.len()) as u64;
    let mut step = 0u64;
    for owner in owners {
        step += 1;
        progress(SalvageProgress {
            phase: Phase::Write,
            done: step,
            total,
        });
        let Some(id) = old_handle(context.database_id, owner) else {
            continue;
        };
        if !done.insert(id) {
            continue;
        }
        let evidence = decide::home_evidence(reader, catalogue, owner.home_page, owner.home_slot)?;
        let plan = decide::plan(
            catalogue,
            *owner,
            &context.collected.candidates[owner],
            evidence,
        );
        match carry_out(context, reader, id, plan, findings)? {
            Outcome::Saved {
                node,
                len,
                from_open,
                older,
            } => {
                if let Some((candidate, reason)) = older {
                    let location = catalogue.location(candidate.version);
                    findings.lose_record(
                        ProblemKind::OlderVersion,
                        location,
                        id,
                        format!("saved an older version: {reason}"),
                    );
                }
                saved.records += 1;
                saved.from_open += u64::from(from_open);
                writer.add(id, node, len)?;
            }
            Outcome::Deleted => saved.deleted += 1,
            Outcome::Lost(why) => {
                findings.lose_record(why.kind, (why.file, why.offset), id, why.detail);
            }
        }
    }
    for id in open_only {
        step += 1;
        progress(SalvageProgress {
            phase: Phase::Write,
            done: step,
            total,
        });
        if done.contains(&id) {
            continue;
        }
        if let Some((node, len)) = open_copy(context.opened, id) {
            done.insert(id);
            saved.records += 1;
            saved.from_open += 1;
            writer.add(id, node, len)?;
        }
    }
    report_missing(context, reader, &done, findings)?;
    debug_assert_eq!(writer.saved(), saved.records);
    Ok((saved, writer))
}

fn old_handle(database: DatabaseId, owner: &Owner) -> Option<RecordId> {
    RecordId::new(database, owner.home_page, owner.home_slot, owner.serial)
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

/// Tries `order` (newest first) and picks the copy to save.
fn save_from(
    context: &Context<'_>,
    reader: &mut Reader<'_>,
    id: RecordId,
    order: &[Candidate],
    older: Option<String>,
    findings: &mut Findings,
) -> Result<Outcome> {
    let catalogue = &context.collected.catalogue;
    let newest_as_of = catalogue.get(order[0].version).as_of;
    let mut first_failure: Option<Unreadable> = None;
    let mut found = None;
    for (rank, candidate) in order.iter().enumerate() {
        match extract::read_candidate(reader, catalogue, candidate)? {
            Ok(read) => {
                found = Some((rank, *candidate, read));
                break;
            }
            Err(why) => {
                first_failure.get_or_insert(why);
            }
        }
    }
    let failure_text = |failure: &Option<Unreadable>| {
        failure.as_ref().map_or(String::new(), |why| {
            format!(
                "its newest version (LSN {}) could not be read: {}",
                catalogue.get(order[0].version).lsn.0,
                why.detail
            )
        })
    };
    let open_is_current = open_covers(context.opened, id, newest_as_of);
    let Some((rank, candidate, read)) = found else {
        if let Some(outcome) = open_copy(context.opened, id) {
            let (node, len) = outcome;
            let older = (!open_is_current).then(|| (order[0], failure_text(&first_failure)));
            return Ok(Outcome::Saved {
                node,
                len,
                from_open: true,
                older,
            });
        }
        let why = first_failure.unwrap_or(Unreadable {
            kind: ProblemKind::Undecodable,
            file: crate::pager::PAGE_FILE_NAME,
            offset: 0,
            detail: "no version reads".to_string(),
        });
        return Ok(Outcome::Lost(why));
    };
    let as_of = catalogue.get(candidate.version).as_of;
    let older_reason = if rank > 0 {
        let same = if candidate.content == order[0].content {
            " (the version saved has the same slot, so its bytes are likely the same, but \
             that cannot be proved)"
        } else {
            ""
        };
        Some(format!("{}{same}", failure_text(&first_failure)))
    } else {
        older
    };
    if open_covers(context.opened, id, as_of) {
        let same = rank == 0
            && older_reason.is_none()
            && context
                .opened
                .and_then(|opened| opened.crcs.get(&id))
                .is_some_and(|crc| *crc == crc32fast::hash(&read.bytes));
        if !same && let Some((node, len)) = open_copy(context.opened, id) {
            if rank == 0 && older_reason.is_none() {
                self_check_note(findings, id, "the page walk read other bytes");
            }
            let older = (!open_is_current).then(|| (order[0], failure_text(&first_failure)));
            return Ok(Outcome::Saved {
                node,
                len,
                from_open: true,
                older,
            });
        }
    }
    Ok(Outcome::Saved {
        len: read.bytes.len(),
        node: read.node,
        from_open: false,
        older: older_reason.map(|reason| (candidate, reason)),
    })
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

/// Reports every live home slot of every handle page whose record was not saved.
fn report_missing(
    context: &Context<'_>,
    reader: &mut Reader<'_>,
    saved: &HashSet<RecordId>,
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
            let Some(id) = RecordId::new(context.database_id, page, slot, home.serial) else {
                continue;
            };
            if saved.contains(&id) || reported.contains(&id) {
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
