//! Reading an event file as a stream, so a capture of any size is read in bounded memory.
//!
//! A file holds one or more JSON documents (one, newline-delimited, or just concatenated).
//! A top-level array is read one event at a time, and the `Records` of a top-level object
//! (S3 notifications, an SQS or SNS batch) one record at a time: each item is handed over as
//! soon as its record is parsed, so only one record is held at once, however long the array.
//! A top-level object without `Records` (an EventBridge event, a test event, or something
//! else entirely, such as a replay case) is handed over whole, for the caller to tell apart.

use std::fmt;
use std::io::{self, BufRead};

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use super::json::{Doc, Fault, Obj, index, join};
use super::{IntakeItem, IntakeProblem, parse_record, parse_value};

/// One thing found in an event file, in file order.
#[derive(Debug)]
pub enum Streamed {
    /// An event item, as [`super::parse_event`] would have made it.
    Item(IntakeItem),
    /// A top-level object without `Records`, whole; `origin` names it (the file, or
    /// `file (document N)` for the second and later documents of a file).
    Document { origin: String, value: Value },
}

/// Reads every document of `reader`, calling `emit` for each item or document as soon as it
/// is parsed; `emit` returns `false` to stop early. Text that is not JSON becomes one error
/// item at the point of damage (what came before it has been handed over) and ends the file.
///
/// # Errors
/// A read error of `reader` (e.g. `Is a directory`), as it happened.
pub fn read_events<R: BufRead>(
    origin: &str,
    mut reader: R,
    emit: &mut dyn FnMut(Streamed) -> bool,
) -> io::Result<()> {
    let mut documents = 0_usize;
    loop {
        if !skip_whitespace(&mut reader)? {
            return Ok(());
        }
        documents += 1;
        let label = if documents == 1 {
            origin.to_owned()
        } else {
            format!("{origin} (document {documents})")
        };
        let doc = Doc::top(&label);
        let mut sink = Sink {
            emit: &mut *emit,
            stopped: false,
        };
        // One deserializer per document: serde_json's reader does not look past the closing
        // bracket of an object or array, so the next document starts where this one ended.
        let mut de = serde_json::Deserializer::from_reader(&mut reader);
        let parsed = Top {
            doc: &doc,
            sink: &mut sink,
        }
        .deserialize(&mut de);
        if sink.stopped {
            return Ok(());
        }
        match parsed {
            Ok(None) => {}
            Ok(Some(value)) => {
                if !emit(Streamed::Document {
                    origin: label,
                    value,
                }) {
                    return Ok(());
                }
            }
            Err(err) if err.is_io() => return Err(err.into()),
            Err(err) => {
                emit(Streamed::Item(doc.item(
                    "",
                    Err(Fault {
                        field: String::new(),
                        problem: IntakeProblem::NotJson(err.to_string()),
                    }),
                )));
                return Ok(());
            }
        }
    }
}

/// Skips whitespace; `false` at the end of the input.
fn skip_whitespace(reader: &mut impl BufRead) -> io::Result<bool> {
    loop {
        let buffer = match reader.fill_buf() {
            Ok(buffer) => buffer,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        };
        if buffer.is_empty() {
            return Ok(false);
        }
        let blank = buffer
            .iter()
            .take_while(|b| b.is_ascii_whitespace())
            .count();
        let more = blank < buffer.len();
        reader.consume(blank);
        if more {
            return Ok(true);
        }
    }
}

const STOPPED: &str = "the reader of these events stopped";

struct Sink<'a> {
    emit: &'a mut dyn FnMut(Streamed) -> bool,
    stopped: bool,
}

impl Sink<'_> {
    fn items<E: de::Error>(&mut self, items: Vec<IntakeItem>) -> Result<(), E> {
        for item in items {
            if !(self.emit)(Streamed::Item(item)) {
                self.stopped = true;
                return Err(E::custom(STOPPED));
            }
        }
        Ok(())
    }
}

