use super::*;

/// A node shaped like the benchmark's: 384-dim embedding, ~300 chars, 3 tags.
fn full_node() -> MemoryNode {
    let mut node = MemoryNode::new(
        AgentId([7; 16]),
        MemoryType::Reflection,
        "The user prefers concise answers about Rust. ".repeat(7),
        (0..384).map(|index| index as f32 * 0.001 - 0.1).collect(),
    );
    node.access_count = 300;
    node.salience = 0.75;
    node.confidence = 0.9;
    node.tags = vec!["rust".into(), "preferences".into(), "ünïcode".into()];
    node.attributes.insert("source".into(), "chat".into());
    node.attributes.insert("session".into(), "42".into());
    node
}

/// The derived encoding the hand-written impls must match byte for byte.
#[derive(bincode::Encode)]
struct DerivedNode {
    id: MemoryId,
    agent_id: AgentId,
    memory_type: MemoryType,
    embedding: Vec<f32>,
    content: String,
    created_at: Timestamp,
    accessed_at: Timestamp,
    access_count: u64,
    salience: f32,
    confidence: f32,
    tags: Vec<String>,
    attributes: BTreeMap<String, String>,
}

impl From<&MemoryNode> for DerivedNode {
    fn from(node: &MemoryNode) -> Self {
        DerivedNode {
            id: node.id,
            agent_id: node.agent_id,
            memory_type: node.memory_type,
            embedding: node.embedding.clone(),
            content: node.content.clone(),
            created_at: node.created_at,
            accessed_at: node.accessed_at,
            access_count: node.access_count,
            salience: node.salience,
            confidence: node.confidence,
            tags: node.tags.clone(),
            attributes: node.attributes.clone(),
        }
    }
}

/// Version byte, both ids, memory type 0, then the given bytes.
fn record_with_tail(tail: &[u8]) -> Vec<u8> {
    let mut record = vec![RECORD_FORMAT_VERSION];
    record.extend_from_slice(&[0xaa; 32]);
    record.push(0);
    record.extend_from_slice(tail);
    record
}

/// A varint length of `length` as bincode writes a u64 (marker 253, then 8 bytes).
fn varint_u64(length: u64) -> Vec<u8> {
    let mut bytes = vec![253];
    bytes.extend_from_slice(&length.to_le_bytes());
    bytes
}

#[test]
fn full_node_round_trips() {
    let node = full_node();
    let record = encoded_record(&node).expect("encode");
    assert_eq!(decode_record(&record), Ok(node));
}

#[test]
fn node_with_empty_content_and_embedding_round_trips() {
    let node = MemoryNode::new(AgentId::new(), MemoryType::Working, String::new(), vec![]);
    let record = encoded_record(&node).expect("encode");
    assert_eq!(decode_record(&record), Ok(node));
}

#[test]
fn new_node_has_documented_defaults() {
    let node = MemoryNode::new(AgentId([1; 16]), MemoryType::Semantic, "x".into(), vec![]);
    assert_eq!(node.created_at, node.accessed_at);
    assert_eq!(node.access_count, 0);
    assert_eq!(node.salience, 0.5);
    assert_eq!(node.confidence, 1.0);
    assert!(node.tags.is_empty() && node.attributes.is_empty());
    let other = MemoryNode::new(AgentId([1; 16]), MemoryType::Semantic, "x".into(), vec![]);
    assert_ne!(node.id, other.id);
}

#[test]
fn record_body_is_the_derived_bincode_standard_encoding() {
    let node = full_node();
    let record = encoded_record(&node).expect("encode");
    let derived = bincode::encode_to_vec(DerivedNode::from(&node), config::standard())
        .expect("derived encode");
    assert_eq!(record[0], RECORD_FORMAT_VERSION);
    assert_eq!(&record[1..], &derived[..]);
    assert_eq!(&record[1..17], node.id.as_bytes());
    assert_eq!(&record[17..33], node.agent_id.as_bytes());
    assert_eq!(
        record[RECORD_FIXED_PREFIX_SIZE], 4,
        "Reflection is variant 4"
    );
}

#[test]
fn big_endian_config_matches_the_derived_encoding_too() {
    let node = full_node();
    let big_endian = config::standard().with_big_endian();
    let ours = bincode::encode_to_vec(&node, big_endian).expect("encode");
    let derived = bincode::encode_to_vec(DerivedNode::from(&node), big_endian).expect("derived");
    assert_eq!(ours, derived);
    let (decoded, size): (MemoryNode, usize) =
        bincode::decode_from_slice(&ours, big_endian).expect("decode");
    assert_eq!((decoded, size), (node, ours.len()));
}

#[test]
fn encode_record_appends_to_the_buffer() {
    let node = full_node();
    let mut out = vec![1, 2, 3];
    encode_record(&node, &mut out).expect("encode");
    assert_eq!(&out[..3], &[1, 2, 3]);
    assert_eq!(decode_record(&out[3..]), Ok(node));
}

#[test]
fn empty_record_is_rejected() {
    assert!(decode_record(&[]).is_err());
}

#[test]
fn wrong_version_byte_is_rejected() {
    let mut record = encoded_record(&full_node()).expect("encode");
    for version in [0, 2, 0xff] {
        record[0] = version;
        let error = decode_record(&record).expect_err("wrong version must fail");
        assert!(error.0.contains("format version"), "{error}");
    }
}

#[test]
fn every_truncated_prefix_is_rejected() {
    let record = encoded_record(&full_node()).expect("encode");
    for length in 0..record.len() {
        assert!(decode_record(&record[..length]).is_err(), "prefix {length}");
    }
}

#[test]
fn trailing_bytes_are_rejected() {
    let mut record = encoded_record(&full_node()).expect("encode");
    record.push(0);
    let error = decode_record(&record).expect_err("trailing byte must fail");
    assert!(error.0.contains("trailing"), "{error}");
}

