//! The JSONPath dialect Step Functions accepts in JSONPath-mode states.
//!
//! Step Functions evaluates paths with Jayway semantics: a *definite* path (only
//! `.name`, `['name']` and `[n]` steps) yields one value or fails when nothing is
//! there; any other path (wildcards, slices, unions, deep scan, filters) yields an
//! array of every match, possibly empty. *Reference paths* (`ResultPath`, `ItemsPath`…)
//! are definite paths and are also the only ones that can be written to.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::fmt;
use std::fmt::Write as _;

use serde_json::{Map, Number, Value};

use crate::error::{StateError, names};
use crate::variables::Variables;

/// Which document a path is evaluated against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Root {
    /// `$…`: the state's (effective) input.
    Input,
    /// `$$…`: the context object.
    Context,
    /// `$name…`: a workflow variable.
    Variable,
}

/// What paths are evaluated against: the input (`$`), the context object (`$$`) and
/// the workflow variables (`$name`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Scope<'a> {
    pub(crate) input: &'a Value,
    pub(crate) context: &'a Value,
    pub(crate) variables: &'a Variables,
}

impl<'a> Scope<'a> {
    pub(crate) fn new(input: &'a Value, context: &'a Value, variables: &'a Variables) -> Self {
        Self {
            input,
            context,
            variables,
        }
    }
}

/// A parsed path, kept with its source text for error messages.
#[derive(Debug, Clone)]
pub(crate) struct JsonPath {
    text: String,
    root: Root,
    /// The variable a `Root::Variable` path starts from.
    variable: String,
    segments: Vec<Segment>,
}

#[derive(Debug, Clone)]
enum Segment {
    Child(String),
    Index(i64),
    Wildcard,
    Names(Vec<String>),
    Indexes(Vec<i64>),
    Slice {
        start: Option<i64>,
        end: Option<i64>,
        step: Option<i64>,
    },
    Filter(Box<FilterExpr>),
    /// `..` followed by the step it applies to every descendant.
    Descendant(Box<Segment>),
}

#[derive(Debug, Clone)]
enum FilterExpr {
    Or(Vec<FilterExpr>),
    And(Vec<FilterExpr>),
    Not(Box<FilterExpr>),
    Exists(Operand),
    Compare(Operand, CompareOp, Operand),
}

#[derive(Debug, Clone, Copy)]
enum CompareOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone)]
enum Operand {
    /// `@…`: relative to the element being filtered.
    Current(Vec<Segment>),
    /// `$…`: relative to the document root.
    Root(Vec<Segment>),
    Literal(Value),
}

/// A path that does not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PathSyntaxError(pub String);

impl fmt::Display for PathSyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl JsonPath {
    /// Parses a path starting with `$` (input) or `$$` (context object).
    pub(crate) fn parse(text: &str) -> Result<Self, PathSyntaxError> {
        let mut parser = Parser::new(text, false);
        if !parser.eat('$') {
            return Err(PathSyntaxError(format!(
                "path '{text}' must start with '$'"
            )));
        }
        let mut variable = String::new();
        let root = if parser.eat('$') {
            Root::Context
        } else if parser
            .peek()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        {
            while let Some(c) = parser
                .peek()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
            {
                variable.push(c);
                parser.pos += 1;
            }
            Root::Variable
        } else {
            Root::Input
        };
        let segments = parser.segments()?;
        if !parser.at_end() {
            return Err(parser.error("unexpected character"));
        }
        Ok(Self {
            text: text.to_owned(),
            root,
            variable,
            segments,
        })
    }

    /// Parses a path that names at most one node, in any document (e.g. `ItemsPath`).
    pub(crate) fn parse_definite(text: &str) -> Result<Self, PathSyntaxError> {
        let path = Self::parse(text)?;
        if !path.is_definite() {
            return Err(PathSyntaxError(format!(
                "'{text}' is not a reference path: only '.name', \"['name']\" and '[index]' steps may be used"
            )));
        }
        Ok(path)
    }

    /// The variable a `$name…` path reads, if it is one.
    pub(crate) fn variable(&self) -> Option<&str> {
        (self.root == Root::Variable).then_some(self.variable.as_str())
    }

    /// Evaluates the path in the document its root names. `Ok(None)` means a definite
    /// path found nothing; a variable never assigned is a `States.Runtime` error.
    pub(crate) fn select_in(&self, scope: &Scope<'_>) -> Result<Option<Value>, StateError> {
        Ok(self.select_in_ref(scope)?.map(Cow::into_owned))
    }

