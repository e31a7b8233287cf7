//! What a DynamoDB item can hold, checked on JSON before anything is written: a value the table
//! would refuse is the caller's mistake (a 400 naming the field), not an outage.
//!
//! The limits are DynamoDB's documented ones: 32 levels of nesting counting the top-level
//! attribute, numbers of at most 38 significant digits between 1E-130 and 9.9999…E+125 in
//! magnitude (or zero), 400 KB per item, 2048 bytes per partition key value.

use serde_json::Value;

/// Levels of nesting an item may have, the top-level attribute being level 1.
pub const MAX_NESTING_LEVELS: usize = 32;
/// Largest item, in bytes, as DynamoDB sizes items.
pub const MAX_ITEM_BYTES: usize = 400 * 1024;
/// Longest partition key value (a task id), in bytes.
pub const MAX_KEY_BYTES: usize = 2048;
/// Smallest non-zero magnitude and first magnitude out of range of a DynamoDB number.
const MIN_NUMBER: f64 = 1e-130;
const NUMBER_LIMIT: f64 = 1e126;

/// Why a JSON value cannot be stored as a DynamoDB attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unstorable {
    /// Arrays and objects nest deeper than `max` levels.
    TooDeep { max: usize },
    /// A number outside DynamoDB's range; the text is the number as given.
    NumberOutOfRange(String),
}

/// Checks a value stored `levels_above` levels below the item's top (0 for a top-level
/// attribute, 1 for a field of a top-level map, ...).
pub fn check_storable(value: &Value, levels_above: usize) -> Result<(), Unstorable> {
    // A scalar at level `MAX_NESTING_LEVELS` is the deepest allowed; containers sit above it.
    let max = MAX_NESTING_LEVELS - 1 - levels_above;
    check_value(value, 0, max)
}

fn check_value(value: &Value, depth: usize, max: usize) -> Result<(), Unstorable> {
    match value {
        Value::Number(number) => match number.as_f64() {
            // Integers (i64/u64) always fit; a float must be zero or within the range. serde_dynamo
            // writes the shortest decimal that reads back as the same f64, so comparing the f64
            // with the bounds' nearest f64 values gives the same answer as DynamoDB on that text.
            Some(f)
                if number.is_f64()
                    && f != 0.0
                    && !(MIN_NUMBER..NUMBER_LIMIT).contains(&f.abs()) =>
            {
                Err(Unstorable::NumberOutOfRange(number.to_string()))
            }
            _ => Ok(()),
        },
        Value::Array(items) => {
            if depth == max {
                return Err(Unstorable::TooDeep { max });
            }
            items
                .iter()
                .try_for_each(|item| check_value(item, depth + 1, max))
        }
        Value::Object(fields) => {
            if depth == max {
                return Err(Unstorable::TooDeep { max });
            }
            fields
                .values()
                .try_for_each(|field| check_value(field, depth + 1, max))
        }
        Value::Null | Value::Bool(_) | Value::String(_) => Ok(()),
    }
}

/// The size DynamoDB charges for a value, following its documented item-size rules: strings by
/// their UTF-8 bytes, numbers by one byte per two significant digits plus one, booleans and null
/// one byte, lists and maps three bytes plus their elements (and names) plus one byte each.
pub fn stored_size(value: &Value) -> usize {
    match value {
        Value::Null | Value::Bool(_) => 1,
        Value::String(text) => text.len(),
        Value::Number(number) => number_size(&number.to_string()),
        Value::Array(items) => {
            3 + items
                .iter()
                .map(|item| stored_size(item) + 1)
                .sum::<usize>()
        }
        Value::Object(fields) => {
            3 + fields
                .iter()
                .map(|(name, field)| name.len() + stored_size(field) + 1)
                .sum::<usize>()
        }
    }
}

/// The size of an item: its attributes' names and values (an item is not charged a map's overhead).
pub fn item_size(item: &Value) -> usize {
    match item {
        Value::Object(fields) => fields
            .iter()
            .map(|(name, field)| name.len() + stored_size(field))
            .sum(),
        other => stored_size(other),
    }
}

fn number_size(text: &str) -> usize {
    let mantissa = text
        .trim_start_matches('-')
        .split(['e', 'E'])
        .next()
        .unwrap_or_default();
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let significant = digits
        .trim_start_matches('0')
        .trim_end_matches('0')
        .len()
        .max(1);
    significant.div_ceil(2) + 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn nested(levels: usize) -> Value {
        (0..levels).fold(json!("leaf"), |inner, _| json!({ "n": inner }))
    }

    #[test]
    fn a_top_level_attribute_takes_31_containers_over_its_leaf() {
        assert_eq!(check_storable(&nested(31), 0), Ok(()));
        assert_eq!(
            check_storable(&nested(32), 0),
            Err(Unstorable::TooDeep { max: 31 })
        );
        assert_eq!(check_storable(&nested(30), 1), Ok(()));
        assert!(check_storable(&nested(31), 1).is_err());
        let lists = (0..32).fold(json!(1), |inner, _| json!([inner]));
        assert!(check_storable(&lists, 0).is_err());
    }

    #[test]
    fn numbers_outside_dynamodb_range_are_named() {
        for ok in [
            json!(0),
            json!(0.0),
            json!(-1.5),
            json!(u64::MAX),
            json!(i64::MIN),
        ] {
            assert_eq!(check_storable(&ok, 0), Ok(()), "{ok}");
        }
        // serde_json may read a decimal one unit in the last place off (its fast float parser):
        // the check is on the f64 that would be stored, so stay clear of the exact bounds here.
        for text in ["1.0001e-130", "-1.0001e-130", "9.999e125", "1e125"] {
            let value: Value = serde_json::from_str(text).unwrap();
            assert_eq!(check_storable(&value, 0), Ok(()), "{text}");
        }
        for text in [
            "1e200",
            "-1e200",
            "1e-200",
            "1e126",
            "1e-131",
            "123456789e130",
        ] {
            let value: Value = serde_json::from_str(&format!("{{\"a\": [{text}]}}")).unwrap();
            assert!(
                matches!(
                    check_storable(&value, 0),
                    Err(Unstorable::NumberOutOfRange(_))
                ),
                "{text}"
            );
        }
    }

    #[test]
    fn sizes_follow_the_documented_rules() {
        assert_eq!(stored_size(&json!("héllo")), 6);
        assert_eq!(stored_size(&json!(null)), 1);
        assert_eq!(stored_size(&json!(12345)), 4);
        assert_eq!(stored_size(&json!(1000)), 2);
        assert_eq!(stored_size(&json!([])), 3);
        assert_eq!(stored_size(&json!({"ab": true})), 3 + 2 + 1 + 1);
        assert_eq!(item_size(&json!({"id": "abc", "n": 1})), 2 + 3 + 1 + 2);
    }
}
