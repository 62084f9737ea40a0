//! Payload templates: `Parameters`, `ResultSelector` and `ItemSelector`, whose keys
//! ending in `.$` take a path, a `$$` context path or an intrinsic call.

use serde_json::{Map, Value};

use crate::error::{StateError, names};
use crate::intrinsic::{self, Call};
use crate::path::{JsonPath, Root, Scope};

#[derive(Debug, Clone)]
pub(crate) enum Template {
    /// A subtree without any `.$` key, copied as is.
    Static(Value),
    Object(Vec<(String, Template)>),
    Array(Vec<Template>),
    /// `field` is the key as written (`name.$`), for error causes.
    Path {
        path: JsonPath,
        field: String,
    },
    Intrinsic(Call),
}

impl Template {
    /// Compiles a template; errors carry the offending key path (e.g. `MessageBody.taskToken.$`).
    pub(crate) fn compile(value: &Value) -> Result<Self, (String, String)> {
        Self::compile_at(value, "")
    }

    fn compile_at(value: &Value, at: &str) -> Result<Self, (String, String)> {
        if !contains_dynamic_key(value) {
            return Ok(Self::Static(value.clone()));
        }
        match value {
            Value::Object(map) => {
                let mut fields = Vec::with_capacity(map.len());
                for (key, child) in map {
                    let child_at = if at.is_empty() {
                        key.clone()
                    } else {
                        format!("{at}.{key}")
                    };
                    if let Some(name) = key.strip_suffix(".$") {
                        if map.contains_key(name) {
                            return Err((child_at, format!("both '{name}' and '{key}' are given")));
                        }
                        let Value::String(text) = child else {
                            return Err((
                                child_at,
                                "a key ending in '.$' must have a string value".into(),
                            ));
                        };
                        let compiled = if intrinsic::looks_like_call(text) {
                            Self::Intrinsic(Call::parse(text).map_err(|e| (child_at.clone(), e))?)
                        } else if text.starts_with('$') {
                            Self::Path {
                                path: JsonPath::parse(text).map_err(|e| (child_at.clone(), e.0))?,
                                field: key.clone(),
                            }
                        } else {
                            return Err((
                                child_at,
                                format!(
                                    "'{text}' is neither a path ('$…' or '$$…') nor an intrinsic function"
                                ),
                            ));
                        };
                        fields.push((name.to_owned(), compiled));
                    } else {
                        fields.push((key.clone(), Self::compile_at(child, &child_at)?));
                    }
                }
                Ok(Self::Object(fields))
            }
            Value::Array(items) => items
                .iter()
                .enumerate()
                .map(|(i, item)| Self::compile_at(item, &format!("{at}[{i}]")))
                .collect::<Result<Vec<_>, _>>()
                .map(Self::Array),
            other => Ok(Self::Static(other.clone())),
        }
    }

    /// Builds the payload from the effective input, the context object and the variables.
    pub(crate) fn render(&self, scope: &Scope<'_>) -> Result<Value, StateError> {
        Ok(match self {
            Self::Static(v) => v.clone(),
            Self::Object(fields) => {
                let mut map = Map::with_capacity(fields.len());
                for (key, template) in fields {
                    map.insert(key.clone(), template.render(scope)?);
                }
                Value::Object(map)
            }
            Self::Array(items) => Value::Array(
                items
                    .iter()
                    .map(|t| t.render(scope))
                    .collect::<Result<_, _>>()?,
            ),
            Self::Path { path, field } => {
                // Step Functions raises the uncatchable States.Runtime here, not
                // States.ParameterPathFailure.
                path.select_in(scope)?.ok_or_else(|| {
                    let doc = match path.root() {
                        Root::Context => scope.context,
                        Root::Input => scope.input,
                        Root::Variable => scope
                            .variables
                            .get(path.variable().unwrap_or_default())
                            .unwrap_or(&Value::Null),
                    };
                    StateError::new(
                        names::RUNTIME,
                        format!(
                            "The JSONPath '{path}' specified for the field '{field}' could not be found in the input '{doc}'"
                        ),
                    )
                })?
            }
            Self::Intrinsic(call) => call.evaluate(scope)?,
        })
    }
}

fn contains_dynamic_key(value: &Value) -> bool {
    match value {
        Value::Object(map) => map
            .iter()
            .any(|(k, v)| k.ends_with(".$") || contains_dynamic_key(v)),
        Value::Array(items) => items.iter().any(contains_dynamic_key),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::variables::Variables;

    #[test]
    fn spec_parameters_example() {
        // The "Parameters" example of the ASL spec's input and output processing section.
        let template = Template::compile(&json!({
            "flagged": true,
            "parts": {"first.$": "$.vals[0]", "last3.$": "$.vals[3:]"},
            "weekday.$": "$$.DayOfWeek"
        }))
        .unwrap();
        let out = template
            .render(&Scope::new(
                &json!({"flagged": 7, "vals": [0, 10, 20, 30, 40, 50]}),
                &json!({"DayOfWeek": "TUESDAY"}),
                &Variables::default(),
            ))
            .unwrap();
        assert_eq!(
            out,
            json!({"flagged": true, "parts": {"first": 0, "last3": [30, 40, 50]}, "weekday": "TUESDAY"})
        );
    }

    #[test]
    fn arrays_and_intrinsics_are_rendered() {
        let template = Template::compile(&json!({
            "list": [{"id.$": "$.id"}, 2],
            "msg.$": "States.Format('id={}', $.id)"
        }))
        .unwrap();
        let out = template
            .render(&Scope::new(
                &json!({"id": 9}),
                &json!({}),
                &Variables::default(),
            ))
            .unwrap();
        assert_eq!(out, json!({"list": [{"id": 9}, 2], "msg": "id=9"}));
    }

    #[test]
    fn missing_paths_raise_states_runtime_naming_the_field() {
        let template = Template::compile(&json!({"x.$": "$.missing"})).unwrap();
        let err = template
            .render(&Scope::new(
                &json!({"a": 1}),
                &json!({}),
                &Variables::default(),
            ))
            .unwrap_err();
        assert_eq!(err.error, names::RUNTIME);
        assert_eq!(
            err.cause,
            "The JSONPath '$.missing' specified for the field 'x.$' could not be found in the input '{\"a\":1}'"
        );
    }

    #[test]
    fn bad_templates_name_the_key() {
        let cases = [
            (json!({"a": {"b.$": 3}}), "a.b.$"),
            (json!({"a.$": "not a path"}), "a.$"),
            (json!({"a.$": "$.x", "a": 1}), "a.$"),
            (json!({"a.$": "$["}), "a.$"),
            (json!({"l": [{"a.$": "States.Nope()"}]}), "l[0].a.$"),
        ];
        for (value, key) in cases {
            let (at, _) = Template::compile(&value).unwrap_err();
            assert_eq!(at, key);
        }
    }
}
