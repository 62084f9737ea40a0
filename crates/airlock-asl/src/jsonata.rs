//! The JSONata query language: `{% … %}` expressions in JSONata-mode states, with
//! `$states` (`input`, `context`, `result`, `errorOutput`), workflow variables and the
//! functions Step Functions adds (`$partition`, `$range`, `$hash`, `$random`, `$uuid`,
//! `$parse`).
//!
//! Expressions are evaluated by the `jsonata-rs` crate (0.3.4). On the JSONata
//! project's own test suite (v2.2.2, 1,686 cases) it passes 1,238 (73 %): 1,022 of the
//! 1,411 cases that expect a value, and 216 of the 273 that expect an error raise one
//! (error codes not compared). What it lacks is mostly `$formatInteger`,
//! `$parseInteger` and `$formatNumber` pictures, the parent operator `%`, the transform
//! operator `|…|`, the `?:` and `??` operators, function signatures and the URL
//! functions. A workflow variable named like a built-in function (`$count`) is hidden
//! by the function.

use bumpalo::Bump;
use jsonata_rs::{ArrayFlags, FunctionContext, JsonAta, Value as J};
use md5::Digest as _;
use serde_json::{Map, Number, Value};

use crate::error::{StateError, names};
use crate::variables::Variables;

/// Evaluation time limit, so a runaway expression fails the state instead of hanging it.
const TIME_LIMIT_MS: usize = 10_000;
/// Evaluation depth limit (recursive lambdas).
const MAX_DEPTH: usize = 1_000;
/// `$range` may produce at most this many items, like `States.ArrayRange`.
const MAX_RANGE_ITEMS: usize = 1_000;

/// What `$states` holds while a field is evaluated.
#[derive(Debug, Clone, Copy)]
pub(crate) struct States<'a> {
    pub(crate) input: &'a Value,
    pub(crate) context: &'a Value,
    pub(crate) result: Option<&'a Value>,
    pub(crate) error_output: Option<&'a Value>,
}

/// A field value in a JSONata state: literals, `{% … %}` expressions, and objects and
/// arrays of them.
#[derive(Debug, Clone)]
pub(crate) enum Template {
    Static(Value),
    Expr(String),
    Object(Vec<(String, Template)>),
    Array(Vec<Template>),
}

/// The expression inside `{% … %}`, if `text` is one.
fn expression_text(text: &str) -> Option<&str> {
    text.strip_prefix("{%")?.strip_suffix("%}")
}

/// Whether `text` is a `{% … %}` expression.
pub(crate) fn is_expression(text: &str) -> bool {
    expression_text(text).is_some()
}

impl Template {
    /// Compiles a field value, checking each expression's syntax. Errors carry the
    /// location inside the value (e.g. `a.b[0]`) and the problem.
    pub(crate) fn compile(value: &Value) -> Result<Self, (String, String)> {
        Self::compile_at(value, "")
    }