    /// [`select_in`](Self::select_in) without copying what a definite path finds.
    pub(crate) fn select_in_ref<'a>(
        &self,
        scope: &Scope<'a>,
    ) -> Result<Option<Cow<'a, Value>>, StateError> {
        let document = match self.root {
            Root::Input => scope.input,
            Root::Context => scope.context,
            Root::Variable => scope.variables.get(&self.variable).ok_or_else(|| {
                StateError::new(
                    names::RUNTIME,
                    format!(
                        "The variable '${}' referenced by '{}' has not been assigned",
                        self.variable, self.text
                    ),
                )
            })?,
        };
        Ok(self.select_ref(document))
    }

    /// Parses a path that must name at most one node (e.g. `ResultPath`).
    pub(crate) fn parse_reference(text: &str) -> Result<Self, PathSyntaxError> {
        let path = Self::parse(text)?;
        if path.root == Root::Context {
            return Err(PathSyntaxError(format!(
                "reference path '{text}' cannot refer to the context object"
            )));
        }
        if path.root == Root::Variable {
            return Err(PathSyntaxError(format!(
                "reference path '{text}' cannot refer to a variable"
            )));
        }
        if !path.is_definite() {
            return Err(PathSyntaxError(format!(
                "'{text}' is not a reference path: only '.name', \"['name']\" and '[index]' steps may be used"
            )));
        }
        Ok(path)
    }

    /// The bracketed form Jayway prints a definite path in, as Step Functions quotes it
    /// in error causes: `$.a[0]` is `$['a'][0]`.
    pub(crate) fn normalized(&self) -> String {
        let mut out = match self.root {
            Root::Input => "$".to_owned(),
            Root::Context => "$$".to_owned(),
            Root::Variable => format!("${}", self.variable),
        };
        for segment in &self.segments {
            match segment {
                Segment::Child(name) => {
                    out.push_str("['");
                    out.push_str(name);
                    out.push_str("']");
                }
                Segment::Index(i) => {
                    let _ = write!(out, "[{i}]");
                }
                _ => out.push_str("[*]"),
            }
        }
        out
    }

    pub(crate) fn root(&self) -> Root {
        self.root
    }

    /// A definite path names at most one node, so its result is not wrapped in an array.
    pub(crate) fn is_definite(&self) -> bool {
        self.segments
            .iter()
            .all(|s| matches!(s, Segment::Child(_) | Segment::Index(_)))
    }

    /// `$` itself: the whole input.
    pub(crate) fn is_identity(&self) -> bool {
        self.root == Root::Input && self.segments.is_empty()
    }

    /// Evaluates the path. `None` means a definite path found nothing.
    #[cfg(test)]
    pub(crate) fn select(&self, document: &Value) -> Option<Value> {
        self.select_ref(document).map(Cow::into_owned)
    }

    /// [`select`](Self::select), borrowing what a definite path finds.
    fn select_ref<'a>(&self, document: &'a Value) -> Option<Cow<'a, Value>> {
        if self.is_definite() {
            // One node at most: walk to it without collecting.
            let mut node = document;
            for segment in &self.segments {
                node = match segment {
                    Segment::Child(name) => node.as_object()?.get(name)?,
                    Segment::Index(index) => {
                        let array = node.as_array()?;
                        &array[resolve_index(*index, array.len())?]
                    }
                    _ => return None,
                };
            }
            return Some(Cow::Borrowed(node));
        }
        let nodes = select_nodes(&self.segments, document, document);
        Some(Cow::Owned(Value::Array(
            nodes.into_iter().cloned().collect(),
        )))
    }

    /// Takes what a definite input path (`$…`) names out of `document`, leaving `null`
    /// behind, instead of copying it. `None` for other paths, or when nothing is there.
    pub(crate) fn take_definite(&self, document: &mut Value) -> Option<Value> {
        if self.root != Root::Input || !self.is_definite() {
            return None;
        }
        let mut node = document;
        for segment in &self.segments {
            node = match segment {
                Segment::Child(name) => node.as_object_mut()?.get_mut(name)?,
                Segment::Index(index) => {
                    let array = node.as_array_mut()?;
                    let i = resolve_index(*index, array.len())?;
                    &mut array[i]
                }
                _ => return None,
            };
        }
        Some(node.take())
    }

    /// Writes `value` at this reference path inside `target`, creating missing
    /// intermediate objects, as `ResultPath` does. Fails when a step meets a value of
    /// the wrong kind (e.g. a field of a string) or an array index out of range.
    pub(crate) fn assign(&self, target: &mut Value, value: Value) -> Result<(), ()> {
        debug_assert!(self.is_definite());
        let Some((last, init)) = self.segments.split_last() else {
            *target = value;
            return Ok(());
        };
        let mut node = target;
        for segment in init {
            node = match segment {
                Segment::Child(name) => node
                    .as_object_mut()
                    .ok_or(())?
                    .entry(name.clone())
                    .or_insert_with(|| Value::Object(Map::new())),
                Segment::Index(index) => {
                    let array = node.as_array_mut().ok_or(())?;
                    let i = resolve_index(*index, array.len()).ok_or(())?;
                    &mut array[i]
                }
                _ => return Err(()),
            };
        }
        match last {
            Segment::Child(name) => {
                node.as_object_mut().ok_or(())?.insert(name.clone(), value);
            }
            Segment::Index(index) => {
                let array = node.as_array_mut().ok_or(())?;
                let i = resolve_index(*index, array.len()).ok_or(())?;
                array[i] = value;
            }
            _ => return Err(()),
        }
        Ok(())
    }
}

