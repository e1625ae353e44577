//! Bytes from a topic, through every record decoder: decoding never panics, whatever the
//! bytes, and a record that decodes survives a round trip through the Avro encoding (what
//! the ingester relies on when it re-emits or stores it). Decoding into a reused
//! assertion, as the ingester does, gives what decoding afresh gives, whatever the
//! previous input left in it.

#![no_main]

use std::fmt::Debug;
use std::sync::{LazyLock, Mutex};

use libfuzzer_sys::fuzz_target;
use specaudit_core::codec::{Codec, Record};
use specaudit_core::record::{AlarmEvent, Assertion, Heartbeat, SpecVersion};

struct Codecs {
    assertion: Codec<Assertion>,
    heartbeat: Codec<Heartbeat>,
    spec_version: Codec<SpecVersion>,
    alarm_event: Codec<AlarmEvent>,
}

static CODECS: LazyLock<Codecs> = LazyLock::new(|| Codecs {
    assertion: Codec::new(),
    heartbeat: Codec::new(),
    spec_version: Codec::new(),
    alarm_event: Codec::new(),
});

/// Decodes `bytes`; when that succeeds, the Avro encoding of the record must decode to the
/// same record. (Not to the same bytes: apache-avro writes map entries, the labels, in hash
/// order, and Avro maps are unordered.)
fn round_trip<T: Record + Debug + PartialEq>(codec: &Codec<T>, bytes: &[u8]) {
    let Ok(record) = codec.decode(bytes) else { return };
    let encoded = codec.encode(&record).expect("a decoded record encodes");
    let again = codec
        .decode(&encoded)
        .unwrap_or_else(|e| panic!("the encoding of {record:?} does not decode: {e}"));
    // Debug text as the fallback: a NaN `value` is not equal to itself, but prints the same.
    assert!(
        again == record || format!("{again:?}") == format!("{record:?}"),
        "round trip changed the record:\n{record:?}\n{again:?}"
    );
}

/// The assertion every input is decoded into, kept from one input to the next.
static REUSED: LazyLock<Mutex<Assertion>> = LazyLock::new(|| Mutex::new(Assertion::default()));

fn in_place(codec: &Codec<Assertion>, bytes: &[u8]) {
    let mut into = REUSED.lock().unwrap_or_else(|e| e.into_inner());
    match (codec.decode(bytes), codec.decode_into(bytes, &mut into)) {
        (Ok(record), Ok(())) => assert_eq!(*into, record, "decoding in place gave another record"),
        (Err(fresh), Err(reused)) => assert_eq!(fresh, reused, "decoding in place failed otherwise"),
        (fresh, reused) => panic!("decoding afresh gave {fresh:?}, in place {reused:?}"),
    }
}

fuzz_target!(|bytes: &[u8]| {
    let codecs = &*CODECS;
    round_trip(&codecs.assertion, bytes);
    in_place(&codecs.assertion, bytes);
    round_trip(&codecs.heartbeat, bytes);
    round_trip(&codecs.spec_version, bytes);
    round_trip(&codecs.alarm_event, bytes);
});
