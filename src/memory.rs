//! The memory node — the value the engine stores — and its record encoding.
//!
//! This module owns [`MemoryNode`], [`MemoryType`] and the bytes a node becomes inside a data
//! page: [`encode_record`] / [`encoded_record`] write a record, [`decode_record`] reads one
//! back. Both are pure functions over byte slices, so fuzz targets call them directly.
//!
//! # Record layout (format version 1)
//!
//! A record is one format-version byte followed by the bincode 2 encoding of the node with
//! `bincode::config::standard()` (little-endian, variable-length integers). The body is byte
//! for byte what `#[derive(bincode::Encode)]` would produce for the fields in this order; the
//! impls are written by hand only so that the embedding is copied in one pass instead of one
//! float at a time, and so that no length prefix is trusted before it is checked.
//!
//! ```text
//! offset  size          field
//! 0       1             format version, RECORD_FORMAT_VERSION = 1
//! 1       16            id, raw bytes
//! 17      16            agent_id, raw bytes
//! 33      varint        memory_type: variant index, 0 = Episodic … 4 = Reflection
//! …       varint n      embedding length in elements
//! …       4·n           embedding values, f32 little-endian
//! …       varint n      content length in bytes, then n bytes of UTF-8
//! …       varint        created_at, microseconds since the Unix epoch
//! …       varint        accessed_at, microseconds since the Unix epoch
//! …       varint        access_count
//! …       4             salience, f32 little-endian
//! …       4             confidence, f32 little-endian
//! …       varint n      tag count, then n × (varint length, UTF-8 bytes)
//! …       varint n      attribute count, then n × (key, value), each a varint length and
//!                       UTF-8 bytes, keys in ascending order
//! ```
//!
//! A varint (bincode's "standard" integer encoding) is one byte for values below 251;
//! otherwise a marker byte 251, 252 or 253 followed by the value as a little-endian u16, u32
//! or u64.
//!
//! # Promises
//!
//! - A whole record (version byte included) is at most [`RECORD_SIZE_MAX`] bytes; encoding a
//!   larger node returns [`Error::TooLarge`] and leaves the output buffer as it was.
//! - [`decode_record`] never panics, and returns an error for a wrong version byte, a
//!   truncated body, bytes left over after the body, invalid UTF-8 or an unknown memory type.
//! - Decoding never allocates on the word of a length prefix alone: every container length is
//!   checked against the bytes actually remaining in the record before memory is reserved, so
//!   a record of n bytes allocates O(n) memory however its prefixes lie. bincode's own
//!   `with_limit` is applied as well, as a backstop (see `RECORD_DECODE_COUNT_LIMIT`).
//! - Decoding is as lenient as bincode's: an over-long varint or a repeated attribute key
//!   (the last value wins) is accepted, so re-encoding a hand-made record may not give back
//!   the same bytes. Records this module writes always round-trip exactly.

use std::collections::BTreeMap;

use bincode::config::{self, Config, Endianness};
use bincode::de::read::Reader;
use bincode::de::{Decode, Decoder};
use bincode::enc::write::{SizeWriter, Writer};
use bincode::enc::{Encode, Encoder};
use bincode::error::{DecodeError as BincodeDecodeError, EncodeError};

use crate::error::{DecodeError, Error, Result};
use crate::types::{AgentId, MemoryId, Timestamp};

/// The version byte every record starts with.
pub const RECORD_FORMAT_VERSION: u8 = 1;

/// The largest record, version byte included, in bytes (64 MiB).
pub const RECORD_SIZE_MAX: usize = 64 * 1024 * 1024;

/// Bytes per embedding element in a record.
const EMBEDDING_ELEMENT_SIZE: usize = size_of::<f32>();

/// Bytes of a record before the first variable-length field: version byte and two ids.
const RECORD_FIXED_PREFIX_SIZE: usize = size_of::<u8>() + 2 * size_of::<[u8; 16]>();

/// Embedding bytes converted per write call when encoding (a stack buffer, not a heap one).
const EMBEDDING_ENCODE_CHUNK_ELEMENTS: usize = 256;

