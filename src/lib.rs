//! MenteDB Storage Engine: page-based storage with WAL and buffer pool, for AI-agent
//! memory nodes, proven crash-safe by deterministic simulation.
//!
//! This crate implements the storage engine:
//! - **Page manager**: file-backed 64 KiB slotted pages (many nodes per page, overflow
//!   chains for large ones) with two alternating meta pages and free-list allocation
//! - **Write-ahead log (WAL)**: append-only, CRC-checked, LZ4-compressed frames with a salt;
//!   group commit shares one `fdatasync` between concurrent committers
//! - **Buffer pool**: fixed-capacity page cache with CLOCK eviction and pinned pages
//! - **Storage engine**: unified facade for memory node persistence
//! - **Filesystem trait**: every byte of I/O goes through [`vfs::Vfs`], so the same engine
//!   runs on real files ([`vfs::RealFs`]) and on a simulated, fault-injecting disk
//!
//! # Concurrency
//!
//! Multiple processes can open the same database directory simultaneously.
//! Writes are serialized via `flock(2)` on the WAL file; reads are lock-free.
//! In-memory state (page count, LSN counter, cached pages) is refreshed from the WAL under
//! the flock so no process acts on stale data.
//!
//! # Example
//!
//! ```
//! use mentedb_storage::{AgentId, MemoryNode, MemoryType, StorageEngine};
//!
//! let dir = std::env::temp_dir().join(format!("mentedb-doc-{}", std::process::id()));
//! let engine = StorageEngine::open(&dir)?;
//!
//! let node = MemoryNode::new(
//!     AgentId::new(),
//!     MemoryType::Episodic,
//!     "The user prefers Rust".to_string(),
//!     vec![0.1, 0.2, 0.3],
//! );
//!
//! let record_id = engine.store_memory(&node)?;
//! let loaded = engine.load_memory(record_id)?;
//! assert_eq!(loaded.content, "The user prefers Rust");
//!
//! engine.checkpoint()?;
//! engine.close()?;
//! # std::fs::remove_dir_all(&dir).ok();
//! # Ok::<(), mentedb_storage::Error>(())
//! ```

pub mod backup;
pub mod buffer;
pub mod engine;
pub mod error;
pub mod failpoints;
pub mod handle_page;
pub mod lineage;
pub mod memory;
pub mod page;
pub mod pager;
pub mod rare_paths;
pub mod record_id;
pub mod record_map;
pub mod salvage;
pub mod sched;
pub mod slotted;
pub mod space_map;
pub mod types;
pub mod vfs;
pub mod wal;

// Re-export key types at crate root for convenience.
pub use buffer::{BufferPool, BufferStats};
pub use engine::{CompactReport, Options, ScanIter, StorageEngine, SyncMode, WriteOp};
pub use error::{Error, Result};
pub use memory::{MemoryNode, MemoryType};
pub use page::{Lsn, PAGE_DATA_SIZE, PAGE_SIZE, Page, PageHeader, PageId, PageType};
pub use record_id::{DatabaseId, ParseRecordIdError, RecordId, Serial};
pub use record_map::RecordMapStats;
pub use types::{AgentId, MemoryId, Timestamp};
pub use wal::{Wal, WalEntry, WalEntryType};
