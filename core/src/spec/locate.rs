//! Places in a spec document: the dotted path a spec owner reads, and the YAML line it is
//! on. serde_yaml_ng (which builds the value) keeps no positions, so the text is parsed a
//! second time with saphyr, which does, but only when there is a problem to place.

use std::fmt;

use saphyr::{LoadableYamlNode, MarkedYaml, Scalar, YamlData};

/// One step from a node to a child.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Step {
    Key(String),
    Index(usize),
}

/// A place in the document, as steps from the root.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Place(pub(super) Vec<Step>);

impl Place {
    pub(super) fn key(&self, key: impl Into<String>) -> Place {
        let mut steps = self.0.clone();
        steps.push(Step::Key(key.into()));
        Place(steps)
    }

    /// The place a JSON pointer names in `root`: a segment is an index only where the
    /// value there is an array (a component may well be called `7`).
    pub(super) fn from_pointer(pointer: &str, root: &serde_json::Value) -> Place {
        let mut steps = Vec::new();
        let mut node = Some(root);
        for raw in pointer.split('/').skip(1) {
            let segment = raw.replace("~1", "/").replace("~0", "~");
            match node {
                Some(serde_json::Value::Array(items)) => match segment.parse::<usize>() {
                    Ok(i) => {
                        node = items.get(i);
                        steps.push(Step::Index(i));
                    }
                    Err(_) => {
                        node = None;
                        steps.push(Step::Key(segment));
                    }
                },
                Some(serde_json::Value::Object(map)) => {
                    node = map.get(&segment);
                    steps.push(Step::Key(segment));
                }
                _ => {
                    node = None;
                    steps.push(Step::Key(segment));
                }
            }
        }
        Place(steps)
    }
}

/// `components.frontend.requirements.tls.check.expr`, `alarms[0].when`.
impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, step) in self.0.iter().enumerate() {
            match step {
                Step::Key(key) if i == 0 => f.write_str(key)?,
                Step::Key(key) => write!(f, ".{key}")?,
                Step::Index(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

/// Finds the lines of places in one YAML (or JSON) text.
pub(super) struct Lines<'a> {
    root: Option<MarkedYaml<'a>>,
}

impl<'a> Lines<'a> {
    pub(super) fn new(text: &'a str) -> Lines<'a> {
        let root = MarkedYaml::load_from_str(text).ok().and_then(|mut docs| (!docs.is_empty()).then(|| docs.remove(0)));
        Lines { root }
    }

    /// The 1-based line of `place`: of its key where it is a mapping entry, else of the
    /// node. A place that does not exist (a missing field) gets the line of its deepest
    /// existing parent.
    pub(super) fn line(&self, place: &Place) -> Option<usize> {
        let mut node = self.root.as_ref()?;
        let mut line = node.span.start.line();
        for step in &place.0 {
            let next = match (&node.data, step) {
                (YamlData::Mapping(map), Step::Key(key)) => map
                    .iter()
                    .find(|(k, _)| scalar_text(k).as_deref() == Some(key.as_str()))
                    .map(|(k, v)| (k.span.start.line(), v)),
                (YamlData::Sequence(items), Step::Index(i)) => items.get(*i).map(|v| (v.span.start.line(), v)),
                _ => None,
            };
            match next {
                Some((at, child)) => {
                    line = at;
                    node = child;
                }
                None => break,
            }
        }
        Some(line)
    }
}

fn scalar_text(node: &MarkedYaml<'_>) -> Option<String> {
    match &node.data {
        YamlData::Value(Scalar::String(s)) => Some(s.to_string()),
        YamlData::Value(Scalar::Integer(i)) => Some(i.to_string()),
        YamlData::Value(Scalar::Boolean(b)) => Some(b.to_string()),
        YamlData::Value(Scalar::FloatingPoint(x)) => Some(x.to_string()),
        YamlData::Value(Scalar::Null) => Some("null".into()),
        YamlData::Representation(text, _, _) => Some(text.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_follow_keys_and_items() {
        let text = "a: 1\nb:\n  c:\n    - x\n    - y: 2\n";
        let lines = Lines::new(text);
        let place = |steps: Vec<Step>| lines.line(&Place(steps));
        assert_eq!(place(vec![Step::Key("b".into())]), Some(2));
        assert_eq!(place(vec![Step::Key("b".into()), Step::Key("c".into()), Step::Index(1)]), Some(5));
        // A missing child: the deepest existing parent.
        assert_eq!(place(vec![Step::Key("b".into()), Step::Key("nope".into())]), Some(2));
    }

    #[test]
    fn pointers_become_dotted_places() {
        let root = serde_json::json!({"alarms": [{"when": {}}], "components": {"7": {}}});
        assert_eq!(Place::from_pointer("/alarms/0/when", &root).to_string(), "alarms[0].when");
        assert_eq!(Place::from_pointer("/components/7", &root).to_string(), "components.7");
        assert_eq!(Place::from_pointer("/a~1b", &root).to_string(), "a/b");
    }
}