    fn compile_at(value: &Value, at: &str) -> Result<Self, (String, String)> {
        Ok(match value {
            Value::String(text) => match expression_text(text) {
                Some(expr) => {
                    check_syntax(expr).map_err(|e| (at.to_owned(), e))?;
                    Self::Expr(expr.to_owned())
                }
                None => Self::Static(value.clone()),
            },
            Value::Object(map) if contains_expression(value) => {
                let mut fields = Vec::with_capacity(map.len());
                for (key, child) in map {
                    let child_at = if at.is_empty() {
                        key.clone()
                    } else {
                        format!("{at}.{key}")
                    };
                    fields.push((key.clone(), Self::compile_at(child, &child_at)?));
                }
                Self::Object(fields)
            }
            Value::Array(items) if contains_expression(value) => Self::Array(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| Self::compile_at(item, &format!("{at}[{i}]")))
                    .collect::<Result<_, _>>()?,
            ),
            other => Self::Static(other.clone()),
        })
    }

    /// Evaluates the template. An expression yielding nothing (JSONata's `undefined`)
    /// drops its object field or array item; at the top it is an error.
    pub(crate) fn evaluate(
        &self,
        states: &States<'_>,
        variables: &Variables,
    ) -> Result<Value, StateError> {
        self.evaluate_inner(states, variables)?.ok_or_else(|| {
            query_error(format!(
                "The JSONata expression '{}' returned nothing (undefined)",
                self.describe()
            ))
        })
    }

    fn evaluate_inner(
        &self,
        states: &States<'_>,
        variables: &Variables,
    ) -> Result<Option<Value>, StateError> {
        Ok(match self {
            Self::Static(v) => Some(v.clone()),
            Self::Expr(expr) => evaluate(expr, states, variables)?,
            Self::Object(fields) => {
                let mut map = Map::with_capacity(fields.len());
                for (key, field) in fields {
                    if let Some(v) = field.evaluate_inner(states, variables)? {
                        map.insert(key.clone(), v);
                    }
                }
                Some(Value::Object(map))
            }
            Self::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                for item in items {
                    if let Some(v) = item.evaluate_inner(states, variables)? {
                        out.push(v);
                    }
                }
                Some(Value::Array(out))
            }
        })
    }

    fn describe(&self) -> String {
        match self {
            Self::Expr(expr) => format!("{{%{expr}%}}"),
            Self::Static(v) => v.to_string(),
            Self::Object(_) => "{…}".into(),
            Self::Array(_) => "[…]".into(),
        }
    }
}

fn contains_expression(value: &Value) -> bool {
    match value {
        Value::String(s) => is_expression(s),
        Value::Array(items) => items.iter().any(contains_expression),
        Value::Object(map) => map.values().any(contains_expression),
        _ => false,
    }
}

fn query_error(cause: String) -> StateError {
    StateError::new(names::QUERY_EVALUATION_ERROR, cause)
}

fn check_syntax(expr: &str) -> Result<(), String> {
    let arena = Bump::new();
    JsonAta::new(expr, &arena)
        .map(|_| ())
        .map_err(|e| format!("invalid JSONata expression '{expr}': {e}"))
}

/// Evaluates one expression. `Ok(None)` is JSONata's `undefined`.
pub(crate) fn evaluate(
    expr: &str,
    states: &States<'_>,
    variables: &Variables,
) -> Result<Option<Value>, StateError> {
    let arena = Bump::new();
    let fail = |e: jsonata_rs::Error| {
        query_error(format!(
            "An error occurred while evaluating the JSONata expression '{expr}': {e}"
        ))
    };
    // Only variables the expression names are converted.
    let mut text = std::borrow::Cow::Borrowed(expr);
    let mut bound = Vec::new();
    for name in referenced_names(expr) {
        if let Some(value) = variables.get(name)
            && !bound.iter().any(|(n, _)| *n == name)
        {
            let alias = format!("{VARIABLE_PREFIX}{name}");
            text = renamed(&text, &format!("${name}"), &format!("${alias}"))
                .into_owned()
                .into();
            bound.push((name, (alias, value)));
        }
    }
    let jsonata = JsonAta::new(&with_seeded_random(&text), &arena).map_err(fail)?;
    let mut state_object = Map::new();
    state_object.insert("input".into(), states.input.clone());
    state_object.insert("context".into(), states.context.clone());
    if let Some(result) = states.result {
        state_object.insert("result".into(), result.clone());
    }
    if let Some(error_output) = states.error_output {
        state_object.insert("errorOutput".into(), error_output.clone());
    }
    jsonata.assign_var("states", to_jsonata(&arena, &Value::Object(state_object)));
    for (_, (alias, value)) in &bound {
        jsonata.assign_var(alias, to_jsonata(&arena, value));
    }
    register_aws_functions(&jsonata);
    let result = jsonata
        .evaluate_timeboxed(None, Some(MAX_DEPTH), Some(TIME_LIMIT_MS))
        .map_err(fail)?;
    from_jsonata(result).map_err(|why| {
        query_error(format!(
            "The JSONata expression '{expr}' returned a value that is not JSON: {why}"
        ))
    })
}