#[test]
fn invalid_utf8_content_is_rejected() {
    let node = MemoryNode::new(AgentId([3; 16]), MemoryType::Episodic, "abc".into(), vec![]);
    let mut record = encoded_record(&node).expect("encode");
    // The content bytes follow the type byte, the embedding length 0 and content length 3.
    let content_offset = RECORD_FIXED_PREFIX_SIZE + 3;
    assert_eq!(&record[content_offset..content_offset + 3], b"abc");
    record[content_offset] = 0xff;
    assert!(decode_record(&record).is_err());
}

#[test]
fn unknown_memory_type_is_rejected() {
    let mut record = encoded_record(&full_node()).expect("encode");
    record[RECORD_FIXED_PREFIX_SIZE] = 5;
    assert!(decode_record(&record).is_err());
}

#[test]
fn hostile_embedding_length_is_rejected_without_allocating() {
    let record = record_with_tail(&varint_u64(1 << 60));
    assert!(decode_record(&record).is_err());
}

/// 60 MiB is under bincode's limit, so only the remaining-bytes check stands between
/// this 50-byte record and a 60 MiB buffer.
#[test]
fn hostile_content_length_is_rejected_without_allocating() {
    let mut tail = vec![0];
    tail.extend_from_slice(&varint_u64(60 << 20));
    tail.extend_from_slice(b"short");
    assert!(decode_record(&record_with_tail(&tail)).is_err());
    let mut tail = vec![0];
    tail.extend_from_slice(&varint_u64(u64::MAX));
    assert!(decode_record(&record_with_tail(&tail)).is_err());
}

/// Preallocating for 2^40 tags would ask for 24 TiB and abort the process.
#[test]
fn hostile_tag_and_attribute_counts_are_rejected_without_allocating() {
    let mut prefix = vec![0, 0]; // empty embedding, empty content
    prefix.extend_from_slice(&[0; 3]); // both timestamps, access count
    prefix.extend_from_slice(&[0; 8]); // salience, confidence
    let mut tags = prefix.clone();
    tags.extend_from_slice(&varint_u64(1 << 40));
    tags.extend_from_slice(&[1, b'a', 0]);
    assert!(decode_record(&record_with_tail(&tags)).is_err());
    let mut attributes = prefix;
    attributes.push(0);
    attributes.extend_from_slice(&varint_u64(u64::MAX));
    attributes.extend_from_slice(&[1, b'k', 1, b'v']);
    assert!(decode_record(&record_with_tail(&attributes)).is_err());
}

#[test]
fn readers_without_a_buffer_decode_through_the_chunked_path() {
    let node = full_node();
    let record = encoded_record(&node).expect("encode");
    let mut reader = &record[1..];
    let decoded: MemoryNode =
        bincode::decode_from_std_read(&mut reader, record_decode_config()).expect("decode");
    assert_eq!(decoded, node);
    let hostile = record_with_tail(&[0, 253, 0, 0, 0, 0, 0, 0, 0, 3]);
    let mut reader = &hostile[1..];
    let result: Result<MemoryNode, _> =
        bincode::decode_from_std_read(&mut reader, record_decode_config());
    assert!(result.is_err());
}

#[test]
fn mutated_records_never_panic() {
    let record = encoded_record(&full_node()).expect("encode");
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1);
        (state >> 33) as usize
    };
    for _ in 0..2_000 {
        let mut mutated = record.clone();
        for _ in 0..1 + next() % 4 {
            let offset = next() % mutated.len();
            mutated[offset] = next() as u8;
        }
        let _ = decode_record(&mutated);
    }
}

#[test]
fn content_of_70_mib_is_too_large() {
    let content = "a".repeat(70 << 20);
    let node = MemoryNode::new(AgentId([2; 16]), MemoryType::Semantic, content, vec![]);
    let mut out = vec![9];
    let error = encode_record(&node, &mut out).expect_err("70 MiB must not fit");
    assert!(matches!(
        error,
        Error::TooLarge { what: "memory record", size, limit }
            if size > 70 << 20 && limit == RECORD_SIZE_MAX as u64
    ));
    assert_eq!(out, vec![9], "a failed encode leaves the buffer as it was");
    assert!(encoded_record(&node).is_err());
}

/// Records whose size lower bound fits but whose varints push them over the limit are
/// caught by the exact check after encoding; one byte less fits exactly.
///
/// Regression: with bincode's limit set to `RECORD_SIZE_MAX`, the record exactly at the
/// limit encoded but failed to decode with `LimitExceeded`, because bincode counts 8
/// bytes for every varint, not the bytes it reads.
#[test]
fn record_size_limit_is_exact() {
    let mut node = MemoryNode::new(AgentId([4; 16]), MemoryType::Working, String::new(), vec![]);
    let overhead = encoded_record(&node).expect("encode").len();
    // A content length above 2^16 takes a 5-byte varint instead of the 1 byte above.
    let fitting = RECORD_SIZE_MAX - (overhead - 1 + 5);
    node.content = "b".repeat(fitting + 1);
    assert!(node.record_size_lower_bound() <= RECORD_SIZE_MAX);
    let mut out = Vec::new();
    let error = encode_record(&node, &mut out).expect_err("one byte over");
    assert!(matches!(error, Error::TooLarge { size, .. } if size == RECORD_SIZE_MAX as u64 + 1));
    assert!(out.is_empty());
    node.content.pop();
    let record = encoded_record(&node).expect("exactly at the limit");
    assert_eq!(record.len(), RECORD_SIZE_MAX);
    // Not assert_eq!: a failure would print 64 MiB of content.
    assert!(decode_record(&record) == Ok(node));
}