/// Bytes read per call by the fallback decoder for readers that cannot lend their buffer.
const DECODE_CHUNK_SIZE: usize = 4096;

/// bincode's decode limit counts the in-memory size of what it decodes, not encoded bytes:
/// every varint counts 8 however short it is. A body can therefore count up to 8 times its
/// length (a run of empty strings), so the limit that lets every record up to
/// `RECORD_SIZE_MAX` decode is 8 times that. The exact size check is ours, in
/// [`decode_record`].
const RECORD_DECODE_COUNT_LIMIT: usize = size_of::<u64>() * RECORD_SIZE_MAX;

const _: () = assert!(RECORD_FIXED_PREFIX_SIZE == 33);
const _: () = assert!(RECORD_SIZE_MAX <= u32::MAX as usize);
const _: () = assert!(RECORD_DECODE_COUNT_LIMIT / RECORD_SIZE_MAX == size_of::<u64>());

/// The bincode configuration records are written with.
fn record_encode_config() -> impl Config {
    config::standard()
}

/// The configuration records are read with: the same, plus bincode's allocation limit.
fn record_decode_config() -> impl Config {
    config::standard().with_limit::<RECORD_DECODE_COUNT_LIMIT>()
}

/// What kind of memory a node holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, bincode::Encode, bincode::Decode)]
pub enum MemoryType {
    /// Something that happened: an event or an interaction, tied to a time.
    Episodic,
    /// A fact or a piece of general knowledge, independent of when it was learned.
    Semantic,
    /// How to do something: a skill, a routine, a sequence of steps.
    Procedural,
    /// Short-lived context for the task at hand.
    Working,
    /// A conclusion the agent drew by thinking about other memories.
    Reflection,
}

/// One memory of one agent: its embedding, its text, and the scores used to rank it.
#[derive(Debug, Clone, PartialEq)]
pub struct MemoryNode {
    /// Identifies this memory, independently of where it is stored.
    pub id: MemoryId,
    /// The agent the memory belongs to.
    pub agent_id: AgentId,
    /// What kind of memory this is.
    pub memory_type: MemoryType,
    /// The vector embedding of the content used for similarity search.
    pub embedding: Vec<f32>,
    /// The memory's text.
    pub content: String,
    /// When the memory was created.
    pub created_at: Timestamp,
    /// When the memory was last read.
    pub accessed_at: Timestamp,
    /// How many times the memory has been read.
    pub access_count: u64,
    /// How important the memory is, from 0.0 to 1.0.
    pub salience: f32,
    /// How sure the agent is that the memory is true, from 0.0 to 1.0.
    pub confidence: f32,
    /// Free-form labels.
    pub tags: Vec<String>,
    /// Free-form key/value metadata, ordered by key.
    pub attributes: BTreeMap<String, String>,
}

impl MemoryNode {
    /// A new node with a fresh random id, both timestamps now, never accessed, salience 0.5,
    /// confidence 1.0, and no tags or attributes.
    pub fn new(
        agent_id: AgentId,
        memory_type: MemoryType,
        content: String,
        embedding: Vec<f32>,
    ) -> Self {
        let now = Timestamp::now();
        MemoryNode {
            id: MemoryId::new(),
            agent_id,
            memory_type,
            embedding,
            content,
            created_at: now,
            accessed_at: now,
            access_count: 0,
            salience: 0.5,
            confidence: 1.0,
            tags: Vec::new(),
            attributes: BTreeMap::new(),
        }
    }

    /// A lower bound of the record size, computed without encoding: the bytes of the
    /// embedding and of every string, plus one byte for each length prefix.
    pub(crate) fn record_size_lower_bound(&self) -> usize {
        let tags_size = self
            .tags
            .iter()
            .fold(0usize, |sum, tag| sum.saturating_add(tag.len() + 1));
        let attributes_size = self.attributes.iter().fold(0usize, |sum, (key, value)| {
            sum.saturating_add(key.len() + value.len() + 2)
        });
        RECORD_FIXED_PREFIX_SIZE
            .saturating_add(self.embedding.len().saturating_mul(EMBEDDING_ELEMENT_SIZE))
            .saturating_add(self.content.len())
            .saturating_add(tags_size)
            .saturating_add(attributes_size)
    }
}

