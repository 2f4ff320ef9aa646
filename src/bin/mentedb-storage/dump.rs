//! `mentedb-storage dump <dir>`: human-readable (or JSON) views of the meta state, the WAL's
//! frames, one page's slots and one record, read through a read-only open.

use crate::json::Json;
use crate::open_to_look;
use mentedb_storage::handle_page;
use mentedb_storage::slotted::{self, SlotContent};
use mentedb_storage::wal::{ScanStop, WalEntryType};
use mentedb_storage::{Error, MemoryNode, PageId, PageType, RecordId, StorageEngine};
use std::path::Path;
use std::process::ExitCode;

fn parse_record_id(text: &str) -> Result<RecordId, Error> {
    text.parse::<RecordId>().map_err(|error| {
        Error::InvalidArgument(format!(
            "{error}; a handle reads like 0a1b2c3d-00000004-0011-0000000000ff"
        ))
    })
}

/// Runs the command.
pub fn dump(
    dir: &Path,
    wal: bool,
    page: Option<u64>,
    record: Option<&str>,
    json: bool,
) -> Result<ExitCode, Error> {
    let record = record.map(parse_record_id).transpose()?;
    let engine = open_to_look(dir)?;
    let mut sections = Vec::new();
    if !wal && page.is_none() && record.is_none() {
        sections.push(dump_state(&engine, json));
    }
    if wal {
        sections.push(dump_wal(&engine, json)?);
    }
    if let Some(page) = page {
        sections.push(dump_page(&engine, PageId(page), json)?);
    }
    if let Some(record) = record {
        sections.push(dump_record(&engine, record, json)?);
    }
    for section in sections {
        println!("{section}");
    }
    Ok(ExitCode::SUCCESS)
}

fn dump_state(engine: &StorageEngine, json: bool) -> String {
    if json {
        return Json::object([
            ("pages", engine.page_count().into()),
            ("checkpoint_lsn", engine.checkpoint_lsn().0.into()),
            ("last_lsn", engine.last_lsn().0.into()),
            ("wal_bytes", engine.wal_bytes().into()),
        ])
        .to_string();
    }
    format!(
        "pages {}  checkpoint LSN {}  last LSN {}  WAL {} bytes\n\
         (use --wal, --page N or --record HANDLE for more)",
        engine.page_count(),
        engine.checkpoint_lsn().0,
        engine.last_lsn().0,
        engine.wal_bytes()
    )
}

fn kind_name(kind: WalEntryType) -> &'static str {
    match kind {
        WalEntryType::PageImage => "image",
        WalEntryType::PageDelta => "delta",
        WalEntryType::Commit => "commit",
    }
}

fn stop_text(stop: &ScanStop) -> String {
    match stop {
        ScanStop::End => "end of file".to_string(),
        ScanStop::Preallocated => "end of the log (preallocated zeros follow)".to_string(),
        ScanStop::TornTail(detail) => format!("torn tail (normal after a crash): {detail}"),
        ScanStop::Corruption { offset, detail } => {
            format!("CORRUPTION at offset {offset}: {detail}")
        }
    }
}

fn dump_wal(engine: &StorageEngine, json: bool) -> Result<String, Error> {
    let frames = engine.wal_frames()?;
    if json {
        let list = frames
            .frames
            .iter()
            .enumerate()
            .map(|(index, frame)| {
                Json::object([
                    ("offset", frame.offset.into()),
                    ("bytes", frame.total_len.into()),
                    ("lsn", frame.lsn.0.into()),
                    ("kind", kind_name(frame.kind).into()),
                    ("page", frame.page.0.into()),
                    ("committed", (index < frames.committed).into()),
                ])
            })
            .collect();
        return Ok(Json::object([
            (
                "salt",
                frames
                    .header
                    .map_or(Json::Null, |header| header.salt.into()),
            ),
            (
                "base_lsn",
                frames
                    .header
                    .map_or(Json::Null, |header| header.base_lsn.0.into()),
            ),
            ("frames", Json::Array(list)),
            ("committed", frames.committed.into()),
            ("stop", stop_text(&frames.stop).into()),
        ])
        .to_string());
    }
    let Some(header) = frames.header else {
        return Ok("WAL: not started (no header)".to_string());
    };
    let mut out = format!(
        "WAL salt {:#010x}, base LSN {}, {} frames ({} committed)\n",
        header.salt,
        header.base_lsn.0,
        frames.frames.len(),
        frames.committed
    );
    out.push_str("    offset    bytes        lsn  kind    page  state\n");
    for (index, frame) in frames.frames.iter().enumerate() {
        let state = if index < frames.committed {
            "committed"
        } else {
            "uncommitted"
        };
        let page = if frame.kind == WalEntryType::Commit {
            "-".to_string()
        } else {
            frame.page.0.to_string()
        };
        out.push_str(&format!(
            "{:>10} {:>8} {:>10}  {:<6} {:>5}  {state}\n",
            frame.offset,
            frame.total_len,
            frame.lsn.0,
            kind_name(frame.kind),
            page
        ));
    }
    out.push_str(&format!("scan stopped: {}", stop_text(&frames.stop)));
    Ok(out)
}

