//! Validation of a spec document. Every problem names its place as a dotted path from the
//! document root (`components.frontend.requirements.tls.check.expr`), so a spec owner can
//! act on it; unknown fields are refused, so a typo cannot silently drop a check.

use std::fmt;

use super::{Spec, API_VERSION};
use crate::check::CompiledCheck;

/// One mistake in a spec, and where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted path from the document root; empty for the document itself.
    pub path: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Why a spec was refused: every problem found, each with its place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError {
    pub problems: Vec<Problem>,
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid spec")?;
        for problem in &self.problems {
            write!(f, "\n  {problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for SpecError {}

impl SpecError {
    fn one(path: impl Into<String>, message: impl Into<String>) -> Self {
        SpecError { problems: vec![Problem { path: path.into(), message: message.into() }] }
    }
}

/// Deserializes the document, naming the path of the first structural mistake.
pub(super) fn parse(text: &str) -> Result<Spec, SpecError> {
    let de = serde_yaml_ng::Deserializer::from_str(text);
    serde_path_to_error::deserialize::<_, Spec>(de).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        let message = e.into_inner().to_string();
        // The YAML error repeats the parent's path in front of its message; ours is finer.
        let message = match message.split_once(": ") {
            Some((prefix, rest)) if !prefix.contains(' ') => rest.to_owned(),
            _ => message,
        };
        SpecError::one(path, message)
    })
}

fn legal_name(name: &str, allow_dots: bool) -> bool {
    let mut chars = name.chars();
    let Some(first) = chars.next() else { return false };
    (first.is_ascii_lowercase() || first.is_ascii_digit())
        && name.len() <= 200
        && chars.all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_' || (allow_dots && c == '.')
        })
}

/// Checks what the types cannot: names, the version, and that every check compiles.
pub(super) fn check(spec: &Spec) -> Result<(), SpecError> {
    let mut problems = Vec::new();
    let mut problem = |path: String, message: String| problems.push(Problem { path, message });

    if spec.api_version != API_VERSION {
        problem("apiVersion".into(), format!("must be {API_VERSION:?}, found {:?}", spec.api_version));
    }
    if !legal_name(&spec.spec, true) {
        problem("spec".into(), format!("{:?} is not a legal spec name ([a-z0-9][a-z0-9._-]*)", spec.spec));
    }
    for (path, component) in &spec.components {
        let at = format!("components.{path}");
        if !path.split('.').all(|segment| legal_name(segment, false)) {
            problem(
                at.clone(),
                format!("{path:?} is not a legal component path (dot-separated segments of [a-z0-9][a-z0-9_-]*)"),
            );
        }
        for (name, requirement) in &component.requirements {
            let at = format!("{at}.requirements.{name}");
            if !legal_name(name, true) {
                problem(at.clone(), format!("{name:?} is not a legal requirement name ([a-z0-9][a-z0-9._-]*)"));
            }
            if let Some(tasks) = &requirement.tasks {
                if tasks.is_empty() {
                    problem(format!("{at}.tasks"), "must list at least one task kind, or be left out".into());
                }
                for (i, task) in tasks.iter().enumerate() {
                    if task.is_empty() {
                        problem(format!("{at}.tasks[{i}]"), "must not be empty".into());
                    }
                }
            }
            if let Some(check) = &requirement.check {
                if let Err(e) = CompiledCheck::compile(check) {
                    problem(format!("{at}.check.{}", e.field), e.message);
                }
            }
        }
    }
    for (i, alarm) in spec.alarms.iter().enumerate() {
        if alarm.when.is_empty() {
            problem(format!("alarms[{i}].when"), "must name a condition".into());
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(SpecError { problems })
    }
}
