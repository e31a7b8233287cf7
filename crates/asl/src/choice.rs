//! Choice rules. A rule is either a comparison (`Variable` plus exactly one operator) or a
//! boolean combination (`And`, `Or`, `Not`); top-level rules also name their `Next` state.
//!
//! Semantics, as in Step Functions: a `Variable` (or an operator's `...Path` operand) that does
//! not resolve fails the execution with `States.Runtime`, except under `IsPresent`; a comparison
//! whose operands are of the wrong type (a string under `NumericEquals`, a string that is not a
//! timestamp under `TimestampLessThan`, ...) is simply false.

use crate::path::Path;
use crate::timestamp;
use serde_json::{Map, Value};
use std::cmp::Ordering;

/// What a comparison looks at in its operand.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Kind {
    String,
    Numeric,
    Boolean,
    Timestamp,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Operand {
    Literal(Value),
    Path(Path),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Test {
    Compare {
        kind: Kind,
        /// The orderings of `variable` against the operand that make the test true.
        accept: &'static [Ordering],
        operand: Operand,
    },
    IsPresent(bool),
    IsNull(bool),
}

/// A condition of a Choice rule.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Condition {
    And(Vec<Condition>),
    Or(Vec<Condition>),
    Not(Box<Condition>),
    Test { variable: Path, test: Test },
}

const EQ: &[Ordering] = &[Ordering::Equal];
const LT: &[Ordering] = &[Ordering::Less];
const LE: &[Ordering] = &[Ordering::Less, Ordering::Equal];
const GT: &[Ordering] = &[Ordering::Greater];
const GE: &[Ordering] = &[Ordering::Greater, Ordering::Equal];

const OPERATORS: [(&str, Kind, &[Ordering]); 12] = [
    ("StringEquals", Kind::String, EQ),
    ("NumericEquals", Kind::Numeric, EQ),
    ("NumericLessThan", Kind::Numeric, LT),
    ("NumericLessThanEquals", Kind::Numeric, LE),
    ("NumericGreaterThan", Kind::Numeric, GT),
    ("NumericGreaterThanEquals", Kind::Numeric, GE),
    ("BooleanEquals", Kind::Boolean, EQ),
    ("TimestampEquals", Kind::Timestamp, EQ),
    ("TimestampLessThan", Kind::Timestamp, LT),
    ("TimestampLessThanEquals", Kind::Timestamp, LE),
    ("TimestampGreaterThan", Kind::Timestamp, GT),
    ("TimestampGreaterThanEquals", Kind::Timestamp, GE),
];

/// How `a` compares with `b` read as `kind`; `None` when either is not of that kind.
fn compare(kind: Kind, a: &Value, b: &Value) -> Option<Ordering> {
    match kind {
        Kind::String => Some(a.as_str()?.cmp(b.as_str()?)),
        Kind::Numeric => a.as_f64()?.partial_cmp(&b.as_f64()?),
        Kind::Boolean => Some(a.as_bool()?.cmp(&b.as_bool()?)),
        Kind::Timestamp => {
            Some(timestamp::parse(a.as_str()?)?.cmp(&timestamp::parse(b.as_str()?)?))
        }
    }
}

impl Condition {
    /// Whether the condition holds; `Err` with the message of a `States.Runtime` failure when a
    /// path it needs does not resolve.
    pub(crate) fn holds(&self, input: &Value, context: &Value) -> Result<bool, String> {
        match self {
            Condition::And(all) => {
                for condition in all {
                    if !condition.holds(input, context)? {
                        return Ok(false);
                    }
                }
                Ok(true)
            }
            Condition::Or(any) => {
                for condition in any {
                    if condition.holds(input, context)? {
                        return Ok(true);
                    }
                }
                Ok(false)
            }
            Condition::Not(condition) => Ok(!condition.holds(input, context)?),
            Condition::Test { variable, test } => {
                let value = variable.get(input, context);
                let missing = |path: &Path| {
                    format!("Invalid path '{path}': the choice state's condition path references an invalid value")
                };
                match test {
                    Test::IsPresent(expected) => Ok(value.is_some() == *expected),
                    Test::IsNull(expected) => {
                        let value = value.ok_or_else(|| missing(variable))?;
                        Ok(value.is_null() == *expected)
                    }
                    Test::Compare {
                        kind,
                        accept,
                        operand,
                    } => {
                        let value = value.ok_or_else(|| missing(variable))?;
                        let other = match operand {
                            Operand::Literal(literal) => literal,
                            Operand::Path(path) => {
                                path.get(input, context).ok_or_else(|| missing(path))?
                            }
                        };
                        Ok(compare(*kind, value, other).is_some_and(|o| accept.contains(&o)))
                    }
                }
            }
        }
    }