/// A top-level document: `None` when its items were handed over, the value otherwise.
struct Top<'a, 'b> {
    doc: &'a Doc,
    sink: &'a mut Sink<'b>,
}

impl<'de> DeserializeSeed<'de> for Top<'_, '_> {
    type Value = Option<Value>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Top<'_, '_> {
    type Value = Option<Value>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an event object or an array of events")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut i = 0;
        while let Some(event) = seq.next_element::<Value>()? {
            let mut items = Vec::new();
            parse_value(self.doc, &event, &index("", i), &mut items);
            self.sink.items(items)?;
            i += 1;
        }
        Ok(None)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut others = Map::new();
        let mut records = false;
        while let Some(key) = map.next_key::<String>()? {
            if key == "Records" && !records {
                records = true;
                map.next_value_seed(RecordsSeed {
                    doc: self.doc,
                    sink: &mut *self.sink,
                })?;
            } else if records {
                // A batch is read by its records alone; the rest is not needed.
                map.next_value::<IgnoredAny>()?;
            } else {
                others.insert(key, map.next_value()?);
            }
        }
        Ok((!records).then_some(Value::Object(others)))
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Some(Value::Bool(v)))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Some(Value::from(v)))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Some(Value::from(v)))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Some(Value::from(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Some(Value::from(v)))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Some(Value::Null))
    }
}

/// The `Records` member of a top-level object, read one record at a time.
struct RecordsSeed<'a, 'b> {
    doc: &'a Doc,
    sink: &'a mut Sink<'b>,
}

impl RecordsSeed<'_, '_> {
    /// `Records` is not an array: one error item, as [`super::parse_event`] makes.
    fn wrong_type<E: de::Error>(self, found: &'static str) -> Result<(), E> {
        let fault = Fault {
            field: "Records".to_owned(),
            problem: IntakeProblem::WrongType {
                expected: "an array",
                found,
            },
        };
        let item = self.doc.item("", Err(fault));
        self.sink.items(vec![item])
    }
}

