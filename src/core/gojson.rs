//! JSON text written the way Go's `encoding/json` writes it (compact; `<`, `>`, `&`, U+2028 and
//! U+2029 escaped as `\u003c`...), so that records written by Go tools (Helm's release JSON,
//! kubectl's last-applied annotation) change only where we mean them to.

use std::io;

use serde::Serialize;
use serde_json::ser::{CharEscape, CompactFormatter, Formatter};

struct GoFormatter(CompactFormatter);

impl Formatter for GoFormatter {
    fn write_string_fragment<W: ?Sized + io::Write>(&mut self, writer: &mut W, fragment: &str) -> io::Result<()> {
        let mut start = 0;
        for (index, ch) in fragment.char_indices() {
            let escaped = match ch {
                '<' => "\\u003c",
                '>' => "\\u003e",
                '&' => "\\u0026",
                '\u{2028}' => "\\u2028",
                '\u{2029}' => "\\u2029",
                _ => continue,
            };
            writer.write_all(&fragment.as_bytes()[start..index])?;
            writer.write_all(escaped.as_bytes())?;
            start = index + ch.len_utf8();
        }
        writer.write_all(&fragment.as_bytes()[start..])
    }

    fn write_char_escape<W: ?Sized + io::Write>(&mut self, writer: &mut W, escape: CharEscape) -> io::Result<()> {
        // Go writes \u00XX for control characters serde_json would also escape, but lower-case
        // hex and the short forms \n \r \t \" \\ agree; \b and \f Go writes as \u0008, \u000c.
        match escape {
            CharEscape::Backspace => writer.write_all(b"\\u0008"),
            CharEscape::FormFeed => writer.write_all(b"\\u000c"),
            other => self.0.write_char_escape(writer, other),
        }
    }
}

/// Serializes `value` as Go's `json.Marshal` would.
pub fn to_string<T: Serialize + ?Sized>(value: &T) -> String {
    let mut out = Vec::new();
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, GoFormatter(CompactFormatter));
    value.serialize(&mut serializer).expect("serializing a JSON value cannot fail");
    String::from_utf8(out).expect("JSON output is UTF-8")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn escapes_like_go() {
        let value = json!({"a": "x<y>&z\u{2028}\n\t\"\\\u{8}\u{c}\u{1}é"});
        assert_eq!(to_string(&value), r#"{"a":"x\u003cy\u003e\u0026z\u2028\n\t\"\\\u0008\u000c\u0001é"}"#);
    }

    #[test]
    fn keeps_key_order_and_compact_form() {
        let value: serde_json::Value = serde_json::from_str(r#"{"z":1,"a":[1,2,{"b":null}]}"#).unwrap();
        assert_eq!(to_string(&value), r#"{"z":1,"a":[1,2,{"b":null}]}"#);
    }
}
