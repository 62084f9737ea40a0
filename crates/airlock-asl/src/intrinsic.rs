//! Intrinsic functions (`States.Format(...)` and friends) usable in payload templates.

use std::fmt::Write as _;

use base64::Engine as _;
use md5::Digest as _;
use serde_json::{Map, Number, Value};

use crate::error::{StateError, names};
use crate::path::{JsonPath, Scope};

/// Step Functions limits nesting to 10 calls; deeper text is refused when parsed.
const MAX_NESTING: usize = 10;
/// `States.ArrayRange` may produce at most this many items.
const MAX_RANGE_ITEMS: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Function {
    Format,
    StringToJson,
    JsonToString,
    Array,
    ArrayPartition,
    ArrayContains,
    ArrayRange,
    ArrayGetItem,
    ArrayLength,
    ArrayUnique,
    Base64Encode,
    Base64Decode,
    Hash,
    JsonMerge,
    MathRandom,
    MathAdd,
    StringSplit,
    Uuid,
}

impl Function {
    fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "States.Format" => Self::Format,
            "States.StringToJson" => Self::StringToJson,
            "States.JsonToString" => Self::JsonToString,
            "States.Array" => Self::Array,
            "States.ArrayPartition" => Self::ArrayPartition,
            "States.ArrayContains" => Self::ArrayContains,
            "States.ArrayRange" => Self::ArrayRange,
            "States.ArrayGetItem" => Self::ArrayGetItem,
            "States.ArrayLength" => Self::ArrayLength,
            "States.ArrayUnique" => Self::ArrayUnique,
            "States.Base64Encode" => Self::Base64Encode,
            "States.Base64Decode" => Self::Base64Decode,
            "States.Hash" => Self::Hash,
            "States.JsonMerge" => Self::JsonMerge,
            "States.MathRandom" => Self::MathRandom,
            "States.MathAdd" => Self::MathAdd,
            "States.StringSplit" => Self::StringSplit,
            "States.UUID" => Self::Uuid,
            _ => return None,
        })
    }

    /// Allowed argument counts (inclusive).
    fn arity(self) -> (usize, usize) {
        match self {
            Self::Format => (1, usize::MAX),
            Self::Array => (0, usize::MAX),
            Self::Uuid => (0, 0),
            Self::StringToJson
            | Self::JsonToString
            | Self::ArrayLength
            | Self::ArrayUnique
            | Self::Base64Encode
            | Self::Base64Decode => (1, 1),
            Self::ArrayPartition
            | Self::ArrayContains
            | Self::ArrayGetItem
            | Self::Hash
            | Self::MathAdd
            | Self::StringSplit => (2, 2),
            Self::ArrayRange | Self::JsonMerge => (3, 3),
            Self::MathRandom => (2, 3),
        }
    }
}

#[derive(Debug, Clone)]
enum Arg {
    /// A quoted literal; `raw` keeps the backslash escapes so Format can tell `\{` from `{`.
    Str {
        value: String,
        raw: String,
    },
    Literal(Value),
    Path(JsonPath),
    Call(Box<Call>),
}

/// A parsed intrinsic call, e.g. `States.Format('{}', $.name)`.
#[derive(Debug, Clone)]
pub(crate) struct Call {
    text: String,
    name: String,
    function: Function,
    args: Vec<Arg>,
}

/// Whether a `.$` value is an intrinsic call rather than a path.
pub(crate) fn looks_like_call(text: &str) -> bool {
    text.trim_start().starts_with("States.")
}

