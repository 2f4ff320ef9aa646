//! Pass two of a salvage: reading one version of a record and checking it whole.
//!
//! An inline record is the bytes its slot names in its verified record page version. A
//! record in an overflow chain is the chain's pages, each the provable state of its page as
//! of the commit the record slot is from ([`Catalogue::state_at`]), each an overflow page
//! holding exactly the bytes the chain still needs, linked one to the next, ending where
//! the record's length says, with no page twice: every link is checked, and a chain that
//! fails anywhere is that record not saved. The bytes must then decode as a memory node.

use super::catalogue::{Catalogue, Reader};
use super::collect::Candidate;
use super::report::ProblemKind;
use crate::error::Result;
use crate::memory::{MemoryNode, RECORD_SIZE_MAX, decode_record};
use crate::page::{Lsn, PAGE_DATA_SIZE, PAGE_HEADER_SIZE, PageId, PageType};
use crate::pager::{FIRST_DATA_PAGE, PAGE_FILE_NAME};
use crate::slotted::{self, SlotContent};
use crate::space_map;
use std::collections::HashSet;

/// Why a version of a record could not be read: what kind of problem, where, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Unreadable {
    /// The kind of problem.
    pub kind: ProblemKind,
    /// The file it is in.
    pub file: &'static str,
    /// Byte offset in it.
    pub offset: u64,
    /// What was wrong.
    pub detail: String,
}

/// A record read whole: its bytes and the node they decode to.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Read {
    /// The record's bytes as stored.
    pub bytes: Vec<u8>,
    /// The node.
    pub node: MemoryNode,
}

/// Reads the version of a record `candidate` names. `Ok(Err)` says why it cannot be read;
/// `Err` is an I/O failure.
pub(super) fn read_candidate(
    reader: &mut Reader<'_>,
    catalogue: &Catalogue,
    candidate: &Candidate,
) -> Result<std::result::Result<Read, Unreadable>> {
    let version = *catalogue.get(candidate.version);
    let (file, offset) = catalogue.location(candidate.version);
    let page = match reader.load(catalogue, candidate.version)? {
        Ok(page) => page,
        Err(error) => {
            return Ok(Err(Unreadable {
                kind: ProblemKind::DamagedPage,
                file,
                offset,
                detail: format!("{} no longer reads back: {error}", version.page),
            }));
        }
    };
    let bytes = match candidate.content {
        SlotContent::Inline { offset: at, len } => {
            // The slot was read from this version in pass one; read it again from the
            // bytes now in hand (they were verified again when loaded).
            match slotted::read_slot(&page, candidate.slot) {
                Ok(slot) if slot.content == candidate.content => {
                    slotted::inline_bytes(&page, at, len).to_vec()
                }
                _ => {
                    return Ok(Err(Unreadable {
                        kind: ProblemKind::DamagedPage,
                        file,
                        offset,
                        detail: format!("slot {} of {} changed", candidate.slot, version.page),
                    }));
                }
            }
        }
        SlotContent::Overflow { first, len } => {
            match read_chain(reader, catalogue, first, len, version.as_of)? {
                Ok(bytes) => bytes,
                Err(error) => return Ok(Err(error)),
            }
        }
        SlotContent::Free => {
            return Ok(Err(Unreadable {
                kind: ProblemKind::Undecodable,
                file,
                offset,
                detail: format!("slot {} of {} is free", candidate.slot, version.page),
            }));
        }
    };
    Ok(match decode_record(&bytes) {
        Ok(node) => Ok(Read { bytes, node }),
        Err(error) => Err(Unreadable {
            kind: ProblemKind::Undecodable,
            file,
            offset,
            detail: format!(
                "the record in slot {} of {} (LSN {}) does not decode: {error}",
                candidate.slot, version.page, version.lsn.0
            ),
        }),
    })
}

/// The bytes of the overflow chain of `len` bytes from `first`, as of commit `at`.
fn read_chain(
    reader: &mut Reader<'_>,
    catalogue: &Catalogue,
    first: PageId,
    len: u32,
    at: Lsn,
) -> Result<std::result::Result<Vec<u8>, Unreadable>> {
    let broken = |page: PageId, detail: String| Unreadable {
        kind: ProblemKind::BrokenChain,
        file: PAGE_FILE_NAME,
        offset: page.offset(),
        detail: format!("overflow chain from {first} ({len} bytes): {detail}"),
    };
    if len as usize > RECORD_SIZE_MAX {
        return Ok(Err(broken(first, "longer than any record".to_string())));
    }
    let expected = (len as usize).div_ceil(PAGE_DATA_SIZE);
    let mut bytes = Vec::with_capacity(len as usize);
    let mut seen = HashSet::new();
    let mut current = first;
    while seen.len() < expected {
        if current < FIRST_DATA_PAGE || space_map::is_map_page(current) {
            return Ok(Err(broken(current, format!("ends early at {current}"))));
        }
        if !seen.insert(current) {
            return Ok(Err(broken(current, format!("comes back to {current}"))));
        }
        let index = match catalogue.state_at(current, at) {
            Ok(index) => index,
            Err(why) => return Ok(Err(broken(current, why))),
        };
        let (file, offset) = catalogue.location(index);
        let page = match reader.load(catalogue, index)? {
            Ok(page) => page,
            Err(error) => {
                return Ok(Err(Unreadable {
                    file,
                    offset,
                    ..broken(current, format!("{current} no longer reads back: {error}"))
                }));
            }
        };
        let expected_used = (len as usize - bytes.len()).min(PAGE_DATA_SIZE);
        let used = page.count() as usize;
        if page.page_type() != Some(PageType::Overflow) || used != expected_used {
            return Ok(Err(Unreadable {
                file,
                offset,
                ..broken(
                    current,
                    format!(
                        "{current} as of LSN {} is not the overflow page the chain expects",
                        at.0
                    ),
                )
            }));
        }
        bytes.extend_from_slice(&page.bytes()[PAGE_HEADER_SIZE..PAGE_HEADER_SIZE + used]);
        current = page.next();
    }
    if current.0 != 0 {
        return Ok(Err(broken(
            current,
            "is longer than the record".to_string(),
        )));
    }
    Ok(Ok(bytes))
}
