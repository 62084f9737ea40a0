//! Parsing and validating the fields of a Distributed Map state.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::definition::{Amount, Language, StateKind, StateMachine, StateParser};
use crate::error::DefinitionError;
use crate::jsonata::Template as JsonataTemplate;
use crate::path::JsonPath;
use crate::template::Template;

pub(crate) const GET_OBJECT: &str = "arn:aws:states:::s3:getObject";
pub(crate) const LIST_OBJECTS: &str = "arn:aws:states:::s3:listObjectsV2";
pub(crate) const PUT_OBJECT: &str = "arn:aws:states:::s3:putObject";
/// Step Functions reads at most this many items (`MaxItems`).
const MAX_ITEMS_LIMIT: u64 = 100_000_000;
/// `MaxInputBytesPerBatch` is at most the payload quota.
const MAX_BATCH_BYTES: u64 = 256 * 1024;
const MAX_LABEL_CHARS: usize = 40;

/// The fields only a Distributed Map may have.
const DISTRIBUTED_FIELDS: &[&str] = &[
    "Label",
    "ItemReader",
    "ItemBatcher",
    "ResultWriter",
    "ToleratedFailurePercentage",
    "ToleratedFailurePercentagePath",
    "ToleratedFailureCount",
    "ToleratedFailureCountPath",
];

/// `ProcessorConfig.ExecutionType` of a Distributed Map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ExecutionType {
    Standard,
    Express,
}

/// The Distributed Map fields of a Map state.
#[derive(Debug)]
pub(crate) struct Distributed {
    pub(crate) execution_type: ExecutionType,
    pub(crate) label: Option<String>,
    pub(crate) reader: Option<ItemReader>,
    pub(crate) batcher: Option<ItemBatcher>,
    pub(crate) writer: Option<ResultWriter>,
    pub(crate) tolerated_count: Option<Amount>,
    pub(crate) tolerated_percentage: Option<Percentage>,
}

/// `Parameters` (JSONPath) or `Arguments` (JSONata) of a reader or writer.
#[derive(Debug)]
pub(crate) enum Arguments {
    JsonPath(Template),
    Jsonata(JsonataTemplate),
}

/// A percentage given literally, by a reference path or by a JSONata expression.
#[derive(Debug)]
pub(crate) enum Percentage {
    Fixed(f64),
    Path(JsonPath),
    Expr(JsonataTemplate),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReaderSource {
    /// `s3:getObject`: the items are the decoded content of one object.
    GetObject,
    /// `s3:listObjectsV2`: the items are object descriptions, or with
    /// `LOAD_AND_FLATTEN` the decoded contents of every listed object.
    ListObjects { load_and_flatten: bool },
}

/// How an object's content becomes items.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum InputFormat {
    /// A JSON array, or the array `ItemsPointer` names inside the document.
    Json {
        items_pointer: Option<String>,
    },
    Jsonl,
    /// `headers: None` reads them from the first row.
    Csv {
        headers: Option<Vec<String>>,
        delimiter: u8,
    },
}

#[derive(Debug)]
pub(crate) struct ItemReader {
    pub(crate) source: ReaderSource,
    pub(crate) arguments: Arguments,
    pub(crate) format: Option<InputFormat>,
    /// `0` means no limit.
    pub(crate) max_items: Option<Amount>,
}

impl ItemReader {
    pub(crate) fn resource(&self) -> &'static str {
        match self.source {
            ReaderSource::GetObject => GET_OBJECT,
            ReaderSource::ListObjects { .. } => LIST_OBJECTS,
        }
    }
}

#[derive(Debug)]
pub(crate) struct ItemBatcher {
    pub(crate) max_items: Option<Amount>,
    pub(crate) max_bytes: Option<Amount>,
    pub(crate) batch_input: Option<Arguments>,
}

