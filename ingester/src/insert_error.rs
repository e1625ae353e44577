//! Which failed inserts are worth retrying: a server that is down, slow or overloaded will
//! take the same rows later; rows it refuses as bad data never will, and retrying them
//! would stop the partition for good.

use clickhouse::error::Error;

/// What to do after an insert failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Try again later: transport, timeout, server overloaded or restarting.
    Transient,
    /// The rows themselves were refused; the same insert would fail again.
    Rejected,
}

/// ClickHouse error codes that mean "these rows cannot be stored" (see
/// `src/Common/ErrorCodes.cpp` in ClickHouse).
const DATA_ERRORS: &[u32] = &[
    6,   // CANNOT_PARSE_TEXT
    26,  // CANNOT_PARSE_QUOTED_STRING
    27,  // CANNOT_PARSE_INPUT_ASSERTION_FAILED
    38,  // CANNOT_PARSE_DATE
    41,  // CANNOT_PARSE_DATETIME
    53,  // TYPE_MISMATCH
    69,  // ARGUMENT_OUT_OF_BOUND
    70,  // CANNOT_CONVERT_TYPE
    72,  // CANNOT_PARSE_NUMBER
    117, // INCORRECT_DATA
    128, // TOO_LARGE_ARRAY_SIZE
    131, // TOO_LARGE_STRING_SIZE
    190, // SIZES_OF_ARRAYS_DOESNT_MATCH
    321, // VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE
    469, // VIOLATED_CONSTRAINT
];

/// The `Code: N` of a server error message, if it has one.
pub fn code(message: &str) -> Option<u32> {
    let rest = &message[message.find("Code: ")? + 6..];
    let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
    rest[..digits].parse().ok()
}

/// Classifies an insert error.
pub fn classify(error: &Error) -> Failure {
    match error {
        Error::BadResponse(message) => match code(message) {
            Some(c) if DATA_ERRORS.contains(&c) => Failure::Rejected,
            // TOO_MANY_PARTS is also "merges are behind", which passes; only the
            // per-insert partition limit of newer servers depends on the rows.
            Some(252) if message.contains("Too many partitions for single INSERT block") => Failure::Rejected,
            _ => Failure::Transient,
        },
        // Raised while serializing a row on our side: the row cannot be written as it is.
        Error::SequenceMustHaveLength
        | Error::DeserializeAnyNotSupported
        | Error::InvalidUtf8Encoding(_)
        | Error::InvalidTagEncoding(_)
        | Error::VariantDiscriminatorIsOutOfBound(_)
        | Error::Custom(_) => Failure::Rejected,
        _ => Failure::Transient,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_read_from_old_and_new_server_messages() {
        let old = "Code: 117, e.displayText() = DB::Exception: Unexpected NULL value, e.what() = DB::Exception";
        let new = "Code: 53. DB::Exception: Type mismatch in IN or VALUES section. (TYPE_MISMATCH) (version 24.3.1)";
        assert_eq!(code(old), Some(117));
        assert_eq!(code(new), Some(53));
        assert_eq!(code("connection refused"), None);
    }

    #[test]
    fn bad_data_is_rejected_and_everything_else_retried() {
        let bad = |m: &str| classify(&Error::BadResponse(m.into()));
        assert_eq!(bad("Code: 27, e.displayText() = DB::Exception: Cannot parse input"), Failure::Rejected);
        assert_eq!(bad("Code: 6. DB::Exception: Cannot parse string 'x' as UInt64"), Failure::Rejected);
        assert_eq!(bad("Code: 252. DB::Exception: Too many partitions for single INSERT block (more than 100)"), Failure::Rejected);
        assert_eq!(bad("Code: 252. DB::Exception: Too many parts (300). Merges are processing significantly slower than inserts"), Failure::Transient);
        assert_eq!(bad("Code: 241. DB::Exception: Memory limit (for query) exceeded"), Failure::Transient);
        assert_eq!(bad("Code: 60. DB::Exception: Table specaudit.assertions doesn't exist"), Failure::Transient);
        assert_eq!(bad("503 Service Unavailable"), Failure::Transient);
        assert_eq!(classify(&Error::TimedOut), Failure::Transient);
        assert_eq!(classify(&Error::Custom("bad".into())), Failure::Rejected);
    }
}
