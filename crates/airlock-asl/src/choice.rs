//! Choice rules: comparison operators and their boolean combinations.

use std::cmp::Ordering;

use chrono::{DateTime, FixedOffset};
use serde_json::{Map, Value};

use crate::error::{StateError, names};
use crate::path::{JsonPath, Scope, compare_numbers};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    String,
    Numeric,
    Boolean,
    Timestamp,
    Matches,
    IsNull,
    IsPresent,
    IsNumeric,
    IsString,
    IsBoolean,
    IsTimestamp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Relation {
    Equals,
    LessThan,
    GreaterThan,
    LessThanEquals,
    GreaterThanEquals,
}

impl Relation {
    fn holds(self, ordering: Ordering) -> bool {
        match self {
            Self::Equals => ordering.is_eq(),
            Self::LessThan => ordering.is_lt(),
            Self::GreaterThan => ordering.is_gt(),
            Self::LessThanEquals => ordering.is_le(),
            Self::GreaterThanEquals => ordering.is_ge(),
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) enum Operand {
    Literal(Value),
    Path(JsonPath),
}

#[derive(Debug, Clone)]
pub(crate) enum Rule {
    And(Vec<Rule>),
    Or(Vec<Rule>),
    Not(Box<Rule>),
    Compare {
        variable: JsonPath,
        operator: String,
        kind: Kind,
        relation: Relation,
        operand: Operand,
    },
    /// JSONata: a `Condition` expression that must evaluate to a boolean.
    Condition(crate::jsonata::Template),
}

/// Every comparison operator name, with what it compares and how.
fn operator(name: &str) -> Option<(Kind, Relation, bool)> {
    let (base, is_path) = match name.strip_suffix("Path") {
        Some(base) => (base, true),
        None => (name, false),
    };
    let relation_of = |rest: &str| match rest {
        "Equals" => Some(Relation::Equals),
        "LessThan" => Some(Relation::LessThan),
        "GreaterThan" => Some(Relation::GreaterThan),
        "LessThanEquals" => Some(Relation::LessThanEquals),
        "GreaterThanEquals" => Some(Relation::GreaterThanEquals),
        _ => None,
    };
    let simple = |kind| Some((kind, Relation::Equals, is_path));
    match base {
        "StringMatches" if !is_path => simple(Kind::Matches),
        "BooleanEquals" => simple(Kind::Boolean),
        "IsNull" if !is_path => simple(Kind::IsNull),
        "IsPresent" if !is_path => simple(Kind::IsPresent),
        "IsNumeric" if !is_path => simple(Kind::IsNumeric),
        "IsString" if !is_path => simple(Kind::IsString),
        "IsBoolean" if !is_path => simple(Kind::IsBoolean),
        "IsTimestamp" if !is_path => simple(Kind::IsTimestamp),
        _ => {
            let (kind, rest) = if let Some(rest) = base.strip_prefix("String") {
                (Kind::String, rest)
            } else if let Some(rest) = base.strip_prefix("Numeric") {
                (Kind::Numeric, rest)
            } else if let Some(rest) = base.strip_prefix("Timestamp") {
                (Kind::Timestamp, rest)
            } else {
                return None;
            };
            relation_of(rest).map(|r| (kind, r, is_path))
        }
    }
}

/// Parses an ASL timestamp (RFC 3339, e.g. `2016-03-14T01:59:00Z`).
pub(crate) fn parse_timestamp(text: &str) -> Option<DateTime<FixedOffset>> {
    // Step Functions requires an uppercase 'T' separator and an explicit offset.
    if !text.contains('T') {
        return None;
    }
    DateTime::parse_from_rfc3339(text).ok()
}

/// `StringMatches`: `*` matches any run of characters; `\*` and `\\` are literals.
fn wildcard_matches(pattern: &str, text: &str) -> bool {
    #[derive(Clone, Copy, PartialEq)]
    enum Token {
        Any,
        Char(char),
    }
    let mut tokens = Vec::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => tokens.push(Token::Char(chars.next().unwrap_or('\\'))),
            '*' => tokens.push(Token::Any),
            c => tokens.push(Token::Char(c)),
        }
    }
    let text: Vec<char> = text.chars().collect();
    // Greedy matching with backtracking to the last '*'.
    let (mut t, mut p) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match tokens.get(p) {
            Some(Token::Char(c)) if *c == text[t] => {
                t += 1;
                p += 1;
            }
            Some(Token::Any) => {
                star = Some((p, t));
                p += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    tokens[p..].iter().all(|t| *t == Token::Any)
}

impl Rule {
    /// Parses a JSONata choice rule: `Condition` (a `{% … %}` expression or a boolean),
    /// with `Next`, and optionally `Assign`, `Output` and `Comment`.
    pub(crate) fn parse_condition(value: &Value) -> Result<Self, (String, String)> {
        let Value::Object(map) = value else {
            return Err(("Choices".into(), "a choice rule must be an object".into()));
        };
        for key in map.keys() {
            if !matches!(
                key.as_str(),
                "Condition" | "Next" | "Assign" | "Output" | "Comment"
            ) {
                return Err((
                    key.clone(),
                    "unknown field for a JSONata choice rule (Condition, Next, Assign, Output, Comment)"
                        .into(),
                ));
            }
        }
        match map.get("Condition") {
            Some(condition @ (Value::String(_) | Value::Bool(_))) => {
                crate::jsonata::Template::compile(condition)
                    .map(Self::Condition)
                    .map_err(|(_, message)| ("Condition".to_owned(), message))
            }
            Some(_) => Err((
                "Condition".into(),
                "must be a {% %} expression or a boolean".into(),
            )),
            None => Err((
                "Condition".into(),
                "is required in a JSONata choice rule".into(),
            )),
        }
    }

    /// Parses a rule object. `top_level` rules carry `Next` (checked by the caller);
    /// nested rules must not. Errors are `(field, message)`.
    pub(crate) fn parse(value: &Value, top_level: bool) -> Result<Self, (String, String)> {
        let Value::Object(map) = value else {
            return Err(("Choices".into(), "a choice rule must be an object".into()));
        };
        let rule_fields: Vec<&String> = map
            .keys()
            .filter(|k| !matches!(k.as_str(), "Next" | "Comment" | "Variable" | "Assign"))
            .collect();
        if !top_level && map.contains_key("Next") {
            return Err((
                "Next".into(),
                "only top-level choice rules may have 'Next'".into(),
            ));
        }
        if !top_level && map.contains_key("Assign") {
            return Err((
                "Assign".into(),
                "only top-level choice rules may have 'Assign'".into(),
            ));
        }
        if map.contains_key("Condition") {
            return Err((
                "Condition".into(),
                "'Condition' is JSONata; only JSONPath choice rules are supported".into(),
            ));
        }
        if rule_fields.len() != 1 {
            let listed: Vec<&str> = rule_fields.iter().map(|s| s.as_str()).collect();
            return Err((
                "Choices".into(),
                format!(
                    "a choice rule needs exactly one operator (And, Or, Not or a comparison), found {listed:?}"
                ),
            ));
        }
        let op = rule_fields[0].as_str();
        match op {
            "And" | "Or" => {
                if map.contains_key("Variable") {
                    return Err((
                        "Variable".into(),
                        format!("'{op}' rules take no 'Variable'"),
                    ));
                }
                let Some(Value::Array(items)) = map.get(op) else {
                    return Err((op.into(), "must be a non-empty array of rules".into()));
                };
                if items.is_empty() {
                    return Err((op.into(), "must be a non-empty array of rules".into()));
                }
                let rules = items
                    .iter()
                    .map(|v| Self::parse(v, false))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(if op == "And" {
                    Self::And(rules)
                } else {
                    Self::Or(rules)
                })
            }
            "Not" => {
                if map.contains_key("Variable") {
                    return Err(("Variable".into(), "'Not' rules take no 'Variable'".into()));
                }
                let inner = map
                    .get("Not")
                    .filter(|v| v.is_object())
                    .ok_or_else(|| ("Not".to_owned(), "must be a single rule object".to_owned()))?;
                Ok(Self::Not(Box::new(Self::parse(inner, false)?)))
            }
            _ => Self::parse_comparison(map, op),
        }
    }

    fn parse_comparison(map: &Map<String, Value>, op: &str) -> Result<Self, (String, String)> {
        let (kind, relation, is_path) = operator(op)
            .ok_or_else(|| (op.to_owned(), format!("unknown choice operator '{op}'")))?;
        let variable = match map.get("Variable") {
            Some(Value::String(text)) => {
                JsonPath::parse(text).map_err(|e| ("Variable".to_owned(), e.0))?
            }
            Some(_) => return Err(("Variable".into(), "must be a path string".into())),
            None => return Err(("Variable".into(), format!("'{op}' needs a 'Variable'"))),
        };
        let raw = &map[op];
        let operand = if is_path {
            let Value::String(text) = raw else {
                return Err((op.into(), "must be a path string".into()));
            };
            Operand::Path(JsonPath::parse(text).map_err(|e| (op.to_owned(), e.0))?)
        } else {
            let ok = match kind {
                Kind::String | Kind::Matches => raw.is_string(),
                Kind::Numeric => raw.is_number(),
                Kind::Timestamp => raw.as_str().and_then(parse_timestamp).is_some(),
                Kind::Boolean
                | Kind::IsNull
                | Kind::IsPresent
                | Kind::IsNumeric
                | Kind::IsString
                | Kind::IsBoolean
                | Kind::IsTimestamp => raw.is_boolean(),
            };
            if !ok {
                let expected = match kind {
                    Kind::String | Kind::Matches => "a string",
                    Kind::Numeric => "a number",
                    Kind::Timestamp => "an RFC 3339 timestamp string",
                    _ => "a boolean",
                };
                return Err((op.into(), format!("must be {expected}, not {raw}")));
            }
            Operand::Literal(raw.clone())
        };
        Ok(Self::Compare {
            variable,
            operator: op.to_owned(),
            kind,
            relation,
            operand,
        })
    }

    /// Evaluates the rule against the effective input. A `Variable` (or `…Path`
    /// operand) that names nothing is a `States.Runtime` error, except for `IsPresent`.
    pub(crate) fn evaluate(&self, scope: &Scope<'_>) -> Result<bool, StateError> {
        match self {
            Self::And(rules) => {
                for rule in rules {
                    if !rule.evaluate(scope)? {
                        return Ok(false);
                    }
                }
                Ok(true)
            }
            Self::Or(rules) => {
                for rule in rules {
                    if rule.evaluate(scope)? {
                        return Ok(true);
                    }
                }
                Ok(false)
            }
            Self::Not(rule) => Ok(!rule.evaluate(scope)?),
            Self::Condition(condition) => {
                let states = crate::jsonata::States {
                    input: scope.input,
                    context: scope.context,
                    result: None,
                    error_output: None,
                };
                match condition.evaluate(&states, scope.variables)? {
                    Value::Bool(b) => Ok(b),
                    other => Err(StateError::new(
                        names::QUERY_EVALUATION_ERROR,
                        format!(
                            "The Condition of a choice rule evaluated to {other}, not a boolean"
                        ),
                    )),
                }
            }
            Self::Compare {
                variable,
                operator,
                kind,
                relation,
                operand,
            } => {
                let resolve = |path: &JsonPath| path.select_in_ref(scope);
                let value = resolve(variable)?;
                if *kind == Kind::IsPresent {
                    return Ok(value.is_some() == (operand_bool(operand)));
                }
                let Some(value) = value else {
                    return Err(StateError::new(
                        names::RUNTIME,
                        format!(
                            "Invalid path '{variable}': The choice state's condition path references an invalid value."
                        ),
                    ));
                };
                let expected = match operand {
                    Operand::Literal(v) => std::borrow::Cow::Borrowed(v),
                    Operand::Path(p) => resolve(p)?.ok_or_else(|| {
                        StateError::new(
                            names::RUNTIME,
                            format!("Invalid path '{p}' in '{operator}': it references an invalid value."),
                        )
                    })?,
                };
                Ok(compare(*kind, *relation, &value, &expected))
            }
        }
    }
}

fn operand_bool(operand: &Operand) -> bool {
    matches!(operand, Operand::Literal(Value::Bool(true)))
}

fn compare(kind: Kind, relation: Relation, value: &Value, expected: &Value) -> bool {
    let is = |holds: bool| expected.as_bool() == Some(holds);
    match kind {
        Kind::IsNull => is(value.is_null()),
        Kind::IsNumeric => is(value.is_number()),
        Kind::IsString => is(value.is_string()),
        Kind::IsBoolean => is(value.is_boolean()),
        Kind::IsTimestamp => is(value.as_str().and_then(parse_timestamp).is_some()),
        // Handled before the value is required.
        Kind::IsPresent => false,
        Kind::Boolean => matches!((value, expected), (Value::Bool(a), Value::Bool(b)) if a == b),
        Kind::Matches => match (value, expected) {
            (Value::String(text), Value::String(pattern)) => wildcard_matches(pattern, text),
            _ => false,
        },
        Kind::String => match (value, expected) {
            (Value::String(a), Value::String(b)) => relation.holds(a.cmp(b)),
            _ => false,
        },
        Kind::Numeric => match (value, expected) {
            (Value::Number(a), Value::Number(b)) => {
                compare_numbers(a, b).is_some_and(|o| relation.holds(o))
            }
            _ => false,
        },
        Kind::Timestamp => {
            let parsed = (
                value.as_str().and_then(parse_timestamp),
                expected.as_str().and_then(parse_timestamp),
            );
            match parsed {
                (Some(a), Some(b)) => relation.holds(a.cmp(&b)),
                _ => false,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn rule(value: &Value) -> Rule {
        Rule::parse(value, false).unwrap_or_else(|e| panic!("{value}: {e:?}"))
    }

    fn check(rule_json: &Value, input: &Value) -> bool {
        let context = json!({"Execution": {"Name": "n"}});
        let variables = crate::variables::Variables::default();
        rule(rule_json)
            .evaluate(&Scope::new(input, &context, &variables))
            .unwrap()
    }

    #[test]
    fn spec_choice_example_routes_to_value_in_twenties() {
        let public = json!({"Not": {"Variable": "$.type", "StringEquals": "Private"}});
        let twenties = json!({"And": [
            {"Variable": "$.value", "NumericGreaterThanEquals": 20},
            {"Variable": "$.value", "NumericLessThan": 30}
        ]});
        let input = json!({"type": "Private", "value": 22});
        assert!(!check(&public, &input));
        assert!(check(&twenties, &input));
        let input = json!({"type": "Public", "value": 31});
        assert!(check(&public, &input));
        assert!(!check(&twenties, &input));
    }

    #[test]
    fn string_operators() {
        let input = json!({"s": "banana", "other": "cherry", "n": 1});
        let cases = [
            ("StringEquals", json!("banana"), true),
            ("StringEquals", json!("Banana"), false),
            ("StringLessThan", json!("cherry"), true),
            ("StringLessThan", json!("apple"), false),
            ("StringGreaterThan", json!("apple"), true),
            ("StringLessThanEquals", json!("banana"), true),
            ("StringGreaterThanEquals", json!("banana"), true),
            ("StringGreaterThanEquals", json!("c"), false),
        ];
        for (op, operand, expected) in cases {
            assert_eq!(
                check(&json!({"Variable": "$.s", op: operand}), &input),
                expected,
                "{op} {operand}"
            );
        }
        assert!(check(
            &json!({"Variable": "$.s", "StringLessThanPath": "$.other"}),
            &input
        ));
        assert!(!check(
            &json!({"Variable": "$.s", "StringEqualsPath": "$.other"}),
            &input
        ));
        // Type-sensitive: a number never equals a string.
        assert!(!check(
            &json!({"Variable": "$.n", "StringEquals": "1"}),
            &input
        ));
    }

    #[test]
    fn string_matches_wildcards_and_escapes() {
        let cases = [
            ("log-*.txt", "log-2024.txt", true),
            ("log-*.txt", "log-.txt", true),
            ("log-*.txt", "log-2024.csv", false),
            ("*", "", true),
            ("a*b*c", "aXXbYYc", true),
            ("a*b*c", "aXXcYYb", false),
            (r"literal\*star", "literal*star", true),
            (r"literal\*star", "literalXstar", false),
            (r"back\\slash", r"back\slash", true),
            ("exact", "exact", true),
            ("exact", "exactly", false),
        ];
        for (pattern, text, expected) in cases {
            assert_eq!(
                check(
                    &json!({"Variable": "$.t", "StringMatches": pattern}),
                    &json!({"t": text})
                ),
                expected,
                "{pattern} vs {text}"
            );
        }
    }

    #[test]
    fn numeric_operators() {
        let input = json!({"n": 5, "f": 5.5, "big": 9_007_199_254_740_993_u64, "lim": 6});
        let cases = [
            ("NumericEquals", json!(5), true),
            ("NumericEquals", json!(5.0), true),
            ("NumericLessThan", json!(5.5), true),
            ("NumericGreaterThan", json!(4), true),
            ("NumericLessThanEquals", json!(5), true),
            ("NumericGreaterThanEquals", json!(6), false),
        ];
        for (op, operand, expected) in cases {
            assert_eq!(
                check(&json!({"Variable": "$.n", op: operand}), &input),
                expected,
                "{op} {operand}"
            );
        }
        assert!(check(
            &json!({"Variable": "$.n", "NumericLessThanPath": "$.lim"}),
            &input
        ));
        assert!(check(
            &json!({"Variable": "$.f", "NumericGreaterThanPath": "$.n"}),
            &input
        ));
        assert!(!check(
            &json!({"Variable": "$.big", "NumericEquals": 9_007_199_254_740_992_u64}),
            &input
        ));
        assert!(!check(
            &json!({"Variable": "$.n", "NumericEquals": 5}),
            &json!({"n": "5"})
        ));
    }

    #[test]
    fn boolean_and_timestamp_operators() {
        let input = json!({
            "b": true, "other": true,
            "t": "2016-03-14T01:59:00Z", "later": "2016-03-14T03:59:00+01:00"
        });
        assert!(check(
            &json!({"Variable": "$.b", "BooleanEquals": true}),
            &input
        ));
        assert!(!check(
            &json!({"Variable": "$.b", "BooleanEquals": false}),
            &input
        ));
        assert!(check(
            &json!({"Variable": "$.b", "BooleanEqualsPath": "$.other"}),
            &input
        ));
        let cases = [
            ("TimestampEquals", "2016-03-14T01:59:00Z", true),
            ("TimestampEquals", "2016-03-14T02:59:00+01:00", true),
            ("TimestampLessThan", "2016-03-14T02:00:00Z", true),
            ("TimestampGreaterThan", "2016-03-14T02:00:00Z", false),
            ("TimestampLessThanEquals", "2016-03-14T01:59:00Z", true),
            ("TimestampGreaterThanEquals", "2017-01-01T00:00:00Z", false),
        ];
        for (op, operand, expected) in cases {
            assert_eq!(
                check(&json!({"Variable": "$.t", op: operand}), &input),
                expected,
                "{op} {operand}"
            );
        }
        assert!(check(
            &json!({"Variable": "$.t", "TimestampLessThanPath": "$.later"}),
            &input
        ));
        assert!(!check(
            &json!({"Variable": "$.b", "TimestampEquals": "2016-03-14T01:59:00Z"}),
            &input
        ));
    }

    #[test]
    fn type_tests() {
        let input =
            json!({"null": null, "n": 1.5, "s": "x", "b": false, "t": "2024-01-01T00:00:00.5Z"});
        let truths = [
            ("IsNull", "$.null"),
            ("IsNumeric", "$.n"),
            ("IsString", "$.s"),
            ("IsBoolean", "$.b"),
            ("IsTimestamp", "$.t"),
            ("IsPresent", "$.null"),
        ];
        for (op, var) in truths {
            assert!(
                check(&json!({"Variable": var, op: true}), &input),
                "{op} {var}"
            );
            assert!(
                !check(&json!({"Variable": var, op: false}), &input),
                "{op} {var} false"
            );
        }
        assert!(!check(&json!({"Variable": "$.s", "IsNull": true}), &input));
        assert!(!check(
            &json!({"Variable": "$.s", "IsTimestamp": true}),
            &input
        ));
        assert!(check(
            &json!({"Variable": "$.missing", "IsPresent": false}),
            &input
        ));
        assert!(!check(
            &json!({"Variable": "$.missing", "IsPresent": true}),
            &input
        ));
    }

    #[test]
    fn nested_boolean_logic() {
        let r = json!({"Or": [
            {"And": [
                {"Variable": "$.a", "NumericEquals": 1},
                {"Not": {"Variable": "$.b", "StringEquals": "no"}}
            ]},
            {"Variable": "$.c", "BooleanEquals": true}
        ]});
        assert!(check(&r, &json!({"a": 1, "b": "yes", "c": false})));
        assert!(!check(&r, &json!({"a": 1, "b": "no", "c": false})));
        assert!(check(&r, &json!({"a": 2, "b": "no", "c": true})));
    }

    #[test]
    fn missing_variable_is_a_runtime_error() {
        let err = rule(&json!({"Variable": "$.nope", "StringEquals": "x"}))
            .evaluate(&Scope::new(
                &json!({}),
                &json!({}),
                &crate::variables::Variables::default(),
            ))
            .unwrap_err();
        assert_eq!(err.error, names::RUNTIME);
        assert!(err.cause.contains("$.nope"));
    }

    #[test]
    fn context_variables_are_resolved() {
        assert!(check(
            &json!({"Variable": "$$.Execution.Name", "StringEquals": "n"}),
            &json!({})
        ));
    }

    #[test]
    fn malformed_rules_are_refused() {
        let cases = [
            (json!({"Variable": "$.a"}), "Choices"),
            (
                json!({"Variable": "$.a", "StringEquals": "x", "NumericEquals": 1}),
                "Choices",
            ),
            (
                json!({"Variable": "$.a", "StringEqual": "x"}),
                "StringEqual",
            ),
            (
                json!({"Variable": "$.a", "NumericEquals": "1"}),
                "NumericEquals",
            ),
            (
                json!({"Variable": "$.a", "BooleanEquals": 1}),
                "BooleanEquals",
            ),
            (
                json!({"Variable": "$.a", "TimestampEquals": "yesterday"}),
                "TimestampEquals",
            ),
            (json!({"Variable": "$.a", "IsNull": "yes"}), "IsNull"),
            (
                json!({"Variable": "$.a", "StringEqualsPath": "nope"}),
                "StringEqualsPath",
            ),
            (json!({"StringEquals": "x"}), "Variable"),
            (json!({"Variable": "a.b", "StringEquals": "x"}), "Variable"),
            (json!({"And": []}), "And"),
            (json!({"Not": [{"Variable": "$.a", "IsNull": true}]}), "Not"),
            (
                json!({"And": [{"Variable": "$.a", "IsNull": true, "Next": "X"}]}),
                "Next",
            ),
            (json!({"Condition": "{% true %}"}), "Condition"),
            (
                json!({"Variable": "$.a", "StringMatchesPath": "$.b"}),
                "StringMatchesPath",
            ),
        ];
        for (value, field) in cases {
            let (got, _) = Rule::parse(&value, false).expect_err(&value.to_string());
            assert_eq!(got, field, "{value}");
        }
    }
}