/// `WriterConfig.Transformation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transformation {
    /// Each child execution's record: ARN, input, output, status and dates.
    None,
    /// Each child execution's output.
    Compact,
    /// Each output, arrays spliced into the result.
    Flatten,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OutputType {
    Json,
    Jsonl,
}

#[derive(Debug)]
pub(crate) struct ResultWriter {
    /// `Resource` + `Parameters`/`Arguments`: the bucket and prefix to export to.
    pub(crate) target: Option<Arguments>,
    pub(crate) transformation: Transformation,
    pub(crate) output_type: OutputType,
}

/// Reads `ItemProcessor.ProcessorConfig`: `Some(execution type)` for a Distributed Map.
pub(crate) fn processor_config(
    p: &StateParser<'_>,
    field: &str,
    processor: &Map<String, Value>,
) -> Result<Option<ExecutionType>, DefinitionError> {
    let at = |key: &str| format!("{field}.ProcessorConfig.{key}");
    let Some(config) = processor.get("ProcessorConfig") else {
        return Ok(None);
    };
    let Value::Object(config) = config else {
        return Err(p.err(&format!("{field}.ProcessorConfig"), "must be an object"));
    };
    for key in config.keys() {
        if !matches!(key.as_str(), "Mode" | "ExecutionType") {
            return Err(p.err(&at(key), "unknown ProcessorConfig field"));
        }
    }
    let mode = match config.get("Mode") {
        None => "INLINE",
        Some(Value::String(mode)) if mode == "INLINE" || mode == "DISTRIBUTED" => mode,
        Some(other) => {
            return Err(p.err(
                &at("Mode"),
                format!("must be \"INLINE\" or \"DISTRIBUTED\", not {other}"),
            ));
        }
    };
    let execution_type = match config.get("ExecutionType") {
        None => None,
        Some(Value::String(t)) if t == "STANDARD" => Some(ExecutionType::Standard),
        Some(Value::String(t)) if t == "EXPRESS" => Some(ExecutionType::Express),
        Some(other) => {
            return Err(p.err(
                &at("ExecutionType"),
                format!("must be \"STANDARD\" or \"EXPRESS\", not {other}"),
            ));
        }
    };
    match (mode, execution_type) {
        ("INLINE", None) => Ok(None),
        ("INLINE", Some(_)) => Err(p.err(
            &at("ExecutionType"),
            "is only allowed with \"Mode\": \"DISTRIBUTED\"",
        )),
        (_, None) => Err(p.err(
            &at("ExecutionType"),
            "is required with \"Mode\": \"DISTRIBUTED\" (\"STANDARD\" or \"EXPRESS\")",
        )),
        (_, Some(t)) => Ok(Some(t)),
    }
}

/// An inline Map may not have Distributed Map fields.
pub(crate) fn refuse_in_inline_map(
    p: &StateParser<'_>,
    field: &str,
) -> Result<(), DefinitionError> {
    match DISTRIBUTED_FIELDS.iter().find(|f| p.map.contains_key(**f)) {
        Some(found) => Err(p.err(
            found,
            format!(
                "is a Distributed Map field; set {field}.ProcessorConfig to {{\"Mode\": \"DISTRIBUTED\", \"ExecutionType\": \"STANDARD\"}} (or \"EXPRESS\") to use it"
            ),
        )),
        None => Ok(()),
    }
}

