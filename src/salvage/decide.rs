//! Which version of each record a salvage saves, and what it says about the rest.
//!
//! A record is known by its owner (home page, home slot, serial), which every record slot
//! names. Its versions are the candidates pass one found; the newest (by LSN) is tried
//! first. Two kinds of evidence say that a version is not the record's current state:
//! - **Its handle page.** The newest readable version of the record's handle page, if it
//!   is at least as new as the candidate and its home slot does not hold the serial (or the
//!   page is no longer a handle page), shows the record deleted: nothing is saved (a
//!   salvage never brings back a deleted record). If it holds the serial, the record is
//!   live.
//! - **Its record page.** If a newer version of the page the candidate is in exists, the
//!   record left that page (deleted, or moved to another page whose version was lost):
//!   the candidate is saved, as an older version, only if the handle page, as new as that
//!   newer version, shows the record live. If that newer version is unreadable, the
//!   candidate is saved as an older version unless a handle page says otherwise. If it is
//!   readable and no handle page is as new, nothing tells a delete from a move: the
//!   record is not saved and is reported ([`Plan::Uncertain`]).

use super::catalogue::{Catalogue, Reader};
use super::collect::Candidate;
use crate::error::Result;
use crate::handle_page::{self, HomeSlot};
use crate::page::{Lsn, PageId, PageType};
use crate::slotted::Owner;

/// What to do with one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Plan {
    /// Save the first of `order` that reads (newest first); `older` says why even the
    /// first is an older version than the record's current one, if it is.
    Save {
        order: Vec<Candidate>,
        older: Option<String>,
    },
    /// A handle page as of `as_of` shows the record deleted.
    Deleted { as_of: Lsn },
    /// Not saved: deleted or moved, nothing tells which.
    Uncertain {
        candidate: Candidate,
        detail: String,
    },
}

/// What the newest readable version of a record's handle page says about its home slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct HomeEvidence {
    /// The commit that version is the state of.
    pub as_of: Lsn,
    /// The home slot, if it is live.
    pub home: Option<HomeSlot>,
    /// True if a newer version of the handle page exists that is unreadable.
    pub newer_unreadable: bool,
}

/// What the newest readable version of `page` says about home slot `slot`; `None` if no
/// readable version of the page exists or its slot does not parse.
pub(super) fn home_evidence(
    reader: &mut Reader<'_>,
    catalogue: &Catalogue,
    page: PageId,
    slot: u32,
) -> Result<Option<HomeEvidence>> {
    let Some(index) = catalogue.newest_readable(page) else {
        return Ok(None);
    };
    let version = *catalogue.get(index);
    let newer_unreadable = catalogue.newest(page) != Some(index);
    let home = if version.kind == Some(PageType::Handles) {
        let Ok(loaded) = reader.load(catalogue, index)? else {
            return Ok(None);
        };
        match handle_page::read(&loaded, slot) {
            Ok(home) => home,
            Err(_) => return Ok(None),
        }
    } else {
        // No longer a handle page: every record it was home to was deleted.
        None
    };
    Ok(Some(HomeEvidence {
        as_of: version.as_of,
        home,
        newer_unreadable,
    }))
}

/// The plan for `owner`, whose candidates are `candidates` (not empty).
pub(super) fn plan(
    catalogue: &Catalogue,
    owner: Owner,
    candidates: &[Candidate],
    evidence: Option<HomeEvidence>,
) -> Plan {
    let mut order = candidates.to_vec();
    order.sort_by_key(|candidate| {
        let version = catalogue.get(candidate.version);
        std::cmp::Reverse((version.lsn, version.as_of))
    });
    let newest = order[0];
    let candidate_version = *catalogue.get(newest.version);
    let holds = evidence
        .and_then(|evidence| evidence.home)
        .is_some_and(|home| home.serial == owner.serial);
    if let Some(evidence) = evidence
        && !holds
        && evidence.as_of >= candidate_version.as_of
    {
        return Plan::Deleted {
            as_of: evidence.as_of,
        };
    }
    let page = candidate_version.page;
    let Some(page_newest) = catalogue.newest(page).map(|index| *catalogue.get(index)) else {
        return Plan::Save { order, older: None };
    };
    if page_newest.lsn <= candidate_version.lsn {
        return Plan::Save { order, older: None };
    }
    let live_since = evidence.filter(|evidence| holds && evidence.as_of >= page_newest.as_of);
    if let Some(evidence) = live_since {
        let moved_to = evidence.home.map_or(String::new(), |home| {
            format!(" (to {} slot {})", home.record_page, home.record_slot)
        });
        let older = if page_newest.kind.is_none() {
            format!(
                "the newest version of {page} (LSN {}) does not verify",
                page_newest.lsn.0
            )
        } else {
            format!("its handle shows it moved{moved_to}, and that copy was not found")
        };
        return Plan::Save {
            order,
            older: Some(older),
        };
    }
    if page_newest.kind.is_none() {
        return Plan::Save {
            order,
            older: Some(format!(
                "the newest version of {page} (LSN {}) does not verify, and no handle page as \
                 new says whether the record is still there",
                page_newest.lsn.0
            )),
        };
    }
    Plan::Uncertain {
        candidate: newest,
        detail: format!(
            "its newest copy is in {page} at LSN {}, but a newer version of that page (LSN {}) \
             no longer holds it, and no readable handle page as new says whether it was \
             deleted or moved: not saved",
            candidate_version.lsn.0, page_newest.lsn.0
        ),
    }
}