/// The engine's built-in `$random()` takes no seed and cannot be replaced, so calls
/// are renamed to Step Functions' `$random([seed])` (outside string literals).
fn with_seeded_random(expr: &str) -> std::borrow::Cow<'_, str> {
    renamed(expr, "$random", SEEDED_RANDOM)
}

/// `expr` with every `name` (a `$`-name, whole, outside string literals) replaced.
fn renamed<'e>(expr: &'e str, name: &str, replacement: &str) -> std::borrow::Cow<'e, str> {
    if !expr.contains(name) {
        return expr.into();
    }
    let mut out = String::with_capacity(expr.len() + replacement.len());
    let mut quote: Option<char> = None;
    let mut chars = expr.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match quote {
            Some(q) => {
                out.push(c);
                if c == '\\' {
                    if let Some((_, escaped)) = chars.next() {
                        out.push(escaped);
                    }
                } else if c == q {
                    quote = None;
                }
            }
            None if c == '"' || c == '\'' => {
                quote = Some(c);
                out.push(c);
            }
            None if expr[i..].starts_with(name)
                && !expr[i + name.len()..]
                    .starts_with(|n: char| n.is_ascii_alphanumeric() || n == '_') =>
            {
                out.push_str(replacement);
                for _ in 1..name.len() {
                    chars.next();
                }
            }
            None => out.push(c),
        }
    }
    out.into()
}

/// Workflow variables are bound under this prefix (the expression renamed to match):
/// the engine binds its built-in functions over any variable of the same name, while in
/// Step Functions a variable named `count` or `map` shadows the function.
const VARIABLE_PREFIX: &str = "stepFunctionsVariable_";

/// What `$random` calls are renamed to.
const SEEDED_RANDOM: &str = "$stepFunctionsRandom";

/// Names after a `$` in the expression text (a superset of the variables it reads).
fn referenced_names(expr: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'$' {
            let start = i + 1;
            let mut end = start;
            while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
                end += 1;
            }
            if end > start && &expr[start..end] != "states" {
                out.push(&expr[start..end]);
            }
            i = end.max(i + 1);
        } else {
            i += 1;
        }
    }
    out
}

fn to_jsonata<'a>(arena: &'a Bump, value: &Value) -> &'a J<'a> {
    match value {
        Value::Null => J::null(arena),
        Value::Bool(b) => J::bool(*b),
        Value::Number(n) => J::number(arena, n.as_f64().unwrap_or(f64::NAN)),
        Value::String(s) => J::string(arena, s),
        Value::Array(items) => {
            let array = J::array_with_capacity(arena, items.len(), ArrayFlags::empty());
            for item in items {
                array.push(to_jsonata(arena, item));
            }
            array
        }
        Value::Object(map) => {
            let object = J::object_with_capacity(arena, map.len());
            for (key, item) in map {
                object.insert(key, to_jsonata(arena, item));
            }
            object
        }
    }
}

fn number(f: f64) -> Result<Value, String> {
    // Integral values within the exactly representable range print as integers.
    #[allow(clippy::cast_possible_truncation)]
    if f.fract() == 0.0 && f.abs() < 9.007_199_254_740_992e15 {
        return Ok(Value::from(f as i64));
    }
    Number::from_f64(f)
        .map(Value::Number)
        .ok_or_else(|| format!("{f} is not a finite number"))
}

/// Converts a result to JSON; `None` for `undefined`. Undefined items and fields are dropped.
fn from_jsonata<'a>(value: &'a J<'a>) -> Result<Option<Value>, String> {
    if value.is_undefined() {
        return Ok(None);
    }
    Ok(Some(if value.is_null() {
        Value::Null
    } else if value.is_bool() {
        Value::Bool(value.as_bool())
    } else if value.is_number() {
        number(value.as_f64())?
    } else if value.is_string() {
        Value::String(value.as_str().into_owned())
    } else if value.is_array() {
        let mut out = Vec::new();
        for item in value.members() {
            if let Some(v) = from_jsonata(item)? {
                out.push(v);
            }
        }
        Value::Array(out)
    } else if value.is_object() {
        let mut out = Map::new();
        for (key, item) in value.entries() {
            if let Some(v) = from_jsonata(item)? {
                out.insert(key.to_string(), v);
            }
        }
        Value::Object(out)
    } else {
        return Err("a function".into());
    }))
}