fn slot_text(content: SlotContent) -> (String, Json) {
    match content {
        SlotContent::Free => ("free".into(), Json::object([("kind", "free".into())])),
        SlotContent::Inline { offset, len } => (
            format!("inline {len} bytes at {offset}"),
            Json::object([
                ("kind", "inline".into()),
                ("offset", offset.into()),
                ("len", len.into()),
            ]),
        ),
        SlotContent::Overflow { first, len } => (
            format!("overflow {len} bytes from page {}", first.0),
            Json::object([
                ("kind", "overflow".into()),
                ("first_page", first.0.into()),
                ("len", len.into()),
            ]),
        ),
    }
}

/// The slots of a record page or handle page: (index, text, JSON).
fn page_slots(page: &mentedb_storage::Page) -> Vec<(u32, String, Json)> {
    let mut slots = Vec::new();
    match page.page_type() {
        Some(PageType::Data) => {
            for index in 0..slotted::slot_count(page) {
                match slotted::read_slot(page, index) {
                    Ok(slot) if slot.content == SlotContent::Free => {
                        slots.push((
                            index,
                            "free".to_string(),
                            Json::object([("kind", "free".into())]),
                        ));
                    }
                    Ok(slot) => {
                        let (text, value) = slot_text(slot.content);
                        let owner = format!(
                            "of home slot {} of page {}, serial {}",
                            slot.owner.home_slot, slot.owner.home_page.0, slot.owner.serial.0
                        );
                        let value = Json::object([
                            ("content", value),
                            ("home_page", slot.owner.home_page.0.into()),
                            ("home_slot", slot.owner.home_slot.into()),
                            ("serial", slot.owner.serial.0.into()),
                        ]);
                        slots.push((index, format!("{text} {owner}"), value));
                    }
                    Err(error) => {
                        let text = format!("unreadable: {}", error.0);
                        slots.push((index, text.clone(), Json::Str(text)));
                    }
                }
            }
        }
        Some(PageType::Handles) => {
            for index in 0..mentedb_storage::record_id::HOME_SLOTS_PER_PAGE {
                match handle_page::read(page, index) {
                    Ok(None) => {}
                    Ok(Some(home)) => slots.push((
                        index,
                        format!(
                            "serial {} -> page {} slot {}",
                            home.serial.0, home.record_page.0, home.record_slot
                        ),
                        Json::object([
                            ("serial", home.serial.0.into()),
                            ("record_page", home.record_page.0.into()),
                            ("record_slot", home.record_slot.into()),
                        ]),
                    )),
                    Err(error) => {
                        let text = format!("unreadable: {}", error.0);
                        slots.push((index, text.clone(), Json::Str(text)));
                    }
                }
            }
        }
        _ => {}
    }
    slots
}

fn dump_page(engine: &StorageEngine, id: PageId, json: bool) -> Result<String, Error> {
    let page = engine.read_page_image(id)?;
    let type_name = match page.page_type() {
        Some(kind) => format!("{kind:?}"),
        None => "unknown".to_string(),
    };
    let slots = page_slots(&page);
    if json {
        let slot_list = slots
            .into_iter()
            .map(|(index, _, value)| Json::object([("slot", index.into()), ("content", value)]))
            .collect();
        return Ok(Json::object([
            ("page", id.0.into()),
            ("type", type_name.into()),
            ("lsn", page.lsn().0.into()),
            ("next", page.next().0.into()),
            ("count", page.count().into()),
            ("slots", Json::Array(slot_list)),
        ])
        .to_string());
    }
    let mut out = format!(
        "page {}  type {type_name}  LSN {}  next {}  count {}\n",
        id.0,
        page.lsn().0,
        page.next().0,
        page.count()
    );
    for (index, text, _) in slots {
        out.push_str(&format!("  slot {index:>4}  {text}\n"));
    }
    Ok(out.trim_end().to_string())
}

fn dump_record(engine: &StorageEngine, id: RecordId, json: bool) -> Result<String, Error> {
    let node: MemoryNode = engine.load_memory(id)?;
    if json {
        return Ok(Json::object([
            ("handle", id.to_string().into()),
            ("id", node.id.to_string().into()),
            ("agent_id", node.agent_id.to_string().into()),
            ("memory_type", format!("{:?}", node.memory_type).into()),
            ("content", node.content.clone().into()),
            ("embedding_dimensions", node.embedding.len().into()),
            ("created_at", node.created_at.0.into()),
            ("accessed_at", node.accessed_at.0.into()),
            ("access_count", node.access_count.into()),
            ("salience", node.salience.into()),
            ("confidence", node.confidence.into()),
            (
                "tags",
                Json::Array(node.tags.iter().map(|tag| tag.as_str().into()).collect()),
            ),
            (
                "attributes",
                Json::Object(
                    node.attributes
                        .iter()
                        .map(|(key, value)| (key.clone(), value.as_str().into()))
                        .collect(),
                ),
            ),
        ])
        .to_string());
    }
    Ok(format!(
        "record {id}\n  id           {}\n  agent        {}\n  type         {:?}\n  \
         created      {}\n  accessed     {} ({} times)\n  salience     {}\n  \
         confidence   {}\n  tags         {}\n  embedding    {} dimensions\n  content      {}",
        node.id,
        node.agent_id,
        node.memory_type,
        node.created_at.0,
        node.accessed_at.0,
        node.access_count,
        node.salience,
        node.confidence,
        node.tags.join(", "),
        node.embedding.len(),
        node.content
    ))
}