/// Parses the Distributed Map fields of a Map state whose processor is `processor`.
pub(crate) fn parse(
    p: &StateParser<'_>,
    field: &str,
    execution_type: ExecutionType,
    processor: &StateMachine,
) -> Result<Distributed, DefinitionError> {
    if execution_type == ExecutionType::Express
        && let Some(task) = first_callback_task(processor)
    {
        return Err(DefinitionError::new(
            Some(&task),
            Some("Resource"),
            format!(
                "an EXPRESS child workflow ({}: {field}.ProcessorConfig.ExecutionType) cannot use the '.waitForTaskToken' integration pattern",
                p.display
            ),
        ));
    }
    let label = match p.string("Label")? {
        None => None,
        Some(label) => {
            check_label(label).map_err(|why| p.err("Label", why))?;
            Some(label.to_owned())
        }
    };
    let reader = match p.map.get("ItemReader") {
        None => None,
        Some(raw) => {
            for other in ["ItemsPath", "Items"] {
                if p.map.contains_key(other) {
                    return Err(p.err(other, "cannot be combined with 'ItemReader'"));
                }
            }
            Some(parse_reader(p, raw).map_err(|e| e.within("ItemReader"))?)
        }
    };
    let batcher = match p.map.get("ItemBatcher") {
        None => None,
        Some(raw) => Some(parse_batcher(p, raw).map_err(|e| e.within("ItemBatcher"))?),
    };
    let writer = match p.map.get("ResultWriter") {
        None => None,
        Some(raw) => Some(parse_writer(p, raw).map_err(|e| e.within("ResultWriter"))?),
    };
    let tolerated_count = p.amount("ToleratedFailureCount", "ToleratedFailureCountPath", true)?;
    let tolerated_percentage = parse_percentage(p)?;
    Ok(Distributed {
        execution_type,
        label,
        reader,
        batcher,
        writer,
        tolerated_count,
        tolerated_percentage,
    })
}

fn first_callback_task(machine: &StateMachine) -> Option<String> {
    machine.states.values().find_map(|state| match &state.kind {
        StateKind::Task(task) if task.wait_for_task_token => Some(state.display.clone()),
        StateKind::Parallel(parallel) => parallel
            .branches
            .iter()
            .find_map(|b| first_callback_task(b)),
        StateKind::Map(map) => first_callback_task(&map.processor),
        _ => None,
    })
}

/// Step Functions' rules for a Map Run label: 1 to 40 characters, none of them blank,
/// a bracket, a wildcard, a control character, a backtick or one of `"#%\^|~$&,;:/`.
fn check_label(label: &str) -> Result<(), String> {
    if label.is_empty() {
        return Err("must not be empty".into());
    }
    if label.chars().count() > MAX_LABEL_CHARS {
        return Err(format!(
            "must be at most {MAX_LABEL_CHARS} characters long, not {}",
            label.chars().count()
        ));
    }
    let invalid = |c: char| {
        c.is_whitespace()
            || c.is_control()
            || ('\u{7f}'..='\u{9f}').contains(&c)
            || " ?*<>{}[]:;,\\|^~$#%&`\"/".contains(c)
    };
    if let Some(c) = label.chars().find(|c| invalid(*c)) {
        return Err(format!(
            "contains the character {c:?}, which a label may not: no whitespace, brackets, wildcards, control characters or any of \" # % \\ ^ | ~ ` $ & , ; : /"
        ));
    }
    Ok(())
}

/// Labels must be unique within the definition; `seen` maps each to its state.
pub(crate) fn check_labels(
    machine: &StateMachine,
    seen: &mut BTreeMap<String, String>,
) -> Result<(), DefinitionError> {
    for state in machine.states.values() {
        match &state.kind {
            StateKind::Map(map) => {
                if let Some(label) = map.distributed.as_ref().and_then(|d| d.label.as_ref())
                    && let Some(other) = seen.insert(label.clone(), state.display.clone())
                {
                    return Err(DefinitionError::new(
                        Some(&state.display),
                        Some("Label"),
                        format!(
                            "'{label}' is already the label of state '{other}'; labels must be unique"
                        ),
                    ));
                }
                check_labels(&map.processor, seen)?;
            }
            StateKind::Parallel(parallel) => {
                for branch in &parallel.branches {
                    check_labels(branch, seen)?;
                }
            }
            _ => {}
        }
    }
    Ok(())
}