impl Encode for MemoryNode {
    fn encode<E: Encoder>(&self, encoder: &mut E) -> Result<(), EncodeError> {
        self.id.encode(encoder)?;
        self.agent_id.encode(encoder)?;
        self.memory_type.encode(encoder)?;
        encode_f32_slice(&self.embedding, encoder)?;
        self.content.encode(encoder)?;
        self.created_at.encode(encoder)?;
        self.accessed_at.encode(encoder)?;
        self.access_count.encode(encoder)?;
        self.salience.encode(encoder)?;
        self.confidence.encode(encoder)?;
        self.tags.encode(encoder)?;
        self.attributes.encode(encoder)
    }
}

impl<Context> Decode<Context> for MemoryNode {
    fn decode<D: Decoder<Context = Context>>(decoder: &mut D) -> Result<Self, BincodeDecodeError> {
        Ok(MemoryNode {
            id: MemoryId::decode(decoder)?,
            agent_id: AgentId::decode(decoder)?,
            memory_type: MemoryType::decode(decoder)?,
            embedding: decode_f32_vec(decoder)?,
            content: decode_string(decoder)?,
            created_at: Timestamp::decode(decoder)?,
            accessed_at: Timestamp::decode(decoder)?,
            access_count: u64::decode(decoder)?,
            salience: f32::decode(decoder)?,
            confidence: f32::decode(decoder)?,
            tags: decode_string_vec(decoder)?,
            attributes: decode_string_map(decoder)?,
        })
    }
}

bincode::impl_borrow_decode!(MemoryNode);

/// Appends the record of `node` to `out`.
///
/// On error `out` is left as it was. Fails with [`Error::TooLarge`] if the record would be
/// larger than [`RECORD_SIZE_MAX`].
pub fn encode_record(node: &MemoryNode, out: &mut Vec<u8>) -> Result<()> {
    // Refuse obviously oversized nodes before copying megabytes only to throw them away.
    if node.record_size_lower_bound() > RECORD_SIZE_MAX {
        return Err(too_large(exact_record_size(node)?));
    }
    let start = out.len();
    out.push(RECORD_FORMAT_VERSION);
    let encoded =
        bincode::encode_into_writer(node, AppendWriter(&mut *out), record_encode_config());
    let size = out.len() - start;
    if let Err(error) = encoded {
        out.truncate(start);
        return Err(encode_failed(error));
    }
    if size > RECORD_SIZE_MAX {
        out.truncate(start);
        return Err(too_large(size));
    }
    debug_assert_eq!(out[start], RECORD_FORMAT_VERSION);
    Ok(())
}

/// The record of `node` in a new buffer; see [`encode_record`].
pub fn encoded_record(node: &MemoryNode) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    encode_record(node, &mut out)?;
    Ok(out)
}

/// Decodes one record. All of `bytes` must be the record: bytes left over are an error.
pub fn decode_record(bytes: &[u8]) -> std::result::Result<MemoryNode, DecodeError> {
    let Some((&version, body)) = bytes.split_first() else {
        return Err(DecodeError::new("memory record is empty"));
    };
    if version != RECORD_FORMAT_VERSION {
        return Err(DecodeError::new(format!(
            "memory record has format version {version}, expected {RECORD_FORMAT_VERSION}"
        )));
    }
    if bytes.len() > RECORD_SIZE_MAX {
        return Err(DecodeError::new(format!(
            "memory record is {} bytes, the limit is {RECORD_SIZE_MAX}",
            bytes.len()
        )));
    }
    let (node, body_size_read): (MemoryNode, usize) =
        bincode::decode_from_slice(body, record_decode_config())
            .map_err(|error| DecodeError::new(format!("memory record body: {error}")))?;
    if body_size_read != body.len() {
        return Err(DecodeError::new(format!(
            "memory record has {} trailing bytes after its {} byte body",
            body.len() - body_size_read,
            body_size_read
        )));
    }
    Ok(node)
}