fn aws_error(function: &str, why: impl std::fmt::Display) -> jsonata_rs::Error {
    jsonata_rs::Error::D3137Error(format!("{function}: {why}"))
}

fn register_aws_functions(jsonata: &JsonAta<'_>) {
    jsonata.register_function("partition", 2, fn_partition);
    jsonata.register_function("range", 3, fn_range);
    jsonata.register_function("hash", 2, fn_hash);
    jsonata.register_function(&SEEDED_RANDOM[1..], 1, fn_random);
    jsonata.register_function("uuid", 0, fn_uuid);
    jsonata.register_function("parse", 1, fn_parse);
}

type FnResult<'a> = jsonata_rs::Result<&'a J<'a>>;

fn arg<'a>(args: &[&'a J<'a>], i: usize) -> &'a J<'a> {
    args.get(i).copied().unwrap_or_else(J::undefined)
}

/// `$partition(array, size)`: the array cut into chunks of `size`.
#[allow(
    clippy::needless_pass_by_value,
    reason = "the signature jsonata-rs requires of native functions"
)]
fn fn_partition<'a>(ctx: FunctionContext<'a, '_>, args: &[&'a J<'a>]) -> FnResult<'a> {
    let (array, size) = (arg(args, 0), arg(args, 1));
    if !array.is_array() {
        return Err(aws_error(
            "$partition",
            "the first argument must be an array",
        ));
    }
    if !size.is_integer() || size.as_f64() < 1.0 {
        return Err(aws_error(
            "$partition",
            "the chunk size must be a positive integer",
        ));
    }
    let size = size.as_usize();
    let items: Vec<&J<'_>> = array.members().collect();
    let out = J::array_with_capacity(ctx.arena, items.len().div_ceil(size), ArrayFlags::empty());
    for chunk in items.chunks(size) {
        let part = J::array_with_capacity(ctx.arena, chunk.len(), ArrayFlags::empty());
        for item in chunk {
            part.push(item);
        }
        out.push(part);
    }
    Ok(out)
}

/// `$range(start, end, step)`: integers from `start` to `end` inclusive.
#[allow(
    clippy::needless_pass_by_value,
    reason = "the signature jsonata-rs requires of native functions"
)]
fn fn_range<'a>(ctx: FunctionContext<'a, '_>, args: &[&'a J<'a>]) -> FnResult<'a> {
    let [start, end, step] = [0, 1, 2].map(|i| arg(args, i));
    if !(start.is_integer() && end.is_integer() && step.is_integer()) {
        return Err(aws_error("$range", "start, end and step must be integers"));
    }
    #[allow(clippy::cast_possible_truncation)]
    let (start, end, step) = (
        start.as_f64() as i64,
        end.as_f64() as i64,
        step.as_f64() as i64,
    );
    if step == 0 {
        return Err(aws_error("$range", "the step must not be 0"));
    }
    let out = J::array(ctx.arena, ArrayFlags::empty());
    let mut current = start;
    let mut count = 0;
    while (step > 0 && current <= end) || (step < 0 && current >= end) {
        if count == MAX_RANGE_ITEMS {
            return Err(aws_error(
                "$range",
                format!("the range has more than {MAX_RANGE_ITEMS} items"),
            ));
        }
        #[allow(clippy::cast_precision_loss)]
        out.push(J::number(ctx.arena, current as f64));
        count += 1;
        let Some(next) = current.checked_add(step) else {
            break;
        };
        current = next;
    }
    Ok(out)
}

