//! The pieces of ClickHouse's RowBinary format the ingester writes by hand: the rollup's
//! blocks and the assertions' rows ([`crate::assertion_row`]).

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

/// A `String`: its length, then its bytes.
pub fn put_str(out: &mut Vec<u8>, s: &str) {
    put_bytes(out, s.as_bytes());
}

/// A `String` from bytes already checked to be UTF-8.
pub fn put_bytes(out: &mut Vec<u8>, s: &[u8]) {
    put_len(out, s.len());
    out.extend_from_slice(s);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_are_leb128() {
        for (len, bytes) in [(0usize, vec![0u8]), (127, vec![0x7f]), (128, vec![0x80, 0x01]), (300, vec![0xac, 0x02]), (1 << 21, vec![0x80, 0x80, 0x80, 0x01])] {
            let mut out = Vec::new();
            put_len(&mut out, len);
            assert_eq!(out, bytes, "{len}");
        }
    }
}