/// Appends to a `Vec<u8>`; unlike bincode's `std::io::Write` adapter it cannot fail.
struct AppendWriter<'a>(&'a mut Vec<u8>);

impl Writer for AppendWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> Result<(), EncodeError> {
        self.0.extend_from_slice(bytes);
        Ok(())
    }
}

/// The exact size of the record of `node`, found by encoding it into a byte counter.
fn exact_record_size(node: &MemoryNode) -> Result<usize> {
    let mut encoder = bincode::enc::EncoderImpl::new(SizeWriter::default(), record_encode_config());
    node.encode(&mut encoder).map_err(encode_failed)?;
    Ok(size_of::<u8>() + encoder.into_writer().bytes_written)
}

fn too_large(size: usize) -> Error {
    Error::TooLarge {
        what: "memory record",
        size: size as u64,
        limit: RECORD_SIZE_MAX as u64,
    }
}

fn encode_failed(error: EncodeError) -> Error {
    Error::InvalidArgument(format!("memory node cannot be encoded: {error}"))
}

/// Writes `values` as bincode writes a `Vec<f32>`, converting a chunk at a time.
fn encode_f32_slice<E: Encoder>(values: &[f32], encoder: &mut E) -> Result<(), EncodeError> {
    (values.len() as u64).encode(encoder)?;
    let byte_order = ByteOrder::of(encoder.config());
    let mut buffer = [0u8; EMBEDDING_ENCODE_CHUNK_ELEMENTS * EMBEDDING_ELEMENT_SIZE];
    for chunk in values.chunks(EMBEDDING_ENCODE_CHUNK_ELEMENTS) {
        let (bytes, _) = buffer.as_chunks_mut::<EMBEDDING_ELEMENT_SIZE>();
        for (slot, value) in bytes.iter_mut().zip(chunk) {
            *slot = f32_to_bytes(*value, byte_order);
        }
        encoder
            .writer()
            .write(&buffer[..chunk.len() * EMBEDDING_ELEMENT_SIZE])?;
    }
    Ok(())
}

/// The byte order of floats under a bincode configuration (bincode's own `Endianness` is
/// neither `Copy` nor exhaustive; anything but big-endian is little-endian, as in bincode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ByteOrder {
    Little,
    Big,
}

impl ByteOrder {
    fn of<C: Config>(config: &C) -> Self {
        match config.endianness() {
            Endianness::Big => ByteOrder::Big,
            _ => ByteOrder::Little,
        }
    }
}

fn f32_to_bytes(value: f32, byte_order: ByteOrder) -> [u8; EMBEDDING_ELEMENT_SIZE] {
    match byte_order {
        ByteOrder::Little => value.to_le_bytes(),
        ByteOrder::Big => value.to_be_bytes(),
    }
}

/// Reads a container length prefix (a u64, as bincode writes it).
fn decode_length<D: Decoder>(decoder: &mut D) -> Result<usize, BincodeDecodeError> {
    let length = u64::decode(decoder)?;
    usize::try_from(length).map_err(|_| BincodeDecodeError::OutsideUsizeRange(length))
}

/// Whether the reader holds at least `size` more bytes. Readers that cannot lend their
/// buffer answer `false`; the callers then read in bounded chunks instead of preallocating.
fn bytes_available<D: Decoder>(decoder: &mut D, size: usize) -> bool {
    decoder.reader().peek_read(size).is_some()
}