impl<'de> DeserializeSeed<'de> for RecordsSeed<'_, '_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for RecordsSeed<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of records")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let records_path = join("", "Records");
        let mut i = 0;
        while let Some(record) = seq.next_element::<Value>()? {
            let path = index(&records_path, i);
            let mut items = Vec::new();
            match Obj::new(&record, &path) {
                Ok(record) => parse_record(self.doc, &record, &mut items),
                Err(fault) => items.push(self.doc.item(&path, Err(fault))),
            }
            self.sink.items(items)?;
            i += 1;
        }
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        self.wrong_type("an object")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        self.wrong_type("a boolean")
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        self.wrong_type("a number")
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        self.wrong_type("a number")
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        self.wrong_type("a number")
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        self.wrong_type("a string")
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.wrong_type("null")
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::io::{BufReader, Read};
    use std::rc::Rc;

    use serde_json::json;

    use super::*;
    use crate::intake::parse_event;

    /// Hands out its text a few bytes per read, counting what it has given.
    struct Trickle {
        text: Vec<u8>,
        at: usize,
        step: usize,
        given: Rc<Cell<usize>>,
    }

    impl Read for Trickle {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.step.min(buf.len()).min(self.text.len() - self.at);
            buf[..n].copy_from_slice(&self.text[self.at..self.at + n]);
            self.at += n;
            self.given.set(self.at);
            Ok(n)
        }
    }

    fn record(key: &str) -> Value {
        json!({"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": "b"},
            "object": {"key": key, "size": 3, "eTag": "abc"}}})
    }

    fn read_all(origin: &str, text: &str, step: usize) -> Vec<Streamed> {
        let reader = Trickle {
            text: text.as_bytes().to_vec(),
            at: 0,
            step,
            given: Rc::new(Cell::new(0)),
        };
        let mut out = Vec::new();
        read_events(origin, BufReader::with_capacity(16, reader), &mut |s| {
            out.push(s);
            true
        })
        .unwrap();
        out
    }

    fn items(streamed: Vec<Streamed>) -> Vec<IntakeItem> {
        streamed
            .into_iter()
            .map(|s| match s {
                Streamed::Item(item) => item,
                Streamed::Document { .. } => panic!("unexpected document: {s:?}"),
            })
            .collect()
    }

    #[test]
    fn records_split_across_reads_give_what_the_whole_document_gives() {
        let batch = json!({"Records": [
            record("incoming/t/p/a"),
            {"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": "b"}, "object": {}}},
            "not a record",
            record("incoming/t/p/..%2F..%2Ftrusted%2Fx"),
            {"messageId": "m-1", "body": json!({"Records": [record("incoming/t/p/b")]}).to_string()},
        ], "after": [1, 2, 3]});
        let text = format!("  {batch}\n");
        for step in [1, 3, 7, 64, 4096] {
            assert_eq!(
                items(read_all("cap.json", &text, step)),
                parse_event("cap.json", &batch),
                "step {step}"
            );
        }
        let array = json!([batch, {"Event": "s3:TestEvent"}, 42]);
        assert_eq!(
            items(read_all("arr.json", &array.to_string(), 5)),
            parse_event("arr.json", &array)
        );
    }

    #[test]
    fn items_are_handed_over_before_the_rest_is_read() {
        let records: Vec<Value> = (0..500)
            .map(|i| record(&format!("incoming/t/p/{i}")))
            .collect();
        let text = json!({ "Records": records }).to_string();
        let given = Rc::new(Cell::new(0));
        let reader = Trickle {
            text: text.clone().into_bytes(),
            at: 0,
            step: 100,
            given: Rc::clone(&given),
        };
        let mut seen = Vec::new();
        read_events(
            "big.json",
            BufReader::with_capacity(256, reader),
            &mut |s| {
                seen.push(given.get());
                matches!(s, Streamed::Item(_))
            },
        )
        .unwrap();
        assert_eq!(seen.len(), 500);
        // The first record came out while almost all of the text was still unread.
        assert!(seen[0] < text.len() / 50, "{} of {}", seen[0], text.len());
        assert!(seen.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn concatenated_documents_and_damage() {
        let eventbridge = json!({"detail-type": "Object Created", "source": "aws.s3"});
        let text = format!(
            "{}\n{eventbridge}\n{{\"Records\": [{}, {{\"eventName\": tru",
            json!({"Records": [record("incoming/t/p/a")]}),
            record("incoming/t/p/b")
        );
        let out = read_all("nd.json", &text, 9);
        assert_eq!(out.len(), 4, "{out:?}");
        assert!(matches!(&out[0], Streamed::Item(i) if i.source == "nd.json: Records[0]"));
        match &out[1] {
            Streamed::Document { origin, value } => {
                assert_eq!(origin, "nd.json (document 2)");
                assert_eq!(value, &eventbridge);
            }
            other @ Streamed::Item(_) => panic!("{other:?}"),
        }
        assert!(
            matches!(&out[2], Streamed::Item(i) if i.source == "nd.json (document 3): Records[0]" && i.object().is_some())
        );
        match &out[3] {
            Streamed::Item(item) => {
                assert_eq!(item.source, "nd.json (document 3)");
                assert!(matches!(
                    item.error().map(|e| &e.problem),
                    Some(IntakeProblem::NotJson(_))
                ));
            }
            other @ Streamed::Document { .. } => panic!("{other:?}"),
        }
    }

    #[test]
    fn records_that_are_not_an_array_are_one_error() {
        let event = json!({"Records": {"a": 1}});
        assert_eq!(
            items(read_all("x.json", &event.to_string(), 4)),
            parse_event("x.json", &event)
        );
    }

    #[test]
    fn read_errors_are_returned() {
        let dir = std::env::temp_dir().join(format!("airlock-stream-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = std::fs::File::open(&dir).unwrap();
        let err = read_events("dir.json", BufReader::new(file), &mut |_| true).unwrap_err();
        std::fs::remove_dir(&dir).unwrap();
        assert_eq!(err.raw_os_error(), Some(21), "{err}");
    }
}
