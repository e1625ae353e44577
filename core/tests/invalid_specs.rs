//! The corpus of invalid specs in `tests/invalid-specs/`: each file must be refused, and
//! one of the problems must name the place (and line, and say what) its header expects:
//!
//! ```yaml
//! # place: components.frontend.requirements.tls.chekc
//! # line: 10
//! # message: unknown field `chekc`
//! ```
//!
//! JSON files carry the same header in a `.expect` file beside them.

use std::path::Path;

use specaudit_core::spec::Spec;

struct Expectation {
    place: String,
    line: usize,
    message: String,
}

fn expectation(header: &str) -> Expectation {
    let field = |name: &str| {
        header
            .lines()
            .find_map(|l| l.strip_prefix(&format!("# {name}:")))
            .map(|v| v.trim().to_owned())
            .unwrap_or_else(|| panic!("header has no {name}"))
    };
    Expectation { place: field("place"), line: field("line").parse().expect("line is a number"), message: field("message") }
}

#[test]
fn every_invalid_spec_is_refused_naming_its_place_and_line() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/invalid-specs");
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    let mut checked = 0;
    let mut failures = Vec::new();
    for path in files.iter().filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "json")) {
        let text = std::fs::read_to_string(path).unwrap();
        let header = if path.extension().is_some_and(|e| e == "json") {
            std::fs::read_to_string(path.with_extension("expect")).unwrap()
        } else {
            text.clone()
        };
        let want = expectation(&header);
        checked += 1;
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let Err(error) = Spec::parse(&text) else {
            failures.push(format!("{name}: accepted"));
            continue;
        };
        let hit = error.problems.iter().any(|p| {
            p.path == want.place && p.line == Some(want.line) && p.message.contains(&want.message)
        });
        if !hit {
            failures.push(format!(
                "{name}: wanted {} at line {} saying {:?}, got:\n{error}",
                want.place, want.line, want.message
            ));
        }
    }
    assert!(checked >= 25, "the corpus has only {checked} specs");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