impl fmt::Display for JsonPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

fn resolve_index(index: i64, len: usize) -> Option<usize> {
    let len = i64::try_from(len).ok()?;
    let i = if index < 0 { len + index } else { index };
    if (0..len).contains(&i) {
        usize::try_from(i).ok()
    } else {
        None
    }
}

fn select_nodes<'a>(segments: &[Segment], start: &'a Value, root: &'a Value) -> Vec<&'a Value> {
    let mut nodes = vec![start];
    for segment in segments {
        let mut next = Vec::new();
        for node in nodes {
            apply_segment(segment, node, root, &mut next);
        }
        nodes = next;
    }
    nodes
}

fn apply_segment<'a>(
    segment: &Segment,
    node: &'a Value,
    root: &'a Value,
    out: &mut Vec<&'a Value>,
) {
    match segment {
        Segment::Child(name) => {
            if let Some(v) = node.as_object().and_then(|o| o.get(name)) {
                out.push(v);
            }
        }
        Segment::Index(index) => {
            if let Some(array) = node.as_array()
                && let Some(i) = resolve_index(*index, array.len())
            {
                out.push(&array[i]);
            }
        }
        Segment::Wildcard => match node {
            Value::Object(o) => out.extend(o.values()),
            Value::Array(a) => out.extend(a.iter()),
            _ => {}
        },
        Segment::Names(names) => {
            if let Some(o) = node.as_object() {
                out.extend(names.iter().filter_map(|n| o.get(n)));
            }
        }
        Segment::Indexes(indexes) => {
            if let Some(a) = node.as_array() {
                out.extend(
                    indexes
                        .iter()
                        .filter_map(|i| resolve_index(*i, a.len()).map(|i| &a[i])),
                );
            }
        }
        Segment::Slice { start, end, step } => {
            if let Some(a) = node.as_array() {
                for i in slice_indexes(a.len(), *start, *end, *step) {
                    out.push(&a[i]);
                }
            }
        }
        Segment::Filter(expr) => match node {
            Value::Array(a) => out.extend(a.iter().filter(|item| expr.test(item, root))),
            Value::Object(_) if expr.test(node, root) => out.push(node),
            _ => {}
        },
        Segment::Descendant(inner) => {
            let mut all = Vec::new();
            collect_descendants(node, &mut all);
            for n in all {
                apply_segment(inner, n, root, out);
            }
        }
    }
}

fn collect_descendants<'a>(node: &'a Value, out: &mut Vec<&'a Value>) {
    out.push(node);
    match node {
        Value::Object(o) => o.values().for_each(|v| collect_descendants(v, out)),
        Value::Array(a) => a.iter().for_each(|v| collect_descendants(v, out)),
        _ => {}
    }
}