impl Call {
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let mut parser = CallParser {
            chars: text.chars().collect(),
            pos: 0,
        };
        parser.skip_blanks();
        let call = parser.call(text, 1)?;
        parser.skip_blanks();
        if parser.pos != parser.chars.len() {
            return Err(format!("unexpected text after the closing ')' in '{text}'"));
        }
        Ok(call)
    }

    pub(crate) fn evaluate(&self, scope: &Scope<'_>) -> Result<Value, StateError> {
        let mut values = Vec::with_capacity(self.args.len());
        for arg in &self.args {
            values.push(match arg {
                Arg::Str { value, .. } => Value::String(value.clone()),
                Arg::Literal(v) => v.clone(),
                Arg::Path(path) => path.select_in(scope)?.ok_or_else(|| {
                    StateError::new(
                        names::RUNTIME,
                        format!(
                            "The JSONPath '{path}' used as an argument of {} could not be found in the input '{}'",
                            self.name,
                            scope.input
                        ),
                    )
                })?,
                Arg::Call(call) => call.evaluate(scope)?,
            });
        }
        self.apply(values).map_err(|why| {
            StateError::new(names::INTRINSIC_FAILURE, format!("{}: {why}", self.text))
        })
    }

    // One arm per intrinsic keeps the whole function table in one place.
    #[allow(clippy::too_many_lines)]
    fn apply(&self, args: Vec<Value>) -> Result<Value, String> {
        let mut args = args.into_iter();
        let mut next = || args.next().unwrap_or(Value::Null);
        Ok(match self.function {
            Function::Format => {
                let template = match self.args.first() {
                    Some(Arg::Str { raw, .. }) => {
                        next();
                        raw.clone()
                    }
                    _ => expect_string(next(), "the format template")?,
                };
                let rest: Vec<Value> = (1..self.args.len()).map(|_| next()).collect();
                Value::String(format_template(&template, &rest)?)
            }
            Function::StringToJson => {
                let text = expect_string(next(), "the argument")?;
                string_to_json(&text)?
            }
            Function::JsonToString => Value::String(next().to_string()),
            Function::Array => Value::Array((0..self.args.len()).map(|_| next()).collect()),
            Function::ArrayPartition => {
                let array = expect_array(next(), "the first argument")?;
                let size = expect_integer(&next(), "the chunk size")?;
                let size = usize::try_from(size)
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or("the chunk size must be a positive integer")?;
                Value::Array(
                    array
                        .chunks(size)
                        .map(|c| Value::Array(c.to_vec()))
                        .collect(),
                )
            }
            Function::ArrayContains => {
                let array = expect_array(next(), "the first argument")?;
                let needle = next();
                Value::Bool(array.contains(&needle))
            }
            Function::ArrayRange => {
                let start = expect_integer(&next(), "the start")?;
                let end = expect_integer(&next(), "the end")?;
                let step = expect_integer(&next(), "the step")?;
                array_range(start, end, step)?
            }
            Function::ArrayGetItem => {
                let array = expect_array(next(), "the first argument")?;
                let index = expect_integer(&next(), "the index")?;
                usize::try_from(index)
                    .ok()
                    .and_then(|i| array.get(i).cloned())
                    .ok_or_else(|| {
                        format!(
                            "index {index} is out of bounds for an array of {}",
                            array.len()
                        )
                    })?
            }
            Function::ArrayLength => Value::from(expect_array(next(), "the argument")?.len()),
            Function::ArrayUnique => {
                let array = expect_array(next(), "the argument")?;
                let mut unique: Vec<Value> = Vec::with_capacity(array.len());
                for item in array {
                    if !unique.contains(&item) {
                        unique.push(item);
                    }
                }
                Value::Array(unique)
            }
            Function::Base64Encode => {
                let text = expect_string(next(), "the argument")?;
                Value::String(base64::engine::general_purpose::STANDARD.encode(text))
            }
            Function::Base64Decode => {
                let text = expect_string(next(), "the argument")?;
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(text.as_bytes())
                    .map_err(|e| format!("the argument is not valid base64: {e}"))?;
                Value::String(
                    String::from_utf8(bytes).map_err(|_| "the decoded data is not UTF-8 text")?,
                )
            }
            Function::Hash => {
                let data = expect_string(next(), "the data")?;
                let algorithm = expect_string(next(), "the algorithm")?;
                Value::String(hash(&data, &algorithm)?)
            }
            Function::JsonMerge => {
                let mut left = expect_object(next(), "the first argument")?;
                let right = expect_object(next(), "the second argument")?;
                if next() != Value::Bool(false) {
                    return Err(
                        "only shallow merging is supported: the third argument must be false"
                            .into(),
                    );
                }
                left.extend(right);
                Value::Object(left)
            }
            Function::MathRandom => {
                let start = expect_rounded(&next(), "the start")?;
                let end = expect_rounded(&next(), "the end")?;
                if start >= end {
                    return Err(format!(
                        "the start ({start}) must be less than the end ({end})"
                    ));
                }
                let seed = next();
                let mut rng = if seed.is_null() {
                    fastrand::Rng::new()
                } else {
                    let seed = expect_integer(&seed, "the seed")?;
                    fastrand::Rng::with_seed(seed.cast_unsigned())
                };
                Value::from(rng.i64(start..end))
            }
            Function::MathAdd => {
                let a = expect_rounded(&next(), "the first argument")?;
                let b = expect_rounded(&next(), "the second argument")?;
                let sum = a.checked_add(b).ok_or("the sum overflows")?;
                Value::from(sum)
            }
            Function::StringSplit => {
                let text = expect_string(next(), "the first argument")?;
                let delimiters = expect_string(next(), "the delimiters")?;
                let parts = text
                    .split(|c| delimiters.contains(c))
                    .filter(|s| !s.is_empty())
                    .map(|s| Value::String(s.to_owned()));
                Value::Array(parts.collect())
            }
            Function::Uuid => Value::String(uuid::Uuid::new_v4().to_string()),
        })
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn expect_string(value: Value, what: &str) -> Result<String, String> {
    match value {
        Value::String(s) => Ok(s),
        other => Err(format!("{what} must be a string, not {}", kind(&other))),
    }
}

fn expect_array(value: Value, what: &str) -> Result<Vec<Value>, String> {
    match value {
        Value::Array(a) => Ok(a),
        other => Err(format!("{what} must be an array, not {}", kind(&other))),
    }
}

fn expect_object(value: Value, what: &str) -> Result<Map<String, Value>, String> {
    match value {
        Value::Object(o) => Ok(o),
        other => Err(format!("{what} must be an object, not {}", kind(&other))),
    }
}

fn expect_integer(value: &Value, what: &str) -> Result<i64, String> {
    value
        .as_i64()
        .or_else(|| {
            // 3.0 is an integer too; 3.5 is not.
            let f = value.as_f64()?;
            #[allow(clippy::cast_possible_truncation)]
            (f.fract() == 0.0 && f.abs() < 9.0e15).then_some(f as i64)
        })
        .ok_or_else(|| format!("{what} must be an integer, not {value}"))
}

/// A number rounded half up (towards positive infinity), as Step Functions' math
/// intrinsics treat non-integer arguments: 1.5 is 2, -1.5 is -1.
fn expect_rounded(value: &Value, what: &str) -> Result<i64, String> {
    if let Some(n) = value.as_i64() {
        return Ok(n);
    }
    let f = value
        .as_f64()
        .ok_or_else(|| format!("{what} must be a number, not {value}"))?;
    let rounded = (f + 0.5).floor();
    if rounded.abs() >= 9.0e15 {
        return Err(format!("{what} is out of range: {value}"));
    }
    #[allow(clippy::cast_possible_truncation)]
    Ok(rounded as i64)
}

/// `States.StringToJson`: blank text is `null`, and a negative zero is plain 0.
fn string_to_json(text: &str) -> Result<Value, String> {
    if text.trim().is_empty() {
        return Ok(Value::Null);
    }
    let value: Value =
        serde_json::from_str(text).map_err(|e| format!("the argument is not valid JSON: {e}"))?;
    Ok(normalize_negative_zero(value))
}

fn normalize_negative_zero(value: Value) -> Value {
    match value {
        Value::Number(n) if n.as_f64() == Some(0.0) && !n.is_u64() && !n.is_i64() => Value::from(0),
        Value::Array(items) => {
            Value::Array(items.into_iter().map(normalize_negative_zero).collect())
        }
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (k, normalize_negative_zero(v)))
                .collect(),
        ),
        other => other,
    }
}

