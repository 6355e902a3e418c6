//! Bag-of-cells serialisation in the cell order TON's reference SDKs use.
//!
//! A BOC lists its cells in some topological order; any order is valid, but the bytes (and so
//! a byte-for-byte comparison with other wallets' output) depend on it. tonlib-core writes
//! cells breadth-first; tonweb, tonsdk and pytoniq write them depth-first in pre-order, a cell
//! reached again being moved after its latest parent. We follow the latter so the BOCs we
//! broadcast are identical to what those SDKs produce (tests/vectors).

use std::collections::HashMap;

use base64::Engine;
use tonlib_core::cell::{ArcCell, BagOfCells, Cell, TonCellError};
use tonlib_core::TonHash;

const BOC_MAGIC: [u8; 4] = [0xb5, 0xee, 0x9c, 0x72];
const CRC32C: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);

/// Serialises a single-root BOC (no index, no cache bits), with a CRC32C when asked.
pub fn serialize(root: &Cell, with_crc32: bool) -> Result<Vec<u8>, TonCellError> {
    if contains_exotic(root) {
        // Exotic cells carry a level mask tonlib-core does not expose; let it serialise them.
        return BagOfCells::from_root(root.clone()).serialize(with_crc32);
    }
    let order = dfs_order(root);
    let index: HashMap<TonHash, usize> = order
        .iter()
        .enumerate()
        .map(|(i, c)| (c.cell_hash(), i))
        .collect();
    let ref_bytes = byte_len(order.len() as u64);
    let mut payload = Vec::new();
    for cell in &order {
        let bits = cell.bit_len();
        let data_bytes = bits.div_ceil(8);
        // d1: reference count (ordinary cells of level 0); d2: floor + ceil of data bytes.
        payload.push(cell.references().len() as u8);
        payload.push((bits / 8 + data_bytes) as u8);
        let data = &cell.data()[..data_bytes];
        payload.extend_from_slice(data);
        if bits % 8 != 0 {
            // Completion tag: a 1 bit right after the data, then zeros.
            let last = payload
                .last_mut()
                .expect("data_bytes > 0 when bits % 8 != 0");
            *last |= 1 << (7 - bits % 8);
            *last &= !((1u8 << (7 - bits % 8)) - 1);
        }
        for r in cell.references() {
            push_be(&mut payload, index[&r.cell_hash()] as u64, ref_bytes);
        }
    }
    let offset_bytes = byte_len(payload.len() as u64);

    let mut out = Vec::with_capacity(payload.len() + 32);
    out.extend_from_slice(&BOC_MAGIC);
    out.push(((with_crc32 as u8) << 6) | ref_bytes as u8);
    out.push(offset_bytes as u8);
    push_be(&mut out, order.len() as u64, ref_bytes); // cells
    push_be(&mut out, 1, ref_bytes); // roots
    push_be(&mut out, 0, ref_bytes); // absent
    push_be(&mut out, payload.len() as u64, offset_bytes);
    push_be(&mut out, 0, ref_bytes); // root index
    out.extend_from_slice(&payload);
    if with_crc32 {
        let crc = CRC32C.checksum(&out);
        out.extend_from_slice(&crc.to_le_bytes());
    }
    Ok(out)
}

/// Standard base64 (padded) of a BOC with CRC32C: the form toncenter and TON Connect use.
pub fn to_base64(root: &Cell) -> Result<String, TonCellError> {
    Ok(base64::engine::general_purpose::STANDARD.encode(serialize(root, true)?))
}

fn contains_exotic(cell: &Cell) -> bool {
    cell.is_exotic() || cell.references().iter().any(|r| contains_exotic(r))
}

/// Pre-order DFS; a cell met again is moved to the end, after the parent just visited, so
/// that every reference points forward.
fn dfs_order(root: &Cell) -> Vec<&Cell> {
    // Slots in visiting order; a moved cell leaves a hole behind.
    let mut slots: Vec<Option<&Cell>> = Vec::new();
    let mut position: HashMap<TonHash, usize> = HashMap::new();
    fn visit<'a>(
        cell: &'a Cell,
        slots: &mut Vec<Option<&'a Cell>>,
        position: &mut HashMap<TonHash, usize>,
    ) {
        let hash = cell.cell_hash();
        if let Some(old) = position.get(&hash) {
            slots[*old] = None;
        }
        position.insert(hash, slots.len());
        slots.push(Some(cell));
        for r in cell.references() {
            visit(r.as_ref(), slots, position);
        }
    }
    visit(root, &mut slots, &mut position);
    slots.into_iter().flatten().collect()
}

fn byte_len(n: u64) -> usize {
    (64 - n.leading_zeros() as usize).div_ceil(8).max(1)
}

fn push_be(out: &mut Vec<u8>, value: u64, bytes: usize) {
    out.extend_from_slice(&value.to_be_bytes()[8 - bytes..]);
}

/// Parses a BOC and returns its single root.
pub fn parse_single_root(bytes: &[u8]) -> Result<ArcCell, TonCellError> {
    BagOfCells::parse(bytes)?.single_root()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonlib_core::cell::CellBuilder;

    #[test]
    fn round_trips_through_tonlib_parser() {
        let leaf = CellBuilder::new()
            .store_u8(5, 0b10101)
            .unwrap()
            .build()
            .unwrap()
            .to_arc();
        let mid = CellBuilder::new()
            .store_u32(32, 7)
            .unwrap()
            .store_reference(&leaf)
            .unwrap()
            .build()
            .unwrap()
            .to_arc();
        // `leaf` is shared: reached from the root and from `mid`.
        let root = CellBuilder::new()
            .store_bit(true)
            .unwrap()
            .store_reference(&leaf)
            .unwrap()
            .store_reference(&mid)
            .unwrap()
            .build()
            .unwrap();
        let bytes = serialize(&root, true).unwrap();
        let parsed = parse_single_root(&bytes).unwrap();
        assert_eq!(parsed.cell_hash(), root.cell_hash());
        // root, mid, leaf: the shared leaf moved after `mid`.
        assert_eq!(bytes[6], 3);
        let no_crc = serialize(&root, false).unwrap();
        assert_eq!(bytes[4], 0x41, "crc flag and 1-byte references");
        assert_eq!(no_crc[4], 0x01);
        assert_eq!(&no_crc[5..], &bytes[5..bytes.len() - 4]);
    }
}