    fn from_map(mut rule: Map<String, Value>) -> Result<Condition, String> {
        for combinator in ["And", "Or", "Not"] {
            let Some(inner) = rule.remove(combinator) else {
                continue;
            };
            if let Some(extra) = rule.keys().next() {
                return Err(format!("{combinator} cannot be combined with {extra}"));
            }
            let nested = |value: Value| match value {
                Value::Object(map) => Condition::from_map(map),
                _ => Err(format!("{combinator} takes rule objects")),
            };
            return match (combinator, inner) {
                ("Not", inner) => Ok(Condition::Not(Box::new(nested(inner)?))),
                (_, Value::Array(items)) if !items.is_empty() => {
                    let all = items.into_iter().map(nested).collect::<Result<_, _>>()?;
                    Ok(if combinator == "And" {
                        Condition::And(all)
                    } else {
                        Condition::Or(all)
                    })
                }
                _ => Err(format!("{combinator} takes a non-empty list of rules")),
            };
        }
        let variable = match rule.remove("Variable") {
            Some(Value::String(text)) => Path::parse(&text)?,
            Some(_) => return Err("Variable must be a path (a string)".into()),
            None => return Err("a rule needs Variable, And, Or or Not".into()),
        };
        let mut operators = rule.into_iter();
        let (name, operand) = operators
            .next()
            .ok_or_else(|| format!("the rule on {variable} has no comparison operator"))?;
        if let Some((extra, _)) = operators.next() {
            return Err(format!(
                "the rule on {variable} has two operators: {name} and {extra}"
            ));
        }
        let test = match (name.as_str(), operand) {
            ("IsPresent", Value::Bool(expected)) => Test::IsPresent(expected),
            ("IsNull", Value::Bool(expected)) => Test::IsNull(expected),
            (name, operand) => {
                let (base, operand) = match name.strip_suffix("Path") {
                    Some(base) => match operand {
                        Value::String(text) => (base, Operand::Path(Path::parse(&text)?)),
                        _ => return Err(format!("{name} takes a path (a string)")),
                    },
                    None => (name, Operand::Literal(operand)),
                };
                let (_, kind, accept) = OPERATORS
                    .iter()
                    .find(|(operator, _, _)| *operator == base)
                    .ok_or_else(|| format!("unsupported or mistyped choice operator {name}"))?;
                if let Operand::Literal(literal) = &operand {
                    let typed = match kind {
                        Kind::String => literal.is_string(),
                        Kind::Numeric => literal.is_number(),
                        Kind::Boolean => literal.is_boolean(),
                        Kind::Timestamp => literal.as_str().and_then(timestamp::parse).is_some(),
                    };
                    if !typed {
                        return Err(format!(
                            "{name} has an operand of the wrong type: {literal}"
                        ));
                    }
                }
                Test::Compare {
                    kind: *kind,
                    accept,
                    operand,
                }
            }
        };
        Ok(Condition::Test { variable, test })
    }
}

/// A top-level rule of a Choice state: when `condition` holds, go to `next`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ChoiceRule {
    pub(crate) condition: Condition,
    pub(crate) next: String,
}

impl<'de> serde::Deserialize<'de> for ChoiceRule {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<ChoiceRule, D::Error> {
        let mut rule = Map::deserialize(deserializer)?;
        rule.remove("Comment");
        let next = match rule.remove("Next") {
            Some(Value::String(next)) => next,
            _ => {
                return Err(serde::de::Error::custom(
                    "every choice rule needs Next (a state name)",
                ))
            }
        };
        let condition = Condition::from_map(rule).map_err(serde::de::Error::custom)?;
        Ok(ChoiceRule { condition, next })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rule(value: Value) -> Result<ChoiceRule, serde_json::Error> {
        serde_json::from_value(value)
    }