/// How `States.Format` prints an argument: strings as they are, objects and arrays
/// the way the service prints them (`{a=1, b=[x, y]}`), everything else as JSON.
fn format_argument(value: &Value, out: &mut String) {
    match value {
        Value::String(s) => out.push_str(s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                format_argument(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (i, (key, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(key);
                out.push('=');
                format_argument(item, out);
            }
            out.push('}');
        }
        other => {
            let _ = write!(out, "{other}");
        }
    }
}

fn array_range(start: i64, end: i64, step: i64) -> Result<Value, String> {
    if step == 0 {
        return Err("the step must not be 0".into());
    }
    let mut items = Vec::new();
    let mut current = start;
    while (step > 0 && current <= end) || (step < 0 && current >= end) {
        if items.len() == MAX_RANGE_ITEMS {
            return Err(format!("the range has more than {MAX_RANGE_ITEMS} items"));
        }
        items.push(Value::from(current));
        current = match current.checked_add(step) {
            Some(c) => c,
            None => break,
        };
    }
    Ok(Value::Array(items))
}

fn hash(data: &str, algorithm: &str) -> Result<String, String> {
    let bytes = data.as_bytes();
    Ok(match algorithm {
        "MD5" => hex::encode(md5::Md5::digest(bytes)),
        "SHA-1" => hex::encode(sha1::Sha1::digest(bytes)),
        "SHA-256" => hex::encode(sha2::Sha256::digest(bytes)),
        "SHA-384" => hex::encode(sha2::Sha384::digest(bytes)),
        "SHA-512" => hex::encode(sha2::Sha512::digest(bytes)),
        other => {
            return Err(format!(
                "unknown hash algorithm '{other}' (expected MD5, SHA-1, SHA-256, SHA-384 or SHA-512)"
            ));
        }
    })
}

/// Fills `{}` placeholders; `\{`, `\}`, `\'` and `\\` stand for the character itself.
fn format_template(template: &str, args: &[Value]) -> Result<String, String> {
    let mut out = String::with_capacity(template.len());
    let mut args = args.iter();
    let mut chars = template.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push(chars.next().ok_or("the template ends with a lone '\\'")?),
            '{' if chars.peek() == Some(&'}') => {
                chars.next();
                let arg = args
                    .next()
                    .ok_or("the template has more '{}' placeholders than arguments")?;
                format_argument(arg, &mut out);
            }
            other => out.push(other),
        }
    }
    if args.next().is_some() {
        return Err("the template has fewer '{}' placeholders than arguments".into());
    }
    Ok(out)
}