/// Python-style slice bounds, as Jayway applies them.
fn slice_indexes(
    len: usize,
    start: Option<i64>,
    end: Option<i64>,
    step: Option<i64>,
) -> Vec<usize> {
    let Ok(len) = i64::try_from(len) else {
        return Vec::new();
    };
    let step = step.unwrap_or(1);
    if step == 0 {
        return Vec::new();
    }
    let clamp = |v: i64, lo: i64, hi: i64| v.clamp(lo, hi);
    let norm = |v: i64| if v < 0 { v + len } else { v };
    let mut out = Vec::new();
    if step > 0 {
        let mut i = clamp(start.map_or(0, norm), 0, len);
        let bound = clamp(end.map_or(len, norm), 0, len);
        while i < bound {
            out.push(i);
            i += step;
        }
    } else {
        let mut i = clamp(start.map_or(len - 1, norm), -1, len - 1);
        let bound = clamp(end.map_or(-1, norm), -1, len - 1);
        while i > bound {
            out.push(i);
            i += step;
        }
    }
    out.into_iter()
        .filter_map(|i| usize::try_from(i).ok())
        .collect()
}

impl FilterExpr {
    fn test(&self, current: &Value, root: &Value) -> bool {
        match self {
            Self::Or(parts) => parts.iter().any(|p| p.test(current, root)),
            Self::And(parts) => parts.iter().all(|p| p.test(current, root)),
            Self::Not(inner) => !inner.test(current, root),
            Self::Exists(operand) => match operand.resolve(current, root) {
                Some(Value::Bool(b)) => b,
                Some(Value::Null) | None => false,
                Some(_) => true,
            },
            Self::Compare(left, op, right) => {
                let (Some(l), Some(r)) =
                    (left.resolve(current, root), right.resolve(current, root))
                else {
                    return false;
                };
                compare(&l, *op, &r)
            }
        }
    }
}

impl Operand {
    fn resolve(&self, current: &Value, root: &Value) -> Option<Value> {
        let (segments, start) = match self {
            Self::Literal(v) => return Some(v.clone()),
            Self::Current(s) => (s, current),
            Self::Root(s) => (s, root),
        };
        let nodes = select_nodes(segments, start, root);
        let definite = segments
            .iter()
            .all(|s| matches!(s, Segment::Child(_) | Segment::Index(_)));
        if definite {
            nodes.first().map(|v| (*v).clone())
        } else {
            Some(Value::Array(nodes.into_iter().cloned().collect()))
        }
    }
}

fn compare(left: &Value, op: CompareOp, right: &Value) -> bool {
    let ordering = match (left, right) {
        (Value::Number(a), Value::Number(b)) => compare_numbers(a, b),
        (Value::String(a), Value::String(b)) => Some(a.cmp(b)),
        _ => None,
    };
    match op {
        CompareOp::Eq => ordering.map_or_else(|| left == right, Ordering::is_eq),
        CompareOp::Ne => ordering.map_or_else(|| left != right, Ordering::is_ne),
        CompareOp::Lt => ordering.is_some_and(Ordering::is_lt),
        CompareOp::Le => ordering.is_some_and(Ordering::is_le),
        CompareOp::Gt => ordering.is_some_and(Ordering::is_gt),
        CompareOp::Ge => ordering.is_some_and(Ordering::is_ge),
    }
}

/// Compares JSON numbers exactly when both are integers, else as doubles.
pub(crate) fn compare_numbers(a: &Number, b: &Number) -> Option<Ordering> {
    if let (Some(x), Some(y)) = (a.as_i64(), b.as_i64()) {
        return Some(x.cmp(&y));
    }
    if let (Some(x), Some(y)) = (a.as_u64(), b.as_u64()) {
        return Some(x.cmp(&y));
    }
    a.as_f64()?.partial_cmp(&b.as_f64()?)
}

struct Parser<'a> {
    text: &'a str,
    chars: Vec<char>,
    pos: usize,
    /// Inside a filter, names also end at blanks and operator characters.
    in_filter: bool,
}

impl<'a> Parser<'a> {
    fn new(text: &'a str, in_filter: bool) -> Self {
        Self {
            text,
            chars: text.chars().collect(),
            pos: 0,
            in_filter,
        }
    }

    fn error(&self, what: &str) -> PathSyntaxError {
        PathSyntaxError(format!(
            "invalid path '{}': {what} at offset {}",
            self.text, self.pos
        ))
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn peek_at(&self, offset: usize) -> Option<char> {
        self.chars.get(self.pos + offset).copied()
    }

    fn at_end(&self) -> bool {
        self.pos >= self.chars.len()
    }

    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn skip_blanks(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.pos += 1;
        }
    }