/// Reads a `Vec<f32>` as bincode writes it, converting straight from the input slice.
fn decode_f32_vec<D: Decoder>(decoder: &mut D) -> Result<Vec<f32>, BincodeDecodeError> {
    let length = decode_length(decoder)?;
    let size = length
        .checked_mul(EMBEDDING_ELEMENT_SIZE)
        .ok_or(BincodeDecodeError::LimitExceeded)?;
    decoder.claim_bytes_read(size)?;
    let byte_order = ByteOrder::of(decoder.config());
    if let Some(bytes) = decoder.reader().peek_read(size) {
        let (elements, _) = bytes.as_chunks::<EMBEDDING_ELEMENT_SIZE>();
        let values = f32s_from_bytes(elements, byte_order);
        decoder.reader().consume(size);
        debug_assert_eq!(values.len(), length);
        return Ok(values);
    }
    let bytes = read_bytes_chunked(decoder.reader(), size)?;
    let (elements, _) = bytes.as_chunks::<EMBEDDING_ELEMENT_SIZE>();
    Ok(f32s_from_bytes(elements, byte_order))
}

/// Converts stored elements to floats, choosing the byte order once (a choice inside the
/// loop kept it from compiling to a plain copy; it was 17 % of a warm load).
fn f32s_from_bytes(elements: &[[u8; EMBEDDING_ELEMENT_SIZE]], byte_order: ByteOrder) -> Vec<f32> {
    match byte_order {
        ByteOrder::Little => elements
            .iter()
            .map(|bytes| f32::from_le_bytes(*bytes))
            .collect(),
        ByteOrder::Big => elements
            .iter()
            .map(|bytes| f32::from_be_bytes(*bytes))
            .collect(),
    }
}

/// Reads a `String` as bincode writes it, validating UTF-8 in place and copying once.
fn decode_string<D: Decoder>(decoder: &mut D) -> Result<String, BincodeDecodeError> {
    let size = decode_length(decoder)?;
    decoder.claim_bytes_read(size)?;
    if let Some(bytes) = decoder.reader().peek_read(size) {
        let text = std::str::from_utf8(bytes)
            .map_err(|inner| BincodeDecodeError::Utf8 { inner })?
            .to_owned();
        decoder.reader().consume(size);
        return Ok(text);
    }
    let bytes = read_bytes_chunked(decoder.reader(), size)?;
    String::from_utf8(bytes).map_err(|error| BincodeDecodeError::Utf8 {
        inner: error.utf8_error(),
    })
}

/// Reads `size` bytes without trusting `size`: memory grows only as bytes actually arrive.
fn read_bytes_chunked<R: Reader>(
    reader: &mut R,
    size: usize,
) -> Result<Vec<u8>, BincodeDecodeError> {
    let mut bytes = Vec::with_capacity(size.min(DECODE_CHUNK_SIZE));
    let mut chunk = [0u8; DECODE_CHUNK_SIZE];
    while bytes.len() < size {
        let chunk_size = (size - bytes.len()).min(DECODE_CHUNK_SIZE);
        reader.read(&mut chunk[..chunk_size])?;
        bytes.extend_from_slice(&chunk[..chunk_size]);
    }
    Ok(bytes)
}

/// Reads a `Vec<String>`. Every element takes at least one byte, so a count larger than the
/// bytes left is a lie, and capacity is reserved only when the input can back it.
fn decode_string_vec<D: Decoder>(decoder: &mut D) -> Result<Vec<String>, BincodeDecodeError> {
    let length = decode_length(decoder)?;
    let capacity = if bytes_available(decoder, length) {
        length
    } else {
        0
    };
    let mut strings = Vec::with_capacity(capacity);
    for _ in 0..length {
        strings.push(decode_string(decoder)?);
    }
    Ok(strings)
}

/// Reads a `BTreeMap<String, String>`; each entry consumes at least two bytes or fails, so
/// the loop is bounded by the input whatever the count claims.
fn decode_string_map<D: Decoder>(
    decoder: &mut D,
) -> Result<BTreeMap<String, String>, BincodeDecodeError> {
    let length = decode_length(decoder)?;
    let mut map = BTreeMap::new();
    for _ in 0..length {
        let key = decode_string(decoder)?;
        let value = decode_string(decoder)?;
        map.insert(key, value);
    }
    Ok(map)
}

#[cfg(test)]
#[path = "memory_tests.rs"]
mod tests;