struct CallParser {
    chars: Vec<char>,
    pos: usize,
}

impl CallParser {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn skip_blanks(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.pos += 1;
        }
    }

    fn call(&mut self, whole: &str, depth: usize) -> Result<Call, String> {
        if depth > MAX_NESTING {
            return Err(format!(
                "'{whole}' nests more than {MAX_NESTING} intrinsic functions"
            ));
        }
        let start = self.pos;
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '.')
        {
            self.pos += 1;
        }
        let name: String = self.chars[start..self.pos].iter().collect();
        let function = Function::from_name(&name)
            .ok_or_else(|| format!("unknown intrinsic function '{name}' in '{whole}'"))?;
        self.skip_blanks();
        if self.peek() != Some('(') {
            return Err(format!("expected '(' after {name} in '{whole}'"));
        }
        self.pos += 1;
        let mut args = Vec::new();
        self.skip_blanks();
        if self.peek() == Some(')') {
            self.pos += 1;
        } else {
            loop {
                self.skip_blanks();
                args.push(self.arg(whole, depth)?);
                self.skip_blanks();
                match self.peek() {
                    Some(',') => self.pos += 1,
                    Some(')') => {
                        self.pos += 1;
                        break;
                    }
                    _ => {
                        return Err(format!(
                            "expected ',' or ')' in the arguments of {name} in '{whole}'"
                        ));
                    }
                }
            }
        }
        let (min, max) = function.arity();
        if args.len() < min || args.len() > max {
            let expected = if min == max {
                format!("{min}")
            } else if max == usize::MAX {
                format!("at least {min}")
            } else {
                format!("{min} to {max}")
            };
            return Err(format!(
                "{name} takes {expected} argument(s), {} given in '{whole}'",
                args.len()
            ));
        }
        let text: String = self.chars[start..self.pos].iter().collect();
        Ok(Call {
            text,
            name,
            function,
            args,
        })
    }

    fn arg(&mut self, whole: &str, depth: usize) -> Result<Arg, String> {
        match self.peek() {
            Some('\'') => self.string(whole),
            Some('$') => {
                let start = self.pos;
                let mut brackets = 0usize;
                let mut quote: Option<char> = None;
                while let Some(c) = self.peek() {
                    match (quote, c) {
                        (Some(_), '\\') => self.pos += 1,
                        (Some(q), c) if c == q => quote = None,
                        (None, '\'' | '"') => quote = Some(c),
                        (None, '[' | '(') => brackets += 1,
                        (None, ']') => brackets = brackets.saturating_sub(1),
                        (None, ')') if brackets > 0 => brackets -= 1,
                        (None, ',' | ')') if brackets == 0 => break,
                        _ => {}
                    }
                    self.pos += 1;
                }
                let text: String = self.chars[start..self.pos].iter().collect();
                let text = text.trim_end();
                JsonPath::parse(text)
                    .map(Arg::Path)
                    .map_err(|e| format!("{e} (in '{whole}')"))
            }
            Some('S') => Ok(Arg::Call(Box::new(self.call(whole, depth + 1)?))),
            _ => {
                let start = self.pos;
                while self
                    .peek()
                    .is_some_and(|c| !matches!(c, ',' | ')') && !c.is_whitespace())
                {
                    self.pos += 1;
                }
                let token: String = self.chars[start..self.pos].iter().collect();
                match token.as_str() {
                    "true" => Ok(Arg::Literal(Value::Bool(true))),
                    "false" => Ok(Arg::Literal(Value::Bool(false))),
                    "null" => Ok(Arg::Literal(Value::Null)),
                    _ => serde_json::from_str::<Number>(&token)
                        .map(|n| Arg::Literal(Value::Number(n)))
                        .map_err(|_| format!("invalid argument '{token}' in '{whole}'")),
                }
            }
        }
    }

    fn string(&mut self, whole: &str) -> Result<Arg, String> {
        self.pos += 1;
        let mut value = String::new();
        let mut raw = String::new();
        loop {
            let c = self
                .peek()
                .ok_or_else(|| format!("unterminated string literal in '{whole}'"))?;
            self.pos += 1;
            match c {
                '\'' => return Ok(Arg::Str { value, raw }),
                '\\' => {
                    let escaped = self
                        .peek()
                        .ok_or_else(|| format!("unterminated string literal in '{whole}'"))?;
                    if escaped == '"' {
                        return Err(format!(
                            "'\\\"' is not a valid escape in a string literal of '{whole}' (only \\', \\{{, \\}} and \\\\ are)"
                        ));
                    }
                    // The specification: an open escape backslash is an error.
                    if !matches!(escaped, '\'' | '{' | '}' | '\\') {
                        return Err(format!(
                            "open escape '\\{escaped}' in a string literal of '{whole}' (only \\', \\{{, \\}} and \\\\ are escapes; write a backslash as \\\\)"
                        ));
                    }
                    self.pos += 1;
                    value.push(escaped);
                    raw.push('\\');
                    raw.push(escaped);
                }
                c => {
                    value.push(c);
                    raw.push(c);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn eval(text: &str, input: &Value) -> Result<Value, StateError> {
        let context = json!({"Execution": {"Name": "run-1"}});
        Call::parse(text).unwrap().evaluate(&Scope::new(
            input,
            &context,
            &crate::variables::Variables::default(),
        ))
    }

    fn ok(text: &str, input: &Value) -> Value {
        eval(text, input).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn intrinsic_failure(text: &str, input: &Value) -> String {
        let err = eval(text, input).expect_err(text);
        assert_eq!(err.error, names::INTRINSIC_FAILURE, "{text}: {err}");
        err.cause
    }

    #[test]
    fn format_fills_placeholders_and_honours_escapes() {
        let input = json!({"name": "Ann", "n": 3, "ok": true, "none": null});
        assert_eq!(
            ok(
                "States.Format('Hello, {}! n={} ok={} none={}', $.name, $.n, $.ok, $.none)",
                &input
            ),
            json!("Hello, Ann! n=3 ok=true none=null")
        );
        assert_eq!(
            ok(
                r"States.Format('\{literal\} {} it\'s \\ done', $.name)",
                &input
            ),
            json!(r"{literal} Ann it's \ done")
        );
        assert_eq!(
            ok("States.Format('exec {}', $$.Execution.Name)", &input),
            json!("exec run-1")
        );
        intrinsic_failure("States.Format('{} {}', $.name)", &input);
        intrinsic_failure("States.Format('{}', $.name, $.n)", &input);
        assert_eq!(
            ok("States.Format('{}', States.Array(1, 'a'))", &input),
            json!("[1, a]")
        );
    }

    #[test]
    fn format_prints_objects_the_way_step_functions_does() {
        let input = json!({"o": {"Arg1": 1, "Arg2": []}, "nested": {"a": {"b": "x"}, "l": [true, null, 2.5]}});
        assert_eq!(
            ok("States.Format('{}', $.o)", &input),
            json!("{Arg1=1, Arg2=[]}")
        );
        assert_eq!(
            ok("States.Format('v: {}', $.nested)", &input),
            json!("v: {a={b=x}, l=[true, null, 2.5]}")
        );
    }

    #[test]
    fn json_conversions_round_trip() {
        let input = json!({"text": "{\"a\":[1,2]}", "obj": {"b": "c"}});
        assert_eq!(
            ok("States.StringToJson($.text)", &input),
            json!({"a": [1, 2]})
        );
        assert_eq!(
            ok("States.JsonToString($.obj)", &input),
            json!("{\"b\":\"c\"}")
        );
        intrinsic_failure("States.StringToJson('not json')", &input);
    }

    #[test]
    fn string_to_json_of_blank_text_is_null_and_negative_zero_is_zero() {
        let input = json!({"empty": "", "blank": " ", "nz": "-0", "nested": "[-0.0, {\"a\": -0}]"});
        assert_eq!(ok("States.StringToJson($.empty)", &input), Value::Null);
        assert_eq!(ok("States.StringToJson($.blank)", &input), Value::Null);
        let zero = ok("States.StringToJson($.nz)", &input);
        assert_eq!(zero, json!(0));
        assert_eq!(zero.to_string(), "0");
        assert_eq!(
            ok("States.StringToJson($.nested)", &input).to_string(),
            "[0,{\"a\":0}]"
        );
    }

    #[test]
    fn array_functions() {
        let input = json!({"list": [1, 2, 3, 4, 5], "dups": [1, "a", 1, {"x": 1}, {"x": 1}, "a"]});
        assert_eq!(
            ok("States.Array('a', 1, true, null, $.list[0])", &input),
            json!(["a", 1, true, null, 1])
        );
        assert_eq!(ok("States.Array()", &input), json!([]));
        assert_eq!(
            ok("States.ArrayPartition($.list, 2)", &input),
            json!([[1, 2], [3, 4], [5]])
        );
        assert_eq!(ok("States.ArrayContains($.list, 3)", &input), json!(true));
        assert_eq!(
            ok("States.ArrayContains($.list, '3')", &input),
            json!(false)
        );
        assert_eq!(
            ok("States.ArrayRange(1, 9, 2)", &input),
            json!([1, 3, 5, 7, 9])
        );
        assert_eq!(ok("States.ArrayRange(5, 1, -2)", &input), json!([5, 3, 1]));
        assert_eq!(ok("States.ArrayGetItem($.list, 4)", &input), json!(5));
        assert_eq!(ok("States.ArrayLength($.list)", &input), json!(5));
        assert_eq!(
            ok("States.ArrayUnique($.dups)", &input),
            json!([1, "a", {"x": 1}])
        );
        intrinsic_failure("States.ArrayPartition($.list, 0)", &input);
        intrinsic_failure("States.ArrayRange(1, 2, 0)", &input);
        intrinsic_failure("States.ArrayRange(0, 5000, 1)", &input);
        intrinsic_failure("States.ArrayGetItem($.list, 5)", &input);
        intrinsic_failure("States.ArrayLength('x')", &input);
    }

    #[test]
    fn encoding_and_hashing() {
        let input = json!({"data": "input data"});
        assert_eq!(
            ok("States.Base64Encode($.data)", &input),
            json!("aW5wdXQgZGF0YQ==")
        );
        assert_eq!(
            ok("States.Base64Decode('aW5wdXQgZGF0YQ==')", &input),
            json!("input data")
        );
        intrinsic_failure("States.Base64Decode('%%%')", &input);
        let vectors = [
            ("MD5", "900150983cd24fb0d6963f7d28e17f72"),
            ("SHA-1", "a9993e364706816aba3e25717850c26c9cd0d89d"),
            (
                "SHA-256",
                "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
            ),
            (
                "SHA-384",
                "cb00753f45a35e8bb5a03d699ac65007272c32ab0eded1631a8b605a43ff5bed8086072ba1e7cc2358baeca134c825a7",
            ),
            (
                "SHA-512",
                "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f",
            ),
        ];
        for (algorithm, digest) in vectors {
            assert_eq!(
                ok(&format!("States.Hash('abc', '{algorithm}')"), &input),
                json!(digest)
            );
        }
        intrinsic_failure("States.Hash($.data, 'CRC32')", &input);
    }

    #[test]
    fn json_merge_is_shallow_only() {
        let input = json!({"a": {"x": 1, "n": {"k": 1}}, "b": {"y": 2, "n": {"j": 2}}});
        assert_eq!(
            ok("States.JsonMerge($.a, $.b, false)", &input),
            json!({"x": 1, "y": 2, "n": {"j": 2}})
        );
        intrinsic_failure("States.JsonMerge($.a, $.b, true)", &input);
        intrinsic_failure("States.JsonMerge($.a, 'x', false)", &input);
    }

    #[test]
    fn math_functions() {
        let input = json!({"v": 111, "f": 2.5});
        assert_eq!(ok("States.MathAdd($.v, -1)", &input), json!(110));
        // Non-integers are rounded half up before adding.
        assert_eq!(ok("States.MathAdd($.f, 1)", &input), json!(4));
        assert_eq!(ok("States.MathAdd(1.49, 1.5)", &input), json!(3));
        assert_eq!(ok("States.MathAdd(-1.5, 0)", &input), json!(-1));
        assert_eq!(ok("States.MathAdd(-1.51, 0)", &input), json!(-2));
        intrinsic_failure("States.MathAdd('1', 1)", &input);
        // MathRandom(0.5, 1.4): the range [1, 1) is empty once rounded.
        intrinsic_failure("States.MathRandom(0.5, 1.4)", &input);
        for _ in 0..20 {
            let r = ok("States.MathRandom(0.6, 2.5)", &input).as_i64().unwrap();
            assert!((1..3).contains(&r), "{r}");
        }
        for _ in 0..50 {
            let r = ok("States.MathRandom(1, 5)", &input).as_i64().unwrap();
            assert!((1..5).contains(&r));
        }
        assert_eq!(
            ok("States.MathRandom(1, 1000, 7)", &input),
            ok("States.MathRandom(1, 1000, 7)", &input)
        );
        intrinsic_failure("States.MathRandom(5, 5)", &input);
    }

    #[test]
    fn string_split_uses_every_delimiter_character() {
        let input = json!({"s": "This.is+a,test=string"});
        assert_eq!(
            ok("States.StringSplit($.s, '.+,=')", &input),
            json!(["This", "is", "a", "test", "string"])
        );
        assert_eq!(
            ok("States.StringSplit('1,2,,3', ',')", &input),
            json!(["1", "2", "3"])
        );
    }

    #[test]
    fn uuid_is_a_fresh_v4() {
        let a = ok("States.UUID()", &json!({}));
        let b = ok("States.UUID()", &json!({}));
        assert_ne!(a, b);
        let parsed = uuid::Uuid::parse_str(a.as_str().unwrap()).unwrap();
        assert_eq!(parsed.get_version_num(), 4);
    }

    #[test]
    fn nested_calls_and_paths_with_commas() {
        let input = json!({"arn": "arn:aws:imagebuilder:us-east-1:1:image-recipe/my.recipe/1.0.0", "m": {"a,b": "q"}});
        assert_eq!(
            ok(
                "States.Format('{}.{}', States.ArrayGetItem(States.StringSplit(States.ArrayGetItem(States.StringSplit($.arn, '/'), 1), '.'), 0), $.m['a,b'])",
                &input
            ),
            json!("my.q")
        );
    }

    #[test]
    fn bracket_paths_with_escaped_quotes_as_arguments() {
        let input = json!({"it's": 1, "a)b": 2, "say \"hi\"": 3});
        assert_eq!(
            ok(
                r#"States.Array($['it\'s'], $['a)b'], $['say \"hi\"'])"#,
                &input
            ),
            json!([1, 2, 3])
        );
        assert_eq!(
            ok(r#"States.Array($["it's"], $["say \"hi\""])"#, &input),
            json!([1, 3])
        );
    }

    #[test]
    fn missing_paths_are_runtime_errors() {
        let err = eval("States.Format('{}', $.nope)", &json!({})).unwrap_err();
        assert_eq!(err.error, names::RUNTIME);
    }

    #[test]
    fn malformed_calls_are_refused_when_parsed() {
        for bad in [
            "States.Nope(1)",
            "States.Format(",
            "States.Format('unterminated)",
            "States.UUID(1)",
            "States.ArrayRange(1, 2)",
            "States.Array(1) trailing",
            "States.Array(bogus)",
            r#"States.Format('say \"hi\"')"#,
            // An open escape backslash (not before ' { } or \).
            r"States.Format('a \ b')",
            r"States.Format('line\n')",
            "States.Array(States.Array(States.Array(States.Array(States.Array(States.Array(States.Array(States.Array(States.Array(States.Array(States.Array())))))))))))",
        ] {
            assert!(Call::parse(bad).is_err(), "{bad} should be refused");
        }
    }
}
