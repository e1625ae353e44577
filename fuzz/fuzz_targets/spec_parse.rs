//! Spec text, YAML or JSON, through parsing and validation: the result is a spec or a list
//! of problems that each say what is wrong, never a panic. An accepted spec must be stable:
//! its canonical JSON (what is published) and its YAML (what `specctl get` shows) parse
//! back to the same spec with the same sha256.

#![no_main]

use libfuzzer_sys::fuzz_target;
use specaudit_core::spec::{Spec, SpecError};

fn explained(error: &SpecError) {
    assert!(!error.problems.is_empty(), "an error without problems");
    for problem in &error.problems {
        assert!(!problem.message.is_empty(), "a problem without a message at {:?}", problem.path);
    }
}

fn same(spec: &Spec, again: Result<Spec, SpecError>, form: &str) {
    match again {
        Ok(again) => {
            assert_eq!(&again, spec, "the {form} of an accepted spec parses to another spec");
            assert_eq!(again.sha256(), spec.sha256(), "the {form} changes the sha256");
        }
        Err(e) => panic!("the {form} of an accepted spec is refused: {e}\n{spec:?}"),
    }
}

fuzz_target!(|bytes: &[u8]| {
    let Ok(text) = std::str::from_utf8(bytes) else { return };
    match Spec::parse(text) {
        Ok(spec) => {
            let canonical = spec.canonical_json();
            same(&spec, Spec::from_json(&canonical), "canonical JSON");
            same(&spec, Spec::from_value(spec.to_value()), "value");
            same(&spec, Spec::parse(&spec.to_yaml()), "YAML");
        }
        Err(e) => explained(&e),
    }
    // A document that arrives as a value (the result of a JSON Patch) takes the other entry.
    if let Ok(value) = serde_json::from_str::<serde_json::Value>(text) {
        if let Err(e) = Spec::from_value(value) {
            explained(&e);
        }
    }
});
