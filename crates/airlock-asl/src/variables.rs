//! Workflow variables: `Assign` fields and the `$name` references that read them.
//!
//! Step Functions' rules, as documented: a state's `Assign` is evaluated with the
//! variables as they were when the state was entered, and its values become visible
//! from the next state on. A Parallel branch or Map iteration sees the variables of the
//! enclosing scope read-only; what it assigns stays in the branch. A variable holds at
//! most 256 KiB, one `Assign` at most 256 KiB in all, and an execution at most 10 MiB.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;

use crate::error::{StateError, names};
use crate::jsonata::{States, Template as JsonataTemplate};
use crate::template::Template;

/// Largest JSON text one variable may hold.
pub(crate) const MAX_VARIABLE_BYTES: usize = 256 * 1024;
/// Largest JSON text one `Assign` may produce, all its variables together.
pub(crate) const MAX_ASSIGN_BYTES: usize = 256 * 1024;
/// Largest JSON text all variables of one scope chain may hold together.
pub(crate) const MAX_TOTAL_BYTES: usize = 10 * 1024 * 1024;
/// Longest variable name.
const MAX_NAME_CHARS: usize = 80;

/// The variables one flow (the execution, a Parallel branch, a Map iteration) sees.
#[derive(Debug, Clone, Default)]
pub(crate) struct Variables {
    /// The enclosing scope's variables, read-only here.
    outer: Option<Arc<Variables>>,
    own: HashMap<String, (Value, usize)>,
}

impl Variables {
    /// A new scope for a branch or iteration, reading `self` as its outer scope.
    pub(crate) fn child(self: &Arc<Self>) -> Self {
        Self {
            outer: Some(Arc::clone(self)),
            own: HashMap::new(),
        }
    }

    pub(crate) fn get(&self, name: &str) -> Option<&Value> {
        match self.own.get(name) {
            Some((value, _)) => Some(value),
            None => self.outer.as_ref().and_then(|outer| outer.get(name)),
        }
    }

    fn total_bytes(&self) -> usize {
        self.own.values().map(|(_, size)| size).sum::<usize>()
            + self.outer.as_ref().map_or(0, |outer| outer.total_bytes())
    }

    /// Stores the values an `Assign` produced, checking Step Functions' size limits.
    pub(crate) fn assign(&mut self, values: Vec<(String, Value)>) -> Result<(), StateError> {
        let mut sized = Vec::with_capacity(values.len());
        let mut assign_bytes = 0;
        for (name, value) in values {
            let size = crate::engine::json_size(&value);
            if size > MAX_VARIABLE_BYTES {
                return Err(StateError::new(
                    names::DATA_LIMIT_EXCEEDED,
                    format!(
                        "The value assigned to the variable '{name}' is {size} bytes, over the limit of {MAX_VARIABLE_BYTES} bytes."
                    ),
                ));
            }
            assign_bytes += size;
            sized.push((name, value, size));
        }
        if assign_bytes > MAX_ASSIGN_BYTES {
            return Err(StateError::new(
                names::DATA_LIMIT_EXCEEDED,
                format!(
                    "The values of the Assign field are {assign_bytes} bytes together, over the limit of {MAX_ASSIGN_BYTES} bytes."
                ),
            ));
        }
        let replaced: usize = sized
            .iter()
            .filter_map(|(name, _, _)| self.own.get(name).map(|(_, size)| *size))
            .sum();
        let total = self.total_bytes() - replaced + assign_bytes;
        if total > MAX_TOTAL_BYTES {
            return Err(StateError::new(
                names::DATA_LIMIT_EXCEEDED,
                format!(
                    "The variables would hold {total} bytes, over the limit of {MAX_TOTAL_BYTES} bytes for an execution."
                ),
            ));
        }
        for (name, value, size) in sized {
            self.own.insert(name, (value, size));
        }
        Ok(())
    }
}

/// Whether `name` may name a variable: a letter or `_`, then letters, digits or `_`,
/// at most 80 characters, and not the reserved `states`.
pub(crate) fn check_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let valid_start = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if !valid_start || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!(
            "'{name}' is not a valid variable name (a letter or '_', then letters, digits or '_')"
        ));
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(format!(
            "variable name '{name}' is longer than {MAX_NAME_CHARS} characters"
        ));
    }
    if name == "states" {
        return Err("'states' is reserved and cannot be assigned".into());
    }
    Ok(())
}

