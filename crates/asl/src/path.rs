//! The JSONPath subset Step Functions definitions use in practice: `$` (the state's input), `$$`
//! (the context object), then any number of `.field`, `['field']` and `[index]` steps. Wildcards,
//! filters, slices and recursive descent are refused at parse time: a definition that needs them
//! cannot run here faithfully.

use serde_json::{Map, Value};
use std::fmt;

#[derive(Debug, Clone, PartialEq)]
enum Step {
    Field(String),
    Index(usize),
}

/// A parsed path. Displays as the text it was parsed from.
#[derive(Debug, Clone, PartialEq)]
pub struct Path {
    text: String,
    context: bool,
    steps: Vec<Step>,
}

impl Path {
    /// `$`: the whole input.
    pub fn root() -> Path {
        Path {
            text: "$".into(),
            context: false,
            steps: Vec::new(),
        }
    }

    pub fn parse(text: &str) -> Result<Path, String> {
        let (context, mut rest) = if let Some(rest) = text.strip_prefix("$$") {
            (true, rest)
        } else if let Some(rest) = text.strip_prefix('$') {
            (false, rest)
        } else {
            return Err(format!("the path {text:?} does not start with $"));
        };
        let unsupported =
            || format!("the path {text:?} uses JSONPath beyond $.field, ['field'] and [index]");
        let mut steps = Vec::new();
        while !rest.is_empty() {
            if let Some(after) = rest.strip_prefix('.') {
                let end = after.find(['.', '[']).unwrap_or(after.len());
                let name = &after[..end];
                if name.is_empty() || name.contains(['*', '@', '?', '(', ')', ']', '\'', '"']) {
                    return Err(unsupported());
                }
                steps.push(Step::Field(name.to_string()));
                rest = &after[end..];
            } else if let Some(after) = rest.strip_prefix('[') {
                let end = after.find(']').ok_or_else(unsupported)?;
                let inside = &after[..end];
                let quoted = inside
                    .strip_prefix('\'')
                    .and_then(|name| name.strip_suffix('\''))
                    .filter(|name| !name.contains('\''));
                match (quoted, inside.parse::<usize>()) {
                    (Some(name), _) if !name.is_empty() => steps.push(Step::Field(name.into())),
                    (None, Ok(index)) if inside.bytes().all(|b| b.is_ascii_digit()) => {
                        steps.push(Step::Index(index))
                    }
                    _ => return Err(unsupported()),
                }
                rest = &after[end + 1..];
            } else {
                return Err(unsupported());
            }
        }
        Ok(Path {
            text: text.to_string(),
            context,
            steps,
        })
    }

    /// The node the path names in `input` (or in `context` for a `$$` path), if there is one.
    pub fn get<'a>(&self, input: &'a Value, context: &'a Value) -> Option<&'a Value> {
        let start = if self.context { context } else { input };
        self.steps.iter().try_fold(start, |node, step| match step {
            Step::Field(name) => node.as_object()?.get(name),
            Step::Index(index) => node.as_array()?.get(*index),
        })
    }

    /// Whether the path only names object fields of the input, as a ResultPath must.
    pub(crate) fn is_field_reference(&self) -> bool {
        !self.context && self.steps.iter().all(|step| matches!(step, Step::Field(_)))
    }

    /// `target` with `value` placed at this path, creating the objects on the way that are
    /// missing. `None` when a node on the way exists but is not an object. Only for paths that
    /// pass [`Path::is_field_reference`].
    pub(crate) fn put(&self, mut target: Value, value: Value) -> Option<Value> {
        let Some((last, parents)) = self.steps.split_last() else {
            return Some(value);
        };
        let mut node = &mut target;
        for step in parents {
            let Step::Field(name) = step else { return None };
            node = node
                .as_object_mut()?
                .entry(name.clone())
                .or_insert_with(|| Value::Object(Map::new()));
        }
        let Step::Field(name) = last else { return None };
        node.as_object_mut()?.insert(name.clone(), value);
        Some(target)
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl TryFrom<String> for Path {
    type Error = String;

    fn try_from(text: String) -> Result<Path, String> {
        Path::parse(&text)
    }
}

impl<'de> serde::Deserialize<'de> for Path {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Path, D::Error> {
        let text = String::deserialize(deserializer)?;
        Path::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_fields_indexes_and_the_context() {
        let input = json!({"a": {"b": [10, {"c d": true}]}});
        let context = json!({"Execution": {"Name": "n"}});
        let get = |text: &str| Path::parse(text).unwrap().get(&input, &context).cloned();
        assert_eq!(get("$"), Some(input.clone()));
        assert_eq!(get("$.a.b[0]"), Some(json!(10)));
        assert_eq!(get("$.a.b[1]['c d']"), Some(json!(true)));
        assert_eq!(get("$$.Execution.Name"), Some(json!("n")));
        assert_eq!(get("$.a.x"), None);
        assert_eq!(get("$.a.b[2]"), None);
        assert_eq!(get("$.a.b.c"), None);
    }

    #[test]
    fn refuses_what_it_cannot_evaluate() {
        for text in [
            "a.b",
            "$..a",
            "$.a[*]",
            "$.a[-1]",
            "$.a[0:2]",
            "$.a[?(@.b)]",
            "$.",
            "$a",
        ] {
            assert!(Path::parse(text).is_err(), "{text}");
        }
    }

    #[test]
    fn puts_values_creating_missing_objects() {
        let put = |text: &str, target: Value| Path::parse(text).unwrap().put(target, json!(1));
        assert_eq!(put("$", json!({"a": 0})), Some(json!(1)));
        assert_eq!(
            put("$.a", json!({"a": 0, "b": 2})),
            Some(json!({"a": 1, "b": 2}))
        );
        assert_eq!(put("$.x.y", json!({})), Some(json!({"x": {"y": 1}})));
        assert_eq!(put("$.a.y", json!({"a": 0})), None);
        assert_eq!(put("$.a", json!("text")), None);
    }
}