fn object<'a>(
    p: &StateParser<'_>,
    raw: &'a Value,
) -> Result<&'a Map<String, Value>, DefinitionError> {
    match raw {
        Value::Object(map) => Ok(map),
        _ => Err(p.err("", "must be an object")),
    }
}

/// A parser for a nested object of the state; its errors name fields relative to it.
fn nested<'a>(p: &StateParser<'a>, map: &'a Map<String, Value>) -> StateParser<'a> {
    StateParser {
        display: p.display,
        map,
        language: p.language,
        default_language: p.default_language,
    }
}

fn check_keys(p: &StateParser<'_>, allowed: &[&str], what: &str) -> Result<(), DefinitionError> {
    for key in p.map.keys() {
        if !allowed.contains(&key.as_str()) {
            let hint = match (p.language, key.as_str()) {
                (Language::Jsonata, "Parameters") => "; a JSONata state uses 'Arguments'",
                (Language::JsonPath, "Arguments") => "; a JSONPath state uses 'Parameters'",
                _ => "",
            };
            return Err(p.err(key, format!("unknown {what} field{hint}")));
        }
    }
    Ok(())
}

fn arguments(p: &StateParser<'_>, required: bool) -> Result<Option<Arguments>, DefinitionError> {
    let key = match p.language {
        Language::JsonPath => "Parameters",
        Language::Jsonata => "Arguments",
    };
    let parsed = match p.language {
        Language::JsonPath => p.template(key)?.map(Arguments::JsonPath),
        Language::Jsonata => {
            if let Some(raw) = p.map.get(key)
                && !raw.is_object()
                && !raw.as_str().is_some_and(crate::jsonata::is_expression)
            {
                return Err(p.err(key, "must be an object or a {% %} expression"));
            }
            p.jsonata(key)?.map(Arguments::Jsonata)
        }
    };
    if required && parsed.is_none() {
        return Err(p.err(
            key,
            "is required (with the Bucket and object key or prefix)",
        ));
    }
    Ok(parsed)
}

fn choice<'a>(
    p: &StateParser<'_>,
    key: &str,
    allowed: &[&'a str],
) -> Result<Option<&'a str>, DefinitionError> {
    match p.map.get(key) {
        None => Ok(None),
        Some(Value::String(s)) => match allowed.iter().find(|a| **a == s) {
            Some(found) => Ok(Some(found)),
            None => Err(p.err(
                key,
                format!("must be one of {}, not \"{s}\"", allowed.join(", ")),
            )),
        },
        Some(other) => Err(p.err(
            key,
            format!("must be one of {}, not {other}", allowed.join(", ")),
        )),
    }
}

fn parse_reader(p: &StateParser<'_>, raw: &Value) -> Result<ItemReader, DefinitionError> {
    let map = object(p, raw)?;
    let r = nested(p, map);
    check_keys(
        &r,
        &["Resource", "Parameters", "Arguments", "ReaderConfig"],
        "ItemReader",
    )?;
    let resource = r.string("Resource")?.ok_or_else(|| {
        r.err(
            "Resource",
            format!("is required ('{GET_OBJECT}' or '{LIST_OBJECTS}')"),
        )
    })?;
    let arguments = arguments(&r, true)?.expect("required arguments are present");
    let empty = Map::new();
    let config = match map.get("ReaderConfig") {
        None => &empty,
        Some(Value::Object(config)) => config,
        Some(_) => return Err(r.err("ReaderConfig", "must be an object")),
    };
    let c = nested(p, config);
    let parsed = parse_reader_config(&c, resource).map_err(|e| e.within("ReaderConfig"))?;
    let source = match resource {
        GET_OBJECT => ReaderSource::GetObject,
        LIST_OBJECTS => ReaderSource::ListObjects {
            load_and_flatten: parsed.1,
        },
        other => {
            return Err(r.err(
                "Resource",
                format!("'{other}' is not an item reader; use '{GET_OBJECT}' or '{LIST_OBJECTS}'"),
            ));
        }
    };
    Ok(ItemReader {
        source,
        arguments,
        format: parsed.0,
        max_items: parsed.2,
    })
}