/// A compiled `Assign` field. In a JSONPath state each key names a variable (`name`
/// for a literal value, `name.$` for a path or intrinsic); in a JSONata state each
/// value may hold `{% … %}` expressions.
#[derive(Debug, Clone)]
pub(crate) struct Assign {
    values: Values,
    names: Vec<String>,
}

#[derive(Debug, Clone)]
enum Values {
    Path(Template),
    Jsonata(Vec<(String, JsonataTemplate)>),
}

impl Assign {
    /// Compiles an `Assign` object; errors carry the offending key.
    pub(crate) fn compile(value: &Value) -> Result<Self, (String, String)> {
        let Value::Object(map) = value else {
            return Err((String::new(), "must be an object".into()));
        };
        let mut names = Vec::with_capacity(map.len());
        for key in map.keys() {
            let name = key.strip_suffix(".$").unwrap_or(key);
            check_name(name).map_err(|why| (key.clone(), why))?;
            names.push(name.to_owned());
        }
        Ok(Self {
            values: Values::Path(Template::compile(value)?),
            names,
        })
    }

    /// Compiles a JSONata-mode `Assign` object.
    pub(crate) fn compile_jsonata(value: &Value) -> Result<Self, (String, String)> {
        let Value::Object(map) = value else {
            return Err((String::new(), "must be an object".into()));
        };
        let mut values = Vec::with_capacity(map.len());
        for (name, item) in map {
            check_name(name).map_err(|why| (name.clone(), why))?;
            let template = JsonataTemplate::compile(item).map_err(|(at, why)| {
                let at = if at.is_empty() {
                    name.clone()
                } else {
                    format!("{name}.{at}")
                };
                (at, why)
            })?;
            values.push((name.clone(), template));
        }
        Ok(Self {
            names: map.keys().cloned().collect(),
            values: Values::Jsonata(values),
        })
    }

    /// The variable names this assigns.
    pub(crate) fn names(&self) -> &[String] {
        &self.names
    }

    /// Evaluates the values, without storing them: JSONPath values against `scope`,
    /// JSONata ones with `states` as `$states`.
    pub(crate) fn evaluate(
        &self,
        scope: &crate::path::Scope<'_>,
        states: &States<'_>,
    ) -> Result<Vec<(String, Value)>, StateError> {
        match &self.values {
            Values::Path(template) => match template.render(scope)? {
                Value::Object(map) => Ok(map.into_iter().collect()),
                other => Err(StateError::new(
                    names::RUNTIME,
                    format!("the Assign field evaluated to {other}, not an object"),
                )),
            },
            Values::Jsonata(values) => values
                .iter()
                .map(|(name, template)| {
                    Ok((name.clone(), template.evaluate(states, scope.variables)?))
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn names_follow_the_documented_rules() {
        for good in ["x", "_x", "order_id2", &"a".repeat(80)] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in ["", "1x", "a-b", "a.b", "states", &"a".repeat(81)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn inner_scopes_read_outer_variables_and_keep_their_own() {
        let mut outer = Variables::default();
        outer.assign(vec![("a".into(), json!(1))]).unwrap();
        let outer = Arc::new(outer);
        let mut inner = outer.child();
        assert_eq!(inner.get("a"), Some(&json!(1)));
        inner.assign(vec![("b".into(), json!(2))]).unwrap();
        assert_eq!(inner.get("b"), Some(&json!(2)));
        assert_eq!(outer.get("b"), None);
    }

    #[test]
    fn size_limits_are_enforced() {
        let mut vars = Variables::default();
        let big = json!("x".repeat(MAX_VARIABLE_BYTES));
        let err = vars.assign(vec![("big".into(), big)]).unwrap_err();
        assert_eq!(err.error, names::DATA_LIMIT_EXCEEDED);
        let half = || json!("x".repeat(MAX_ASSIGN_BYTES / 2));
        let err = vars
            .assign(vec![("a".into(), half()), ("b".into(), half())])
            .unwrap_err();
        assert_eq!(err.error, names::DATA_LIMIT_EXCEEDED);
        assert!(vars.get("a").is_none(), "a refused Assign stores nothing");
        // Replacing a variable does not count its old value.
        for _ in 0..100 {
            vars.assign(vec![("a".into(), half())]).unwrap();
        }
    }
}