/// `$hash(data, algorithm)`: the hex digest (MD5, SHA-1, SHA-256, SHA-384, SHA-512).
#[allow(
    clippy::needless_pass_by_value,
    reason = "the signature jsonata-rs requires of native functions"
)]
fn fn_hash<'a>(ctx: FunctionContext<'a, '_>, args: &[&'a J<'a>]) -> FnResult<'a> {
    let (data, algorithm) = (arg(args, 0), arg(args, 1));
    if !data.is_string() || !algorithm.is_string() {
        return Err(aws_error(
            "$hash",
            "the data and the algorithm must be strings",
        ));
    }
    let data = data.as_str();
    let bytes = data.as_bytes();
    let digest = match algorithm.as_str().as_ref() {
        "MD5" => hex::encode(md5::Md5::digest(bytes)),
        "SHA-1" => hex::encode(sha1::Sha1::digest(bytes)),
        "SHA-256" => hex::encode(sha2::Sha256::digest(bytes)),
        "SHA-384" => hex::encode(sha2::Sha384::digest(bytes)),
        "SHA-512" => hex::encode(sha2::Sha512::digest(bytes)),
        other => {
            return Err(aws_error(
                "$hash",
                format!(
                    "unknown algorithm '{other}' (expected MD5, SHA-1, SHA-256, SHA-384 or SHA-512)"
                ),
            ));
        }
    };
    Ok(J::string(ctx.arena, &digest))
}

/// `$random([seed])`: a number in [0, 1); the same seed gives the same number.
#[allow(
    clippy::needless_pass_by_value,
    reason = "the signature jsonata-rs requires of native functions"
)]
fn fn_random<'a>(ctx: FunctionContext<'a, '_>, args: &[&'a J<'a>]) -> FnResult<'a> {
    let seed = arg(args, 0);
    let mut rng = if seed.is_undefined() {
        fastrand::Rng::new()
    } else if seed.is_integer() {
        #[allow(clippy::cast_possible_truncation)]
        fastrand::Rng::with_seed((seed.as_f64() as i64).cast_unsigned())
    } else {
        return Err(aws_error("$random", "the seed must be an integer"));
    };
    Ok(J::number(ctx.arena, rng.f64()))
}

/// `$uuid()`: a fresh version 4 UUID.
#[allow(
    clippy::needless_pass_by_value,
    clippy::unnecessary_wraps,
    reason = "the signature jsonata-rs requires of native functions"
)]
fn fn_uuid<'a>(ctx: FunctionContext<'a, '_>, _args: &[&'a J<'a>]) -> FnResult<'a> {
    Ok(J::string(ctx.arena, &uuid::Uuid::new_v4().to_string()))
}

/// `$parse(text)`: JSON text to its value.
#[allow(
    clippy::needless_pass_by_value,
    reason = "the signature jsonata-rs requires of native functions"
)]
fn fn_parse<'a>(ctx: FunctionContext<'a, '_>, args: &[&'a J<'a>]) -> FnResult<'a> {
    let text = arg(args, 0);
    if !text.is_string() {
        return Err(aws_error("$parse", "the argument must be a string"));
    }
    let value: Value = serde_json::from_str(&text.as_str())
        .map_err(|e| aws_error("$parse", format!("the argument is not valid JSON: {e}")))?;
    Ok(to_jsonata(ctx.arena, &value))
}