/// The input format, whether `LOAD_AND_FLATTEN` is set, and `MaxItems`.
fn parse_reader_config(
    c: &StateParser<'_>,
    resource: &str,
) -> Result<(Option<InputFormat>, bool, Option<Amount>), DefinitionError> {
    check_keys(
        c,
        &[
            "InputType",
            "CSVHeaderLocation",
            "CSVHeaders",
            "CSVDelimiter",
            "MaxItems",
            "MaxItemsPath",
            "Transformation",
            "ItemsPointer",
            "ManifestType",
        ],
        "ReaderConfig",
    )?;
    if c.map.contains_key("ManifestType") {
        return Err(c.err(
            "ManifestType",
            "manifests (ATHENA_DATA, S3_INVENTORY) are not supported; use InputType JSON, JSONL or CSV",
        ));
    }
    let input_type = choice(
        c,
        "InputType",
        &["JSON", "JSONL", "CSV", "PARQUET", "MANIFEST"],
    )?;
    if let Some(unsupported @ ("PARQUET" | "MANIFEST")) = input_type {
        return Err(c.err(
            "InputType",
            format!("{unsupported} is not supported; use JSON, JSONL or CSV"),
        ));
    }
    let load_and_flatten =
        choice(c, "Transformation", &["NONE", "LOAD_AND_FLATTEN"])? == Some("LOAD_AND_FLATTEN");
    match resource {
        GET_OBJECT if input_type.is_none() => {
            return Err(c.err(
                "InputType",
                "is required with s3:getObject (JSON, JSONL or CSV)",
            ));
        }
        GET_OBJECT if c.map.contains_key("Transformation") => {
            return Err(c.err("Transformation", "is only allowed with s3:listObjectsV2"));
        }
        LIST_OBJECTS if load_and_flatten && input_type.is_none() => {
            return Err(c.err(
                "InputType",
                "is required with \"Transformation\": \"LOAD_AND_FLATTEN\"",
            ));
        }
        LIST_OBJECTS if !load_and_flatten && input_type.is_some() => {
            return Err(c.err(
                "InputType",
                "is only allowed with s3:listObjectsV2 together with \"Transformation\": \"LOAD_AND_FLATTEN\"",
            ));
        }
        _ => {}
    }
    let csv = input_type == Some("CSV");
    for key in ["CSVHeaderLocation", "CSVHeaders", "CSVDelimiter"] {
        if !csv && c.map.contains_key(key) {
            return Err(c.err(key, "is only allowed with \"InputType\": \"CSV\""));
        }
    }
    if input_type != Some("JSON") && c.map.contains_key("ItemsPointer") {
        return Err(c.err(
            "ItemsPointer",
            "is only allowed with \"InputType\": \"JSON\"",
        ));
    }
    let format = match input_type {
        None => None,
        Some("JSON") => {
            let items_pointer = c.string("ItemsPointer")?.map(str::to_owned);
            if let Some(pointer) = &items_pointer
                && !pointer.is_empty()
                && !pointer.starts_with('/')
            {
                return Err(c.err(
                    "ItemsPointer",
                    format!("'{pointer}' is not a JSON pointer (it must start with '/')"),
                ));
            }
            Some(InputFormat::Json { items_pointer })
        }
        Some("JSONL") => Some(InputFormat::Jsonl),
        _ => Some(parse_csv(c)?),
    };
    let max_items = c.amount("MaxItems", "MaxItemsPath", true)?;
    if let Some(Amount::Fixed(n)) = max_items
        && n > MAX_ITEMS_LIMIT
    {
        return Err(c.err(
            "MaxItems",
            format!("must be at most {MAX_ITEMS_LIMIT}, not {n}"),
        ));
    }
    Ok((format, load_and_flatten, max_items))
}

