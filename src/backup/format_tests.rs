use super::*;

fn sample_page() -> Box<[u8; PAGE_SIZE]> {
    let mut page = Box::new([0u8; PAGE_SIZE]);
    for (index, byte) in page.iter_mut().enumerate().take(5_000) {
        *byte = (index % 251) as u8;
    }
    page
}

#[test]
fn header_round_trips_and_rejects_each_damaged_byte() {
    let header = BackupHeader {
        page_count: 42,
        source_lsn: Lsn(7),
    };
    let bytes = encode_header(&header);
    assert_eq!(decode_header(&bytes), Ok(header));
    for index in 0..HEADER_BYTES {
        let mut damaged = bytes;
        damaged[index] ^= 0x10;
        assert!(decode_header(&damaged).is_err(), "byte {index}");
    }
}

#[test]
fn header_with_impossible_page_count_is_refused() {
    for page_count in [0, 1, BACKUP_PAGES_MAX + 1, u64::MAX] {
        let bytes = encode_header(&BackupHeader {
            page_count,
            source_lsn: Lsn(1),
        });
        assert!(decode_header(&bytes).is_err(), "{page_count}");
    }
}

#[test]
fn chunk_round_trips_a_page() {
    let page = sample_page();
    let mut out = Vec::new();
    encode_chunk(9, &page, &mut out);
    assert!(out.len() < PAGE_SIZE / 4, "compressible page compresses");
    let mut header_bytes = [0u8; CHUNK_HEADER_BYTES];
    header_bytes.copy_from_slice(&out[..CHUNK_HEADER_BYTES]);
    let header = decode_chunk_header(&header_bytes).expect("header");
    assert_eq!(header.page, 9);
    let mut decoded = Box::new([0u8; PAGE_SIZE]);
    decode_chunk_body(&header, &out[CHUNK_HEADER_BYTES..], &mut decoded).expect("body");
    assert_eq!(decoded, page);
}

#[test]
fn damaged_chunk_body_is_refused() {
    let page = sample_page();
    let mut out = Vec::new();
    encode_chunk(3, &page, &mut out);
    let mut header_bytes = [0u8; CHUNK_HEADER_BYTES];
    header_bytes.copy_from_slice(&out[..CHUNK_HEADER_BYTES]);
    let header = decode_chunk_header(&header_bytes).expect("header");
    let mut decoded = Box::new([0u8; PAGE_SIZE]);
    let mut body = out[CHUNK_HEADER_BYTES..].to_vec();
    body[10] ^= 1;
    assert!(decode_chunk_body(&header, &body, &mut decoded).is_err());
    assert!(decode_chunk_body(&header, &body[1..], &mut decoded).is_err());
}

#[test]
fn chunk_header_with_oversized_length_is_refused_before_any_read() {
    let mut bytes = [0u8; CHUNK_HEADER_BYTES];
    bytes[..4].copy_from_slice(b"PAGE");
    bytes[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
    let crc = crc32fast::hash(&bytes[..20]);
    bytes[20..].copy_from_slice(&crc.to_le_bytes());
    assert!(decode_chunk_header(&bytes).is_err());
}

#[test]
fn valid_lz4_of_the_wrong_size_is_refused() {
    let body = lz4_flex::block::compress(&[7u8; 100]);
    let header = ChunkHeader {
        page: 2,
        stored_len: body.len() as u32,
        body_crc: crc32fast::hash(&body),
    };
    let mut decoded = Box::new([0u8; PAGE_SIZE]);
    assert!(decode_chunk_body(&header, &body, &mut decoded).is_err());
}

#[test]
fn manifest_round_trips_and_rejects_damage() {
    let manifest = Manifest {
        source_lsn: Lsn(99),
        page_count: 5,
        page_file_bytes: 5 * PAGE_SIZE as u64,
        page_file_crc: 0xdead_beef,
        meta_generation: 3,
        manifest_offset: 12_345,
    };
    let bytes = encode_manifest(&manifest);
    assert_eq!(decode_manifest(&bytes), Ok(manifest));
    for index in 0..MANIFEST_BYTES {
        let mut damaged = bytes;
        damaged[index] ^= 0x01;
        assert!(decode_manifest(&damaged).is_err(), "byte {index}");
    }
}
