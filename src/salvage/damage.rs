//! Reporting the versions a salvage could not read: a loss if one is the newest version of
//! a page that belongs to the database, else a note.
//!
//! An unreadable version costs nothing if a newer version of its page was read, if its
//! page is a space map page (derived data) or a handle page (a page some record slot names
//! as its home: every live home slot points to a record slot that names it back, so the
//! records are found and named through their record slots), if its page lies past the end
//! of the database (every known page count is below it), or if the space map, as new as
//! it, shows the page free. Unreadable versions of one page that cost
//! nothing for the same reason are reported as one note (a damaged WAL frame can leave a
//! page's every later delta without its base).

use super::catalogue::{Catalogue, Reader, Version};
use super::collect::{Collected, SnapshotPoint};
use super::report::{Findings, ProblemKind};
use crate::error::Result;
use crate::page::{PageId, PageType};
use crate::space_map;
use std::collections::HashSet;

/// The end of the database, for telling damage past it from damage in it.
#[derive(Debug, Clone, Copy)]
pub(super) struct PageEnd {
    /// The snapshot `pages.db` is complete for.
    pub snapshot: SnapshotPoint,
    /// The page count of the newest commit in the WAL.
    pub newest_count: Option<u64>,
}

/// Notes of one page that cost nothing for one reason, reported together.
struct Group {
    page: PageId,
    why: &'static str,
    file: &'static str,
    offset: u64,
    detail: String,
    count: usize,
}

impl Group {
    fn report(self, findings: &mut Findings) {
        let detail = if self.count == 1 {
            format!("{}: {}; {}", self.page, self.detail, self.why)
        } else {
            format!(
                "{}: {} versions do not read (the first here: {}); {}",
                self.page, self.count, self.detail, self.why
            )
        };
        findings.note(ProblemKind::DamagedPage, self.file, self.offset, detail);
    }
}

/// Reports each unreadable version: lost if it is the newest of a page in the database
/// that the space map does not show free, else a note.
pub(super) fn report_damage(
    collected: &Collected,
    reader: &mut Reader<'_>,
    end: PageEnd,
    findings: &mut Findings,
) -> Result<()> {
    let catalogue = &collected.catalogue;
    let mut group: Option<Group> = None;
    let homes: HashSet<PageId> = collected
        .candidates
        .keys()
        .map(|owner| owner.home_page)
        .collect();
    for (index, detail) in &collected.damage {
        let version = *catalogue.get(*index);
        let (file, offset) = catalogue.location(*index);
        let page = version.page;
        if version.kind.is_some() {
            findings.lose(
                ProblemKind::Undecodable,
                file,
                offset,
                format!(
                    "{page} (LSN {}) verifies but {detail}: records in it may be lost",
                    version.lsn.0
                ),
            );
            continue;
        }
        let Some(why) = costless(catalogue, reader, end, &homes, *index)? else {
            findings.lose(
                ProblemKind::DamagedPage,
                file,
                offset,
                format!(
                    "{page}: {detail}; what it held is lost (records it held that a handle \
                     page names are listed as missing)"
                ),
            );
            continue;
        };
        if let Some(open) = &mut group
            && open.page == page
            && open.why == why
        {
            open.count += 1;
            continue;
        }
        if let Some(done) = group.replace(Group {
            page,
            why,
            file,
            offset,
            detail: detail.clone(),
            count: 1,
        }) {
            done.report(findings);
        }
    }
    if let Some(done) = group.take() {
        done.report(findings);
    }
    Ok(())
}

/// Why the unreadable version `index` costs nothing, if it does (see the module docs).
fn costless(
    catalogue: &Catalogue,
    reader: &mut Reader<'_>,
    end: PageEnd,
    homes: &HashSet<PageId>,
    index: u32,
) -> Result<Option<&'static str>> {
    let version = *catalogue.get(index);
    let page = version.page;
    Ok(if catalogue.newest(page) != Some(index) {
        Some("a newer version of the page was read: this costs nothing")
    } else if space_map::is_map_page(page) {
        Some("it is a space map page, which holds no records: nothing is lost")
    } else if homes.contains(&page) {
        Some(
            "it is a handle page (records name it as their home): its records are saved by \
             the handles their record slots name, nothing is lost",
        )
    } else if past_end(end, page) {
        Some("the page is past the end of the database: this costs nothing")
    } else if free_in_map(catalogue, reader, &version)? {
        Some("the space map shows the page free: this costs nothing")
    } else {
        None
    })
}

fn past_end(end: PageEnd, page: PageId) -> bool {
    let counts = [end.snapshot.page_count, end.newest_count];
    let known: Vec<u64> = counts.into_iter().flatten().collect();
    !known.is_empty() && known.iter().all(|count| page.0 >= *count)
}

/// True if the space map, as new as `version`, shows its page free.
fn free_in_map(catalogue: &Catalogue, reader: &mut Reader<'_>, version: &Version) -> Result<bool> {
    if version.page < crate::pager::FIRST_DATA_PAGE || space_map::is_map_page(version.page) {
        return Ok(false);
    }
    let (map_page, at) = space_map::locate(version.page);
    let Some(index) = catalogue.newest_readable(map_page) else {
        return Ok(false);
    };
    let map = *catalogue.get(index);
    if map.kind != Some(PageType::SpaceMap) || map.as_of < version.as_of {
        return Ok(false);
    }
    let Ok(loaded) = reader.load(catalogue, index)? else {
        return Ok(false);
    };
    Ok(loaded.bytes()[at] == space_map::FREE)
}