/// Variables bound for a test: name → value.
#[cfg(test)]
pub(crate) fn eval_for_test(
    expr: &str,
    input: &Value,
    bindings: &std::collections::HashMap<&str, Value>,
) -> Value {
    let mut variables = Variables::default();
    variables
        .assign(
            bindings
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect(),
        )
        .unwrap();
    let context = serde_json::json!({"State": {"Name": "S"}});
    let states = States {
        input,
        context: &context,
        result: None,
        error_output: None,
    };
    evaluate(expr, &states, &variables)
        .unwrap_or_else(|e| panic!("{expr}: {e}"))
        .unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use std::collections::HashMap;

    use super::*;

    fn eval(expr: &str, input: &Value) -> Value {
        eval_for_test(expr, input, &HashMap::new())
    }

    #[test]
    fn a_variable_shadows_the_built_in_function_of_its_name() {
        let bindings = HashMap::from([("count", json!(42)), ("map", json!({"a": 1}))]);
        let input = json!({});
        assert_eq!(eval_for_test("$count", &input, &bindings), json!(42));
        assert_eq!(
            eval_for_test("$map.a + $count", &input, &bindings),
            json!(43)
        );
        // Text in string literals is left alone, and so is a function without a variable.
        assert_eq!(
            eval_for_test("'$count' & $string($length('abc'))", &input, &bindings),
            json!("$count3")
        );
    }

    #[test]
    fn states_and_variables_are_bound() {
        let input = json!({"items": [{"price": 5}, {"price": 20}]});
        assert_eq!(
            eval("$states.input.items[price > 10].price", &input),
            json!(20)
        );
        assert_eq!(eval("$sum($states.input.items.price)", &input), json!(25));
        assert_eq!(eval("$states.context.State.Name", &input), json!("S"));
        let bindings = HashMap::from([("limit", json!(7))]);
        assert_eq!(eval_for_test("$limit * 2", &input, &bindings), json!(14));
    }

    #[test]
    fn aws_functions() {
        let input = json!({});
        assert_eq!(
            eval("$partition([1,2,3,4,5], 2)", &input),
            json!([[1, 2], [3, 4], [5]])
        );
        assert_eq!(eval("$range(0, 10, 5)", &input), json!([0, 5, 10]));
        assert_eq!(eval("$range(3, 1, -1)", &input), json!([3, 2, 1]));
        assert_eq!(
            eval("$hash('abc', 'SHA-256')", &input),
            json!("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        );
        assert_eq!(eval("$random(7) = $random(7)", &input), json!(true));
        assert_eq!(eval("'$random(1)'", &input), json!("$random(1)"));
        let r = eval("$random()", &input).as_f64().unwrap();
        assert!((0.0..1.0).contains(&r));
        let id = eval("$uuid()", &input);
        assert_eq!(
            uuid::Uuid::parse_str(id.as_str().unwrap())
                .unwrap()
                .get_version_num(),
            4
        );
        assert_eq!(
            eval("$parse('{\"a\": [1, null]}')", &input),
            json!({"a": [1, null]})
        );
    }

    #[test]
    fn aws_function_errors_are_query_evaluation_errors() {
        let states = States {
            input: &json!({}),
            context: &json!({}),
            result: None,
            error_output: None,
        };
        for bad in [
            "$partition([1], 0)",
            "$range(1, 2, 0)",
            "$hash('a', 'CRC32')",
            "$parse('{')",
            "$range(0, 5000, 1)",
        ] {
            let err = evaluate(bad, &states, &Variables::default()).unwrap_err();
            assert_eq!(err.error, names::QUERY_EVALUATION_ERROR, "{bad}");
        }
    }

    #[test]
    fn templates_evaluate_nested_expressions_and_drop_undefined_fields() {
        let template = Template::compile(&json!({
            "total": "{% $sum($states.input.n) %}",
            "missing": "{% $states.input.nope %}",
            "list": ["{% $states.input.n[0] %}", "literal", "{% $states.input.nope %}"],
            "plain": {"x": 1}
        }))
        .unwrap();
        let input = json!({"n": [1, 2]});
        let states = States {
            input: &input,
            context: &json!({}),
            result: None,
            error_output: None,
        };
        assert_eq!(
            template.evaluate(&states, &Variables::default()).unwrap(),
            json!({"total": 3, "list": [1, "literal"], "plain": {"x": 1}})
        );
        let top = Template::compile(&json!("{% $states.input.nope %}")).unwrap();
        assert_eq!(
            top.evaluate(&states, &Variables::default())
                .unwrap_err()
                .error,
            names::QUERY_EVALUATION_ERROR
        );
    }

    #[test]
    fn syntax_errors_are_found_when_compiling() {
        let (at, message) = Template::compile(&json!({"a": ["{% $states.input. %}"]})).unwrap_err();
        assert_eq!(at, "a[0]");
        assert!(message.contains("invalid JSONata expression"), "{message}");
    }
}