    fn holds(value: Value, input: Value) -> Result<bool, String> {
        rule(value).unwrap().condition.holds(&input, &json!({}))
    }

    #[test]
    fn compares_by_type() {
        let input = json!({"s": "a", "n": 3, "b": true, "t": "2026-01-01T00:00:10Z", "m": 4});
        let cases = [
            (
                json!({"Variable": "$.s", "StringEquals": "a", "Next": "X"}),
                true,
            ),
            (
                json!({"Variable": "$.n", "StringEquals": "3", "Next": "X"}),
                false,
            ),
            (
                json!({"Variable": "$.n", "NumericEquals": 3.0, "Next": "X"}),
                true,
            ),
            (
                json!({"Variable": "$.n", "NumericLessThan": 3, "Next": "X"}),
                false,
            ),
            (
                json!({"Variable": "$.n", "NumericLessThanEquals": 3, "Next": "X"}),
                true,
            ),
            (
                json!({"Variable": "$.n", "NumericGreaterThanPath": "$.m", "Next": "X"}),
                false,
            ),
            (
                json!({"Variable": "$.m", "NumericGreaterThanEqualsPath": "$.n", "Next": "X"}),
                true,
            ),
            (
                json!({"Variable": "$.s", "NumericGreaterThan": 0, "Next": "X"}),
                false,
            ),
            (
                json!({"Variable": "$.b", "BooleanEquals": true, "Next": "X"}),
                true,
            ),
            (
                json!({"Variable": "$.t", "TimestampLessThan": "2026-01-01T00:00:11Z", "Next": "X"}),
                true,
            ),
            (
                json!({"Variable": "$.t", "TimestampEquals": "2026-01-01T01:00:10+01:00", "Next": "X"}),
                true,
            ),
            (
                json!({"Variable": "$.s", "TimestampGreaterThan": "2026-01-01T00:00:11Z", "Next": "X"}),
                false,
            ),
            (
                json!({"Variable": "$.x", "IsPresent": false, "Next": "X"}),
                true,
            ),
            (
                json!({"Variable": "$.s", "IsNull": false, "Next": "X"}),
                true,
            ),
            (
                json!({"And": [{"Variable": "$.b", "BooleanEquals": true}, {"Not": {"Variable": "$.s", "StringEquals": "b"}}], "Next": "X"}),
                true,
            ),
            (
                json!({"Or": [{"Variable": "$.b", "BooleanEquals": false}, {"Variable": "$.n", "NumericEquals": 4}], "Next": "X"}),
                false,
            ),
        ];
        for (case, expected) in cases {
            assert_eq!(holds(case.clone(), input.clone()), Ok(expected), "{case}");
        }
    }

    #[test]
    fn a_missing_variable_is_a_runtime_error() {
        let error = holds(
            json!({"Variable": "$.x", "StringEquals": "a", "Next": "X"}),
            json!({}),
        );
        assert!(error.unwrap_err().contains("$.x"));
        let error = holds(
            json!({"Variable": "$.a", "NumericEqualsPath": "$.y", "Next": "X"}),
            json!({"a": 1}),
        );
        assert!(error.unwrap_err().contains("$.y"));
    }

    #[test]
    fn refuses_malformed_rules() {
        for case in [
            json!({"Variable": "$.a", "StringEquals": "a"}),
            json!({"Variable": "$.a", "StringEquals": 1, "Next": "X"}),
            json!({"Variable": "$.a", "TimestampEquals": "yesterday", "Next": "X"}),
            json!({"Variable": "$.a", "StringMatches": "a*", "Next": "X"}),
            json!({"Variable": "$.a", "Next": "X"}),
            json!({"Variable": "$.a", "StringEquals": "a", "BooleanEquals": true, "Next": "X"}),
            json!({"And": [], "Next": "X"}),
            json!({"Not": {"Variable": "$.a", "IsNull": true}, "Variable": "$.a", "Next": "X"}),
        ] {
            assert!(rule(case.clone()).is_err(), "{case}");
        }
    }
}