    fn expect(&mut self, c: char) -> Result<(), PathSyntaxError> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(self.error(&format!("expected '{c}'")))
        }
    }

    fn segments(&mut self) -> Result<Vec<Segment>, PathSyntaxError> {
        let mut segments = Vec::new();
        loop {
            match self.peek() {
                Some('.') => {
                    self.pos += 1;
                    if self.eat('.') {
                        let inner = match self.peek() {
                            Some('[') => self.bracket()?,
                            Some('*') => {
                                self.pos += 1;
                                Segment::Wildcard
                            }
                            _ => Segment::Child(self.name()?),
                        };
                        segments.push(Segment::Descendant(Box::new(inner)));
                    } else if self.eat('*') {
                        segments.push(Segment::Wildcard);
                    } else {
                        segments.push(Segment::Child(self.name()?));
                    }
                }
                Some('[') => segments.push(self.bracket()?),
                _ => return Ok(segments),
            }
        }
    }

    /// A dot-notation name; `\` escapes the next character (e.g. `$.a\.b`).
    fn name(&mut self) -> Result<String, PathSyntaxError> {
        let mut name = String::new();
        while let Some(c) = self.peek() {
            let ends = matches!(c, '.' | '[')
                || (self.in_filter
                    && (c.is_whitespace() || matches!(c, ')' | '=' | '!' | '<' | '>' | '&' | '|')));
            if ends {
                break;
            }
            self.pos += 1;
            if c == '\\' {
                let escaped = self.peek().ok_or_else(|| self.error("dangling '\\'"))?;
                self.pos += 1;
                name.push(escaped);
            } else {
                name.push(c);
            }
        }
        if name.is_empty() {
            Err(self.error("expected a field name"))
        } else {
            Ok(name)
        }
    }

    fn bracket(&mut self) -> Result<Segment, PathSyntaxError> {
        self.expect('[')?;
        self.skip_blanks();
        let segment = match self.peek() {
            Some('\'' | '"') => {
                let mut names = vec![self.quoted()?];
                self.skip_blanks();
                while self.eat(',') {
                    self.skip_blanks();
                    names.push(self.quoted()?);
                    self.skip_blanks();
                }
                if names.len() == 1 {
                    Segment::Child(names.remove(0))
                } else {
                    Segment::Names(names)
                }
            }
            Some('*') => {
                self.pos += 1;
                Segment::Wildcard
            }
            Some('?') => {
                self.pos += 1;
                self.skip_blanks();
                self.expect('(')?;
                let expr = self.filter_or()?;
                self.skip_blanks();
                self.expect(')')?;
                Segment::Filter(Box::new(expr))
            }
            _ => self.index_or_slice()?,
        };
        self.skip_blanks();
        self.expect(']')?;
        Ok(segment)
    }

    fn quoted(&mut self) -> Result<String, PathSyntaxError> {
        let quote = self.peek().ok_or_else(|| self.error("expected a quote"))?;
        self.pos += 1;
        let mut out = String::new();
        loop {
            let c = self
                .peek()
                .ok_or_else(|| self.error("unterminated string"))?;
            self.pos += 1;
            if c == quote {
                return Ok(out);
            }
            if c == '\\' {
                let escaped = self
                    .peek()
                    .ok_or_else(|| self.error("unterminated string"))?;
                self.pos += 1;
                out.push(escaped);
            } else {
                out.push(c);
            }
        }
    }

    fn integer(&mut self) -> Result<Option<i64>, PathSyntaxError> {
        self.skip_blanks();
        let start = self.pos;
        if self.peek() == Some('-') {
            self.pos += 1;
        }
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.pos += 1;
        }
        if self.pos == start {
            return Ok(None);
        }
        let digits: String = self.chars[start..self.pos].iter().collect();
        let value = digits.parse().map_err(|_| self.error("invalid number"))?;
        self.skip_blanks();
        Ok(Some(value))
    }

    fn index_or_slice(&mut self) -> Result<Segment, PathSyntaxError> {
        let first = self.integer()?;
        if self.peek() == Some(':') {
            self.pos += 1;
            let end = self.integer()?;
            let step = if self.eat(':') { self.integer()? } else { None };
            return Ok(Segment::Slice {
                start: first,
                end,
                step,
            });
        }
        let first = first
            .ok_or_else(|| self.error("expected an index, a slice, '*', '?' or a quoted name"))?;
        let mut indexes = vec![first];
        while self.eat(',') {
            indexes.push(
                self.integer()?
                    .ok_or_else(|| self.error("expected an index"))?,
            );
        }
        if indexes.len() == 1 {
            Ok(Segment::Index(first))
        } else {
            Ok(Segment::Indexes(indexes))
        }
    }

    fn filter_or(&mut self) -> Result<FilterExpr, PathSyntaxError> {
        let mut parts = vec![self.filter_and()?];
        loop {
            self.skip_blanks();
            if self.peek() == Some('|') && self.peek_at(1) == Some('|') {
                self.pos += 2;
                parts.push(self.filter_and()?);
            } else {
                break;
            }
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            FilterExpr::Or(parts)
        })
    }

    fn filter_and(&mut self) -> Result<FilterExpr, PathSyntaxError> {
        let mut parts = vec![self.filter_unary()?];
        loop {
            self.skip_blanks();
            if self.peek() == Some('&') && self.peek_at(1) == Some('&') {
                self.pos += 2;
                parts.push(self.filter_unary()?);
            } else {
                break;
            }
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            FilterExpr::And(parts)
        })
    }

    fn filter_unary(&mut self) -> Result<FilterExpr, PathSyntaxError> {
        self.skip_blanks();
        if self.peek() == Some('!') && self.peek_at(1) != Some('=') {
            self.pos += 1;
            return Ok(FilterExpr::Not(Box::new(self.filter_unary()?)));
        }
        if self.eat('(') {
            let inner = self.filter_or()?;
            self.skip_blanks();
            self.expect(')')?;
            return Ok(inner);
        }
        let left = self.operand()?;
        self.skip_blanks();
        let op = match (self.peek(), self.peek_at(1)) {
            (Some('='), Some('=')) => Some((CompareOp::Eq, 2)),
            (Some('!'), Some('=')) => Some((CompareOp::Ne, 2)),
            (Some('<'), Some('=')) => Some((CompareOp::Le, 2)),
            (Some('>'), Some('=')) => Some((CompareOp::Ge, 2)),
            (Some('<'), _) => Some((CompareOp::Lt, 1)),
            (Some('>'), _) => Some((CompareOp::Gt, 1)),
            _ => None,
        };
        let Some((op, width)) = op else {
            return Ok(FilterExpr::Exists(left));
        };
        self.pos += width;
        self.skip_blanks();
        let right = self.operand()?;
        Ok(FilterExpr::Compare(left, op, right))
    }

    fn operand(&mut self) -> Result<Operand, PathSyntaxError> {
        self.skip_blanks();
        let was_in_filter = self.in_filter;
        self.in_filter = true;
        let operand = match self.peek() {
            Some('@') => {
                self.pos += 1;
                Operand::Current(self.segments()?)
            }
            Some('$') => {
                self.pos += 1;
                Operand::Root(self.segments()?)
            }
            Some('\'' | '"') => Operand::Literal(Value::String(self.quoted()?)),
            Some(c) if c == '-' || c.is_ascii_digit() => {
                let start = self.pos;
                self.pos += 1;
                while self
                    .peek()
                    .is_some_and(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-'))
                {
                    self.pos += 1;
                }
                let text: String = self.chars[start..self.pos].iter().collect();
                let value: Value =
                    serde_json::from_str(&text).map_err(|_| self.error("invalid number"))?;
                Operand::Literal(value)
            }
            _ => {
                let word = self.name()?;
                match word.as_str() {
                    "true" => Operand::Literal(Value::Bool(true)),
                    "false" => Operand::Literal(Value::Bool(false)),
                    "null" => Operand::Literal(Value::Null),
                    _ => return Err(self.error("expected '@', '$' or a literal in filter")),
                }
            }
        };
        self.in_filter = was_in_filter;
        Ok(operand)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn select(path: &str, doc: &Value) -> Option<Value> {
        JsonPath::parse(path).unwrap().select(doc)
    }

    fn store() -> Value {
        json!({
            "store": {
                "book": [
                    {"category": "reference", "author": "Nigel Rees", "title": "Sayings", "price": 8.95},
                    {"category": "fiction", "author": "Evelyn Waugh", "title": "Sword", "price": 12.99},
                    {"category": "fiction", "author": "Herman Melville", "title": "Moby Dick", "isbn": "0-553", "price": 8.99},
                    {"category": "fiction", "author": "J. R. R. Tolkien", "title": "LOTR", "isbn": "0-395", "price": 22.99}
                ],
                "bicycle": {"color": "red", "price": 19.95}
            },
            "expensive": 10
        })
    }

    #[test]
    fn definite_paths_return_the_node_itself() {
        let doc = json!({"foo": 123, "bar": ["a", "b", "c"], "car": {"cdr": true}});
        assert_eq!(select("$.foo", &doc), Some(json!(123)));
        assert_eq!(select("$.bar", &doc), Some(json!(["a", "b", "c"])));
        assert_eq!(select("$.car.cdr", &doc), Some(json!(true)));
        assert_eq!(select("$['car']['cdr']", &doc), Some(json!(true)));
        assert_eq!(select("$.bar[1]", &doc), Some(json!("b")));
        assert_eq!(select("$.bar[-1]", &doc), Some(json!("c")));
        assert_eq!(select("$", &doc), Some(doc.clone()));
    }

    #[test]
    fn definite_paths_report_missing_nodes() {
        let doc = json!({"a": {"b": null}, "list": [1]});
        assert_eq!(select("$.a.b", &doc), Some(Value::Null));
        assert_eq!(select("$.a.c", &doc), None);
        assert_eq!(select("$.list[3]", &doc), None);
        assert_eq!(select("$.a.b.c", &doc), None);
    }

    #[test]
    fn indefinite_paths_collect_matches_into_an_array() {
        let doc = store();
        assert_eq!(
            select("$.store.book[*].author", &doc),
            Some(json!([
                "Nigel Rees",
                "Evelyn Waugh",
                "Herman Melville",
                "J. R. R. Tolkien"
            ]))
        );
        assert_eq!(
            select("$.store.book[*].isbn", &doc),
            Some(json!(["0-553", "0-395"]))
        );
        assert_eq!(select("$.store.book[*].missing", &doc), Some(json!([])));
        assert_eq!(
            select("$.store.book[0,2].price", &doc),
            Some(json!([8.95, 8.99]))
        );
        assert_eq!(
            select("$.store.bicycle['color','price']", &doc),
            Some(json!(["red", 19.95]))
        );
        assert_eq!(
            select("$.store.bicycle.*", &doc),
            Some(json!(["red", 19.95]))
        );
    }

    #[test]
    fn slices_follow_python_rules() {
        let doc = json!({"vals": [0, 10, 20, 30, 40, 50]});
        assert_eq!(select("$.vals[3:]", &doc), Some(json!([30, 40, 50])));
        assert_eq!(select("$.vals[-3:]", &doc), Some(json!([30, 40, 50])));
        assert_eq!(select("$.vals[:2]", &doc), Some(json!([0, 10])));
        assert_eq!(select("$.vals[1:5:2]", &doc), Some(json!([10, 30])));
        assert_eq!(select("$.vals[::-2]", &doc), Some(json!([50, 30, 10])));
        assert_eq!(select("$.vals[10:]", &doc), Some(json!([])));
    }

    #[test]
    fn deep_scan_finds_every_level() {
        let doc = store();
        let mut prices: Vec<f64> = select("$..price", &doc)
            .unwrap()
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        prices.sort_by(f64::total_cmp);
        assert_eq!(prices, vec![8.95, 8.99, 12.99, 19.95, 22.99]);
        assert_eq!(select("$..book[2].title", &doc), Some(json!(["Moby Dick"])));
    }

    #[test]
    fn filters_compare_fields_of_each_element() {
        let doc = store();
        assert_eq!(
            select("$.store.book[?(@.price < 10)].title", &doc),
            Some(json!(["Sayings", "Moby Dick"]))
        );
        assert_eq!(
            select("$.store.book[?(@.isbn)].title", &doc),
            Some(json!(["Moby Dick", "LOTR"]))
        );
        assert_eq!(
            select(
                "$.store.book[?(@.category == 'fiction' && @.price > $.expensive)].title",
                &doc
            ),
            Some(json!(["Sword", "LOTR"]))
        );
        assert_eq!(
            select(
                "$.store.book[?(@.author == \"Nigel Rees\" || !(@.price < 20))].title",
                &doc
            ),
            Some(json!(["Sayings", "LOTR"]))
        );
    }

    #[test]
    fn escaped_names_and_unicode_parse() {
        let doc = json!({"store.book": 1, "a": {"@b": 2}, "Ж中": 3});
        assert_eq!(select("$.store\\.book", &doc), Some(json!(1)));
        assert_eq!(select("$.a.\\@b", &doc), Some(json!(2)));
        assert_eq!(select("$.Ж中", &doc), Some(json!(3)));
    }

    #[test]
    fn bracket_names_with_escaped_quotes() {
        let doc = json!({"it's": 1, "say \"hi\"": 2, "back\\slash": 3});
        assert_eq!(select(r"$['it\'s']", &doc), Some(json!(1)));
        assert_eq!(select(r#"$["say \"hi\""]"#, &doc), Some(json!(2)));
        assert_eq!(select(r#"$['say "hi"']"#, &doc), Some(json!(2)));
        assert_eq!(select(r"$['back\\slash']", &doc), Some(json!(3)));
    }

    #[test]
    fn normalized_form_is_bracketed() {
        let path = JsonPath::parse("$.a['b c'][0]").unwrap();
        assert_eq!(path.normalized(), "$['a']['b c'][0]");
    }

    #[test]
    fn syntax_errors_are_reported() {
        for bad in [
            "foo",
            "$.",
            "$[",
            "$['a'",
            "$[?(@.a <)]",
            "$.a[x]",
            "$..",
            "$1a",
            "$a-b",
        ] {
            assert!(JsonPath::parse(bad).is_err(), "{bad} should not parse");
        }
    }

    #[test]
    fn reference_paths_reject_indefinite_steps() {
        assert!(JsonPath::parse_reference("$.a.b[0]['c']").is_ok());
        for bad in [
            "$.a[*]",
            "$..a",
            "$.a[0:1]",
            "$.a[?(@.x)]",
            "$$.Execution",
            "$.a[0,1]",
        ] {
            assert!(
                JsonPath::parse_reference(bad).is_err(),
                "{bad} is not a reference path"
            );
        }
    }

    #[test]
    fn variable_paths_read_variables() {
        let path = JsonPath::parse("$order.items[0]").unwrap();
        assert_eq!(path.root(), Root::Variable);
        assert_eq!(path.variable(), Some("order"));
        let mut vars = Variables::default();
        let input = json!({});
        let scope = Scope::new(&input, &input, &vars);
        assert_eq!(path.select_in(&scope).unwrap_err().error, names::RUNTIME);
        vars.assign(vec![("order".into(), json!({"items": ["a"]}))])
            .unwrap();
        let scope = Scope::new(&input, &input, &vars);
        assert_eq!(path.select_in(&scope).unwrap(), Some(json!("a")));
        assert!(JsonPath::parse_reference("$order").is_err());
        assert!(JsonPath::parse("$_x").unwrap().variable() == Some("_x"));
        assert_eq!(JsonPath::parse("$.x").unwrap().variable(), None);
    }

    #[test]
    fn context_paths_are_marked() {
        let path = JsonPath::parse("$$.Execution.Name").unwrap();
        assert_eq!(path.root(), Root::Context);
        assert_eq!(
            path.select(&json!({"Execution": {"Name": "x"}})),
            Some(json!("x"))
        );
    }

    #[test]
    fn assign_replaces_and_creates_nodes() {
        let mut doc = json!({"master": {"detail": [1, 2, 3]}});
        JsonPath::parse_reference("$.master.detail")
            .unwrap()
            .assign(&mut doc, json!(6))
            .unwrap();
        assert_eq!(doc, json!({"master": {"detail": 6}}));

        let mut doc = json!({"master": {"detail": [1, 2, 3]}});
        JsonPath::parse_reference("$.master.result.sum")
            .unwrap()
            .assign(&mut doc, json!(6))
            .unwrap();
        assert_eq!(
            doc,
            json!({"master": {"detail": [1, 2, 3], "result": {"sum": 6}}})
        );

        let mut doc = json!({"list": [1, 2]});
        JsonPath::parse_reference("$.list[1]")
            .unwrap()
            .assign(&mut doc, json!("x"))
            .unwrap();
        assert_eq!(doc, json!({"list": [1, "x"]}));

        let mut doc = json!(1);
        JsonPath::parse_reference("$")
            .unwrap()
            .assign(&mut doc, json!({"a": 1}))
            .unwrap();
        assert_eq!(doc, json!({"a": 1}));
    }

    #[test]
    fn assign_fails_through_non_objects() {
        let mut doc = json!("foo");
        assert!(
            JsonPath::parse_reference("$.x")
                .unwrap()
                .assign(&mut doc, json!(1))
                .is_err()
        );
        let mut doc = json!({"a": "text"});
        assert!(
            JsonPath::parse_reference("$.a.b")
                .unwrap()
                .assign(&mut doc, json!(1))
                .is_err()
        );
        let mut doc = json!({"a": [1]});
        assert!(
            JsonPath::parse_reference("$.a[4]")
                .unwrap()
                .assign(&mut doc, json!(1))
                .is_err()
        );
    }
}