fn parse_csv(c: &StateParser<'_>) -> Result<InputFormat, DefinitionError> {
    let location = choice(c, "CSVHeaderLocation", &["FIRST_ROW", "GIVEN"])?.ok_or_else(|| {
        c.err(
            "CSVHeaderLocation",
            "is required with CSV (FIRST_ROW or GIVEN)",
        )
    })?;
    let headers = match (location, c.map.get("CSVHeaders")) {
        ("FIRST_ROW", None) => None,
        ("FIRST_ROW", Some(_)) => {
            return Err(c.err(
                "CSVHeaders",
                "is only allowed with \"CSVHeaderLocation\": \"GIVEN\"",
            ));
        }
        (_, Some(Value::Array(items))) if !items.is_empty() => {
            let mut headers: Vec<String> = Vec::with_capacity(items.len());
            for item in items {
                let Value::String(header) = item else {
                    return Err(c.err("CSVHeaders", "must contain only strings"));
                };
                if headers.contains(header) {
                    return Err(c.err(
                        "CSVHeaders",
                        format!("contains '{header}' twice; headers must be unique"),
                    ));
                }
                headers.push(header.clone());
            }
            Some(headers)
        }
        _ => {
            return Err(c.err(
                "CSVHeaders",
                "is required with \"CSVHeaderLocation\": \"GIVEN\" and must be a non-empty array of strings",
            ));
        }
    };
    let delimiter = match choice(
        c,
        "CSVDelimiter",
        &["COMMA", "PIPE", "SEMICOLON", "SPACE", "TAB"],
    )? {
        None | Some("COMMA") => b',',
        Some("PIPE") => b'|',
        Some("SEMICOLON") => b';',
        Some("SPACE") => b' ',
        _ => b'\t',
    };
    Ok(InputFormat::Csv { headers, delimiter })
}

fn parse_batcher(p: &StateParser<'_>, raw: &Value) -> Result<ItemBatcher, DefinitionError> {
    let map = object(p, raw)?;
    let b = nested(p, map);
    check_keys(
        &b,
        &[
            "MaxItemsPerBatch",
            "MaxItemsPerBatchPath",
            "MaxInputBytesPerBatch",
            "MaxInputBytesPerBatchPath",
            "BatchInput",
        ],
        "ItemBatcher",
    )?;
    let max_items = b.amount("MaxItemsPerBatch", "MaxItemsPerBatchPath", false)?;
    let max_bytes = b.amount("MaxInputBytesPerBatch", "MaxInputBytesPerBatchPath", false)?;
    if let Some(Amount::Fixed(n)) = max_bytes
        && n > MAX_BATCH_BYTES
    {
        return Err(b.err(
            "MaxInputBytesPerBatch",
            format!("must be at most {MAX_BATCH_BYTES} (256 KiB), not {n}"),
        ));
    }
    if max_items.is_none() && max_bytes.is_none() {
        return Err(b.err(
            "MaxItemsPerBatch",
            "an ItemBatcher needs MaxItemsPerBatch or MaxInputBytesPerBatch (or their Path forms)",
        ));
    }
    let batch_input = match b.language {
        Language::JsonPath => match b.map.get("BatchInput") {
            None => None,
            Some(Value::Object(_)) => b.template("BatchInput")?.map(Arguments::JsonPath),
            Some(_) => return Err(b.err("BatchInput", "must be an object")),
        },
        Language::Jsonata => b.jsonata("BatchInput")?.map(Arguments::Jsonata),
    };
    Ok(ItemBatcher {
        max_items,
        max_bytes,
        batch_input,
    })
}

