//! The pieces of ClickHouse's RowBinary format the ingester writes by hand: the rollup's
//! blocks and the assertions' inserts (see [`crate::rows::AssertionRow::encode_insert`]).

/// An unsigned LEB128 length, as RowBinary prefixes strings and arrays.
pub fn put_len(out: &mut Vec<u8>, len: usize) {
    let mut len = len as u64;
    loop {
        let byte = (len & 0x7f) as u8;
        len >>= 7;
        if len == 0 {
            out.push(byte);
            break;
        }
        out.push(byte | 0x80);
    }
}

/// How many bytes [`put_len`] writes for `len`.
pub fn len_size(len: usize) -> usize {
    (usize::BITS - (len | 1).leading_zeros()).div_ceil(7) as usize
}

/// A `String`: its length, then its bytes.
pub fn put_str(out: &mut Vec<u8>, s: &str) {
    put_len(out, s.len());
    out.extend_from_slice(s.as_bytes());
}

/// An `Array(String)`.
pub fn put_strs<S: AsRef<str>>(out: &mut Vec<u8>, items: &[S]) {
    put_len(out, items.len());
    for s in items {
        put_str(out, s.as_ref());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_are_leb128_and_their_size_is_known_in_advance() {
        for (len, bytes) in [(0usize, vec![0u8]), (127, vec![0x7f]), (128, vec![0x80, 0x01]), (300, vec![0xac, 0x02]), (1 << 21, vec![0x80, 0x80, 0x80, 0x01])] {
            let mut out = Vec::new();
            put_len(&mut out, len);
            assert_eq!(out, bytes, "{len}");
            assert_eq!(len_size(len), bytes.len(), "{len}");
        }
    }
}
