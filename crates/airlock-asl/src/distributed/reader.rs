//! Turns an object's content into Map items: JSON arrays, JSON Lines and delimited text
//! parsed by Step Functions' rules.

use serde_json::{Map, Value};

use super::config::InputFormat;

/// Decodes `content` as `format`, keeping at most `limit` items. The error is the cause of
/// a `States.ItemReaderFailed`.
pub(crate) fn decode(
    content: &[u8],
    format: &InputFormat,
    limit: usize,
    source: &str,
) -> Result<Vec<Value>, String> {
    let content = content.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(content);
    match format {
        InputFormat::Json { items_pointer } => {
            let document: Value = serde_json::from_slice(content)
                .map_err(|e| format!("{source} is not valid JSON: {e}"))?;
            let node = match items_pointer.as_deref() {
                None | Some("") => document,
                Some(pointer) => {
                    let mut document = document;
                    document
                        .pointer_mut(pointer)
                        .map(Value::take)
                        .ok_or_else(|| {
                            format!("ItemsPointer '{pointer}' names nothing in {source}")
                        })?
                }
            };
            match node {
                Value::Array(mut items) => {
                    items.truncate(limit);
                    Ok(items)
                }
                _ => Err(format!(
                    "Attempting to map over non-iterable node: {source} does not hold a JSON array"
                )),
            }
        }
        InputFormat::Jsonl => {
            let text = std::str::from_utf8(content)
                .map_err(|e| format!("{source} is not UTF-8 text: {e}"))?;
            let mut items = Vec::new();
            for (number, line) in text.lines().enumerate() {
                if items.len() >= limit {
                    break;
                }
                if line.trim().is_empty() {
                    continue;
                }
                items.push(serde_json::from_str(line).map_err(|e| {
                    format!("line {} of {source} is not valid JSON: {e}", number + 1)
                })?);
            }
            Ok(items)
        }
        InputFormat::Csv { headers, delimiter } => {
            let text = std::str::from_utf8(content)
                .map_err(|e| format!("{source} is not UTF-8 text: {e}"))?;
            decode_csv(text, headers.as_deref(), char::from(*delimiter), limit)
                .map_err(|e| format!("{source}: {e}"))
        }
    }
}

fn decode_csv(
    text: &str,
    given: Option<&[String]>,
    delimiter: char,
    limit: usize,
) -> Result<Vec<Value>, String> {
    let mut records = Records::new(text, delimiter);
    let headers: Vec<String> = if let Some(headers) = given {
        headers.to_vec()
    } else {
        let headers = records
            .next()
            .ok_or("the file is empty: it has no header row")?;
        for (i, header) in headers.iter().enumerate() {
            if headers[..i].contains(header) {
                return Err(format!(
                    "CSV headers cannot contain duplicates ('{header}' appears twice)"
                ));
            }
        }
        headers
    };
    let mut items = Vec::new();
    for row in records {
        if items.len() >= limit {
            break;
        }
        // Missing fields are empty strings and extra fields are skipped, as Step Functions does.
        let mut fields = row.into_iter();
        let mut item = Map::with_capacity(headers.len());
        for header in &headers {
            item.insert(
                header.clone(),
                Value::String(fields.next().unwrap_or_default()),
            );
        }
        items.push(Value::Object(item));
    }
    Ok(items)
}

/// The records of delimited text: fields split by `delimiter`, records by newlines
/// (`\n` or `\r\n`). Double quotes enclose fields that hold delimiters or newlines, `""`
/// inside them is a quote, and a backslash escapes a backslash, a quote or the delimiter
/// (before any other character it is dropped). Blank lines hold no record.
struct Records<'a> {
    chars: std::iter::Peekable<std::str::Chars<'a>>,
    delimiter: char,
}

impl<'a> Records<'a> {
    fn new(text: &'a str, delimiter: char) -> Self {
        Self {
            chars: text.chars().peekable(),
            delimiter,
        }
    }
}

impl Iterator for Records<'_> {
    type Item = Vec<String>;

    fn next(&mut self) -> Option<Vec<String>> {
        loop {
            self.chars.peek()?;
            let mut fields = Vec::new();
            let mut field = String::new();
            let mut quoted = false;
            let mut touched = false;
            while let Some(c) = self.chars.next() {
                match c {
                    '\\' => {
                        touched = true;
                        if let Some(escaped) = self.chars.next() {
                            if escaped == '\\' || escaped == '"' || escaped == self.delimiter {
                                field.push(escaped);
                            } else if escaped == '\n' && !quoted {
                                break;
                            } else {
                                field.push(escaped);
                            }
                        }
                    }
                    '"' if quoted => {
                        if self.chars.peek() == Some(&'"') {
                            self.chars.next();
                            field.push('"');
                        } else {
                            quoted = false;
                        }
                    }
                    '"' => {
                        touched = true;
                        quoted = true;
                    }
                    '\r' if !quoted && self.chars.peek() == Some(&'\n') => {}
                    '\n' if !quoted => break,
                    c if c == self.delimiter && !quoted => {
                        touched = true;
                        fields.push(std::mem::take(&mut field));
                    }
                    c => {
                        touched = true;
                        field.push(c);
                    }
                }
            }
            if !touched && field.is_empty() && fields.is_empty() {
                // A blank line.
                continue;
            }
            fields.push(field);
            return Some(fields);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csv(text: &str, delimiter: char) -> Vec<Vec<String>> {
        Records::new(text, delimiter).collect()
    }

    #[test]
    fn delimited_text_follows_the_documented_rules() {
        assert_eq!(
            csv(
                "a,b\n1,\"x, y\"\r\n\n\"multi\nline\",\"say \"\"hi\"\"\"\n",
                ','
            ),
            vec![
                vec!["a".to_owned(), "b".to_owned()],
                vec!["1".to_owned(), "x, y".to_owned()],
                vec!["multi\nline".to_owned(), "say \"hi\"".to_owned()],
            ]
        );
        assert_eq!(
            csv("path|size\nC:\\\\Program Files\\\\App.exe|6\\|5\\x\n", '|'),
            vec![
                vec!["path".to_owned(), "size".to_owned()],
                vec!["C:\\Program Files\\App.exe".to_owned(), "6|5x".to_owned()],
            ]
        );
        assert_eq!(
            csv("a,,\n", ','),
            vec![vec!["a".to_owned(), String::new(), String::new()]]
        );
    }

    #[test]
    fn rows_are_fitted_to_the_headers() {
        let format = InputFormat::Csv {
            headers: None,
            delimiter: b',',
        };
        let items = decode(b"id,name\n1\n2,b,extra\n", &format, usize::MAX, "f").unwrap();
        assert_eq!(
            items,
            vec![
                serde_json::json!({"id": "1", "name": ""}),
                serde_json::json!({"id": "2", "name": "b"}),
            ]
        );
        let duplicate = decode(b"id,id\n1,2\n", &format, usize::MAX, "f").unwrap_err();
        assert!(duplicate.contains("duplicates"), "{duplicate}");
    }
}