fn parse_writer(p: &StateParser<'_>, raw: &Value) -> Result<ResultWriter, DefinitionError> {
    let map = object(p, raw)?;
    let w = nested(p, map);
    check_keys(
        &w,
        &["Resource", "Parameters", "Arguments", "WriterConfig"],
        "ResultWriter",
    )?;
    let resource = w.string("Resource")?;
    let target = arguments(&w, false)?;
    let (transformation, output_type) = match map.get("WriterConfig") {
        None => (None, OutputType::Json),
        Some(Value::Object(config)) => {
            let c = nested(p, config);
            check_keys(&c, &["Transformation", "OutputType"], "WriterConfig")
                .map_err(|e| e.within("WriterConfig"))?;
            let transformation = choice(&c, "Transformation", &["NONE", "COMPACT", "FLATTEN"])
                .map_err(|e| e.within("WriterConfig"))?
                .map(|t| match t {
                    "NONE" => Transformation::None,
                    "COMPACT" => Transformation::Compact,
                    _ => Transformation::Flatten,
                });
            let output_type = match choice(&c, "OutputType", &["JSON", "JSONL"])
                .map_err(|e| e.within("WriterConfig"))?
            {
                Some("JSONL") => OutputType::Jsonl,
                _ => OutputType::Json,
            };
            (transformation, output_type)
        }
        Some(_) => return Err(w.err("WriterConfig", "must be an object")),
    };
    let arguments_key = match p.language {
        Language::JsonPath => "Parameters",
        Language::Jsonata => "Arguments",
    };
    match (resource, &target) {
        (Some(PUT_OBJECT), Some(_)) => {}
        (Some(PUT_OBJECT), None) => {
            return Err(w.err(
                arguments_key,
                "is required with a Resource (the Bucket and Prefix)",
            ));
        }
        (Some(other), _) => {
            return Err(w.err(
                "Resource",
                format!("'{other}' is not a result writer; use '{PUT_OBJECT}'"),
            ));
        }
        (None, Some(_)) => {
            return Err(w.err(
                "Resource",
                format!("is required with {arguments_key} ('{PUT_OBJECT}')"),
            ));
        }
        (None, None) if !map.contains_key("WriterConfig") => {
            return Err(w.err(
                "",
                "must not be empty: give Resource and Parameters (or Arguments), WriterConfig, or all three",
            ));
        }
        (None, None) => {}
    }
    // Exported results default to the full execution records, results returned in the
    // state output to the child outputs alone.
    let default = if target.is_some() {
        Transformation::None
    } else {
        Transformation::Compact
    };
    Ok(ResultWriter {
        target,
        transformation: transformation.unwrap_or(default),
        output_type,
    })
}

fn parse_percentage(p: &StateParser<'_>) -> Result<Option<Percentage>, DefinitionError> {
    const KEY: &str = "ToleratedFailurePercentage";
    const PATH_KEY: &str = "ToleratedFailurePercentagePath";
    if p.is_expression(KEY) {
        return Ok(p.jsonata(KEY)?.map(Percentage::Expr));
    }
    let fixed = match p.map.get(KEY) {
        None => None,
        Some(value) => match value.as_f64() {
            Some(n) if (0.0..=100.0).contains(&n) => Some(n),
            _ => {
                return Err(p.err(KEY, format!("must be a number from 0 to 100, not {value}")));
            }
        },
    };
    let path = p.reference_path(PATH_KEY)?;
    match (fixed, path) {
        (Some(_), Some(_)) => Err(p.err(PATH_KEY, format!("cannot be combined with '{KEY}'"))),
        (Some(n), None) => Ok(Some(Percentage::Fixed(n))),
        (None, Some(path)) => Ok(Some(Percentage::Path(path))),
        (None, None) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_follow_the_service_rules() {
        assert!(check_label("Map-1_ok.x").is_ok());
        assert!(check_label(&"a".repeat(40)).is_ok());
        for bad in [
            "",
            "has space",
            "a:b",
            "slash/",
            "star*",
            "tab\t",
            "\u{85}",
            &"a".repeat(41),
        ] {
            assert!(check_label(bad).is_err(), "{bad:?}");
        }
    }
}
