//! Payload templates (`Parameters`, `ResultSelector`): JSON in which a field whose name ends in
//! `.$` takes the value its path names, at any depth (inside arrays too); every other value is
//! copied as written. Intrinsic functions (`States.Format(...)`) are refused at parse time.

use crate::path::Path;
use serde_json::{Map, Value};

/// A validated payload template.
#[derive(Debug, Clone, PartialEq)]
pub struct Template(Value);

impl Template {
    /// The template filled in from `input` and `context`; `Err` names the first path that does
    /// not resolve (Step Functions fails the execution with `States.Runtime` then).
    pub(crate) fn render(&self, input: &Value, context: &Value) -> Result<Value, String> {
        render(&self.0, input, context)
    }
}

fn render(template: &Value, input: &Value, context: &Value) -> Result<Value, String> {
    match template {
        Value::Object(fields) => {
            let mut out = Map::new();
            for (name, value) in fields {
                match (name.strip_suffix(".$"), value) {
                    (Some(key), Value::String(text)) => {
                        let path = Path::parse(text).expect("checked at parse");
                        let found = path.get(input, context).ok_or_else(|| {
                            format!("the JSONPath '{path}' specified for the field '{name}' could not be found in the input")
                        })?;
                        out.insert(key.to_string(), found.clone());
                    }
                    _ => {
                        out.insert(name.clone(), render(value, input, context)?);
                    }
                }
            }
            Ok(Value::Object(out))
        }
        Value::Array(items) => items
            .iter()
            .map(|item| render(item, input, context))
            .collect::<Result<_, _>>()
            .map(Value::Array),
        other => Ok(other.clone()),
    }
}

fn check(template: &Value) -> Result<(), String> {
    match template {
        Value::Object(fields) => {
            fields
                .iter()
                .try_for_each(|(name, value)| match (name.strip_suffix(".$"), value) {
                    (Some(_), Value::String(text)) if text.starts_with("States.") => Err(format!(
                        "the field '{name}' calls an intrinsic function, which is not supported"
                    )),
                    (Some(_), Value::String(text)) => Path::parse(text).map(drop),
                    (Some(_), _) => Err(format!("the field '{name}' must be a path (a string)")),
                    (None, value) => check(value),
                })
        }
        Value::Array(items) => items.iter().try_for_each(check),
        _ => Ok(()),
    }
}

impl<'de> serde::Deserialize<'de> for Template {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Template, D::Error> {
        let value = Value::deserialize(deserializer)?;
        if !value.is_object() {
            return Err(serde::de::Error::custom(
                "a payload template must be a JSON object",
            ));
        }
        check(&value).map_err(serde::de::Error::custom)?;
        Ok(Template(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn template(value: Value) -> Result<Template, serde_json::Error> {
        serde_json::from_value(value)
    }

    #[test]
    fn fills_paths_at_any_depth() {
        let t = template(json!({
            "id.$": "$.id",
            "static": {"x": 1},
            "nested": {"name.$": "$$.Execution.Name", "list": [{"v.$": "$.v[1]"}]}
        }))
        .unwrap();
        let out = t
            .render(
                &json!({"id": "a", "v": [0, 5]}),
                &json!({"Execution": {"Name": "n"}}),
            )
            .unwrap();
        assert_eq!(
            out,
            json!({"id": "a", "static": {"x": 1}, "nested": {"name": "n", "list": [{"v": 5}]}})
        );
    }

    #[test]
    fn a_missing_path_is_an_error() {
        let t = template(json!({"id.$": "$.id"})).unwrap();
        let error = t.render(&json!({}), &json!({})).unwrap_err();
        assert!(error.contains("'$.id'"), "{error}");
    }

    #[test]
    fn refuses_intrinsics_and_bad_paths() {
        assert!(template(json!({"a.$": "States.Format('{}', $.x)"})).is_err());
        assert!(template(json!({"a.$": "$.x[*]"})).is_err());
        assert!(template(json!({"a.$": 3})).is_err());
        assert!(template(json!([1])).is_err());
    }
}
