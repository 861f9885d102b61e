// SPDX-License-Identifier: MPL-2.0
//! AMF0, the encoding of RTMP commands and metadata (Adobe AMF0 spec).
//!
//! Every type of the spec is modelled. Decoding is bounded by [`AmfLimits`]
//! and never panics; the reserved MovieClip and RecordSet markers are
//! rejected as unsupported.

use super::amf3::{self, Amf3Value};
use super::error::{Error, Result};
use super::limits::AmfLimits;
use super::reader::Reader;

/// The type markers that start each AMF0 value.
pub mod marker {
    /// A number (f64).
    pub const NUMBER: u8 = 0x00;
    /// A boolean.
    pub const BOOLEAN: u8 = 0x01;
    /// A string under 64 KiB.
    pub const STRING: u8 = 0x02;
    /// An anonymous object.
    pub const OBJECT: u8 = 0x03;
    /// Reserved (never sent).
    pub const MOVIECLIP: u8 = 0x04;
    /// null.
    pub const NULL: u8 = 0x05;
    /// undefined.
    pub const UNDEFINED: u8 = 0x06;
    /// A reference to an earlier complex value.
    pub const REFERENCE: u8 = 0x07;
    /// An associative array with a count hint.
    pub const ECMA_ARRAY: u8 = 0x08;
    /// The end of an object or ECMA array (after an empty name).
    pub const OBJECT_END: u8 = 0x09;
    /// A dense array.
    pub const STRICT_ARRAY: u8 = 0x0A;
    /// A date.
    pub const DATE: u8 = 0x0B;
    /// A string of 64 KiB or more.
    pub const LONG_STRING: u8 = 0x0C;
    /// Unsupported.
    pub const UNSUPPORTED: u8 = 0x0D;
    /// Reserved (never sent).
    pub const RECORDSET: u8 = 0x0E;
    /// An XML document.
    pub const XML_DOCUMENT: u8 = 0x0F;
    /// An object of a named class.
    pub const TYPED_OBJECT: u8 = 0x10;
    /// The value that follows is AMF3.
    pub const AVMPLUS: u8 = 0x11;
}

/// Ordered key/value pairs, as objects and ECMA arrays carry them.
pub type Properties = Vec<(String, Amf0Value)>;

/// One AMF0 value.
#[derive(Debug, Clone, PartialEq)]
pub enum Amf0Value {
    /// A number (every AMF0 number is a double).
    Number(f64),
    /// A boolean.
    Boolean(bool),
    /// A string (under 64 KiB on the wire).
    String(String),
    /// An anonymous object: names and values, in order.
    Object(Properties),
    /// null.
    Null,
    /// undefined.
    Undefined,
    /// Index into the table of complex values seen earlier in the message.
    /// Kept unresolved: a reference may point at an enclosing object.
    Reference(u16),
    /// An associative array (its count is only a hint on the wire).
    EcmaArray(Properties),
    /// A dense array.
    StrictArray(Vec<Amf0Value>),
    /// Milliseconds since the epoch, and a time zone the spec says to ignore.
    Date {
        /// Milliseconds since 1970-01-01.
        millis: f64,
        /// Minutes from UTC, which readers ignore.
        time_zone: i16,
    },
    /// A string of 64 KiB or more.
    LongString(String),
    /// The Unsupported marker.
    Unsupported,
    /// An XML document, as text.
    XmlDocument(String),
    /// An object of a named class.
    TypedObject {
        /// The class name.
        class_name: String,
        /// Its properties, in order.
        properties: Properties,
    },
    /// The switch to AMF3 for one value.
    Avmplus(Amf3Value),
}

impl Amf0Value {
    /// A String value.
    pub fn string(s: impl Into<String>) -> Self {
        Amf0Value::String(s.into())
    }

    /// The text of a String or LongString.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Amf0Value::String(s) | Amf0Value::LongString(s) => Some(s),
            Amf0Value::Avmplus(Amf3Value::String(s)) => Some(s),
            _ => None,
        }
    }

    /// The number of a Number (or of an AMF3 double or integer).
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Amf0Value::Number(n) => Some(*n),
            Amf0Value::Avmplus(Amf3Value::Double(n)) => Some(*n),
            Amf0Value::Avmplus(Amf3Value::Integer(n)) => Some(f64::from(*n)),
            _ => None,
        }
    }

    /// Whether it takes a place in its message's reference table (objects
    /// and arrays), which later `Reference`s count by.
    pub fn is_complex(&self) -> bool {
        matches!(
            self,
            Amf0Value::Object(_)
                | Amf0Value::EcmaArray(_)
                | Amf0Value::StrictArray(_)
                | Amf0Value::TypedObject { .. }
        )
    }

    /// The value of a Boolean.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Amf0Value::Boolean(b) => Some(*b),
            Amf0Value::Avmplus(Amf3Value::Boolean(b)) => Some(*b),
            _ => None,
        }
    }

    /// The properties of an Object, ECMA array or typed object.
    pub fn properties(&self) -> Option<&Properties> {
        match self {
            Amf0Value::Object(p) | Amf0Value::EcmaArray(p) => Some(p),
            Amf0Value::TypedObject { properties, .. } => Some(properties),
            _ => None,
        }
    }

    /// Looks up a property of an object-like value by name.
    pub fn get(&self, key: &str) -> Option<&Amf0Value> {
        self.properties()?
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }

    /// A property's text, if it has one.
    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(Amf0Value::as_str)
    }

    /// A property's number, if it has one.
    pub fn get_f64(&self, key: &str) -> Option<f64> {
        self.get(key).and_then(Amf0Value::as_f64)
    }
}

/// Decodes every value in `buf`.
pub fn decode_all(buf: &[u8], limits: &AmfLimits) -> Result<Vec<Amf0Value>> {
    let mut dec = Decoder::new(buf, limits);
    let mut out = Vec::new();
    while !dec.reader.is_empty() {
        out.push(dec.value()?);
    }
    Ok(out)
}

/// Decodes one value from the front of `buf`, returning it and the bytes used.
pub fn decode_one(buf: &[u8], limits: &AmfLimits) -> Result<(Amf0Value, usize)> {
    let mut dec = Decoder::new(buf, limits);
    let v = dec.value()?;
    Ok((v, dec.reader.position()))
}

/// A stateful decoder: the reference table spans the values of one message.
pub struct Decoder<'a> {
    reader: Reader<'a>,
    limits: AmfLimits,
    depth: u32,
    elements: u32,
    string_bytes: u32,
    complex_seen: u32,
}

impl<'a> Decoder<'a> {
    /// A decoder of `buf` within `limits`.
    pub fn new(buf: &'a [u8], limits: &AmfLimits) -> Self {
        Decoder {
            reader: Reader::new(buf),
            limits: *limits,
            depth: 0,
            elements: 0,
            string_bytes: 0,
            complex_seen: 0,
        }
    }

    /// Whether every byte has been read.
    pub fn is_empty(&self) -> bool {
        self.reader.is_empty()
    }

    /// How many bytes have been read.
    pub fn position(&self) -> usize {
        self.reader.position()
    }

    fn count_element(&mut self) -> Result<()> {
        self.elements += 1;
        if self.elements > self.limits.max_elements {
            return Err(Error::limit(format!(
                "AMF0 message has more than {} values",
                self.limits.max_elements
            )));
        }
        Ok(())
    }

    fn text(&mut self, len: usize) -> Result<String> {
        self.string_bytes = self.string_bytes.saturating_add(len as u32);
        if self.string_bytes > self.limits.max_string_bytes {
            return Err(Error::limit(format!(
                "AMF0 message has more than {} bytes of strings",
                self.limits.max_string_bytes
            )));
        }
        let bytes = self
            .reader
            .bytes(len)
            .map_err(|_| Error::malformed(format!("AMF0 string of {len} bytes is truncated")))?;
        Ok(utf8_lossy(bytes))
    }

    fn short_string(&mut self) -> Result<String> {
        let len = self.u16()? as usize;
        self.text(len)
    }

    fn long_string(&mut self) -> Result<String> {
        let len = self.u32()? as usize;
        self.text(len)
    }

    fn u16(&mut self) -> Result<u16> {
        self.reader.u16().map_err(truncated)
    }

    fn u32(&mut self) -> Result<u32> {
        self.reader.u32().map_err(truncated)
    }

    fn enter(&mut self) -> Result<()> {
        self.depth += 1;
        if self.depth > self.limits.max_depth {
            return Err(Error::limit(format!(
                "AMF0 values nested deeper than {}",
                self.limits.max_depth
            )));
        }
        Ok(())
    }

    /// Reads key/value pairs up to the object-end marker. `count_hint` is an
    /// ECMA array's announced size: some encoders omit the end marker when
    /// the input ends right after that many pairs, and that is accepted.
    fn properties(&mut self, count_hint: Option<u32>) -> Result<Properties> {
        self.enter()?;
        let mut props = Vec::new();
        loop {
            if self.reader.is_empty() && count_hint.is_some_and(|n| props.len() as u32 >= n) {
                break;
            }
            let key = self.short_string()?;
            if key.is_empty() {
                match self.reader.peek_u8() {
                    Ok(marker::OBJECT_END) => {
                        self.reader.skip(1)?;
                        break;
                    }
                    Err(_) if count_hint.is_some_and(|n| props.len() as u32 >= n) => break,
                    _ => {}
                }
            }
            let v = self.value()?;
            props.push((key, v));
        }
        self.depth -= 1;
        Ok(props)
    }

    /// Decodes the next value.
    pub fn value(&mut self) -> Result<Amf0Value> {
        self.count_element()?;
        let m = self.reader.u8().map_err(truncated)?;
        Ok(match m {
            marker::NUMBER => Amf0Value::Number(self.reader.f64().map_err(truncated)?),
            marker::BOOLEAN => Amf0Value::Boolean(self.reader.u8().map_err(truncated)? != 0),
            marker::STRING => Amf0Value::String(self.short_string()?),
            marker::OBJECT => {
                self.complex_seen += 1;
                Amf0Value::Object(self.properties(None)?)
            }
            marker::NULL => Amf0Value::Null,
            marker::UNDEFINED => Amf0Value::Undefined,
            marker::REFERENCE => {
                let idx = self.u16()?;
                if u32::from(idx) >= self.complex_seen {
                    return Err(Error::malformed(format!(
                        "AMF0 reference {idx} points past the {} complex values seen",
                        self.complex_seen
                    )));
                }
                Amf0Value::Reference(idx)
            }
            marker::ECMA_ARRAY => {
                self.complex_seen += 1;
                let n = self.u32()?;
                Amf0Value::EcmaArray(self.properties(Some(n))?)
            }
            marker::STRICT_ARRAY => {
                self.complex_seen += 1;
                let n = self.u32()?;
                // Each value takes at least one byte: a count larger than the
                // input is a lie, caught before reserving anything.
                if n as usize > self.reader.remaining() {
                    return Err(Error::malformed(format!(
                        "AMF0 strict array claims {n} values in {} bytes",
                        self.reader.remaining()
                    )));
                }
                self.enter()?;
                let mut items = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    items.push(self.value()?);
                }
                self.depth -= 1;
                Amf0Value::StrictArray(items)
            }
            marker::DATE => {
                let millis = self.reader.f64().map_err(truncated)?;
                let time_zone = self.reader.i16().map_err(truncated)?;
                Amf0Value::Date { millis, time_zone }
            }
            marker::LONG_STRING => Amf0Value::LongString(self.long_string()?),
            marker::UNSUPPORTED => Amf0Value::Unsupported,
            marker::XML_DOCUMENT => Amf0Value::XmlDocument(self.long_string()?),
            marker::TYPED_OBJECT => {
                self.complex_seen += 1;
                let class_name = self.short_string()?;
                let properties = self.properties(None)?;
                Amf0Value::TypedObject {
                    class_name,
                    properties,
                }
            }
            marker::AVMPLUS => {
                self.enter()?;
                let budget = AmfLimits {
                    max_depth: self.limits.max_depth - self.depth,
                    max_elements: self.limits.max_elements - self.elements,
                    max_string_bytes: self.limits.max_string_bytes - self.string_bytes,
                };
                let mut d3 = amf3::Decoder::new(self.reader.rest(), &budget);
                let v = d3.value()?;
                self.reader.skip(d3.position())?;
                self.elements += d3.elements();
                self.string_bytes += d3.string_bytes();
                self.depth -= 1;
                Amf0Value::Avmplus(v)
            }
            marker::MOVIECLIP | marker::RECORDSET => {
                return Err(Error::unsupported(format!(
                    "AMF0 marker 0x{m:02x} is reserved and not supported"
                )));
            }
            marker::OBJECT_END => {
                return Err(Error::malformed("AMF0 object-end marker outside an object"));
            }
            _ => {
                return Err(Error::malformed(format!("unknown AMF0 marker 0x{m:02x}")));
            }
        })
    }
}

fn truncated(_: Error) -> Error {
    Error::malformed("AMF0 value is truncated")
}

/// AMF strings should be UTF-8; encoders that send Latin-1 in metadata
/// exist, and a title is not worth failing a stream for.
pub(crate) fn utf8_lossy(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_owned(),
        Err(_) => String::from_utf8_lossy(bytes).into_owned(),
    }
}

/// Appends the encoding of `v` to `out`.
pub fn encode(v: &Amf0Value, out: &mut Vec<u8>) {
    match v {
        Amf0Value::Number(n) => {
            out.push(marker::NUMBER);
            out.extend_from_slice(&n.to_be_bytes());
        }
        Amf0Value::Boolean(b) => out.extend_from_slice(&[marker::BOOLEAN, u8::from(*b)]),
        Amf0Value::String(s) => {
            // A string too long for the 16-bit length becomes a long string.
            if s.len() > usize::from(u16::MAX) {
                out.push(marker::LONG_STRING);
                put_long_str(out, s);
            } else {
                out.push(marker::STRING);
                put_str(out, s);
            }
        }
        Amf0Value::Object(p) => {
            out.push(marker::OBJECT);
            put_properties(out, p);
        }
        Amf0Value::Null => out.push(marker::NULL),
        Amf0Value::Undefined => out.push(marker::UNDEFINED),
        Amf0Value::Reference(i) => {
            out.push(marker::REFERENCE);
            out.extend_from_slice(&i.to_be_bytes());
        }
        Amf0Value::EcmaArray(p) => {
            out.push(marker::ECMA_ARRAY);
            out.extend_from_slice(&(p.len() as u32).to_be_bytes());
            put_properties(out, p);
        }
        Amf0Value::StrictArray(items) => {
            out.push(marker::STRICT_ARRAY);
            out.extend_from_slice(&(items.len() as u32).to_be_bytes());
            for i in items {
                encode(i, out);
            }
        }
        Amf0Value::Date { millis, time_zone } => {
            out.push(marker::DATE);
            out.extend_from_slice(&millis.to_be_bytes());
            out.extend_from_slice(&time_zone.to_be_bytes());
        }
        Amf0Value::LongString(s) => {
            out.push(marker::LONG_STRING);
            put_long_str(out, s);
        }
        Amf0Value::Unsupported => out.push(marker::UNSUPPORTED),
        Amf0Value::XmlDocument(s) => {
            out.push(marker::XML_DOCUMENT);
            put_long_str(out, s);
        }
        Amf0Value::TypedObject {
            class_name,
            properties,
        } => {
            out.push(marker::TYPED_OBJECT);
            put_str(out, class_name);
            put_properties(out, properties);
        }
        Amf0Value::Avmplus(v) => {
            out.push(marker::AVMPLUS);
            amf3::Encoder::new().encode(v, out);
        }
    }
}

/// Encodes a sequence of values, as a command or data message body.
pub fn encode_all(values: &[Amf0Value]) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    for v in values {
        encode(v, &mut out);
    }
    out
}

/// Writes a 16-bit-length string; keys longer than that are cut at a
/// character boundary (no real key comes near 64 KiB).
fn put_str(out: &mut Vec<u8>, s: &str) {
    let mut end = s.len().min(usize::from(u16::MAX));
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    out.extend_from_slice(&(end as u16).to_be_bytes());
    out.extend_from_slice(&s.as_bytes()[..end]);
}

fn put_long_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_properties(out: &mut Vec<u8>, props: &Properties) {
    for (k, v) in props {
        put_str(out, k);
        encode(v, out);
    }
    out.extend_from_slice(&[0, 0, marker::OBJECT_END]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::amf3::Amf3Object;
    use proptest::prelude::*;

    fn roundtrip(v: &Amf0Value) -> Amf0Value {
        let mut out = Vec::new();
        encode(v, &mut out);
        let (d, used) = decode_one(&out, &AmfLimits::default()).unwrap();
        assert_eq!(used, out.len());
        d
    }

    #[test]
    fn connect_command_bytes() {
        // The start of a connect command as ffmpeg sends it.
        let mut buf = vec![0x02, 0x00, 0x07];
        buf.extend_from_slice(b"connect");
        buf.push(0x00);
        buf.extend_from_slice(&1.0f64.to_be_bytes());
        buf.extend_from_slice(&[0x03, 0x00, 0x03]);
        buf.extend_from_slice(b"app");
        buf.extend_from_slice(&[0x02, 0x00, 0x04]);
        buf.extend_from_slice(b"live");
        buf.extend_from_slice(&[0x00, 0x00, 0x09]);
        let v = decode_all(&buf, &AmfLimits::default()).unwrap();
        assert_eq!(v[0].as_str(), Some("connect"));
        assert_eq!(v[1].as_f64(), Some(1.0));
        assert_eq!(v[2].get_str("app"), Some("live"));
        assert_eq!(encode_all(&v), buf);
    }

    #[test]
    fn every_type_round_trips() {
        let values = vec![
            Amf0Value::Number(-1.5),
            Amf0Value::Boolean(true),
            Amf0Value::string("héllo"),
            Amf0Value::Object(vec![("a".into(), Amf0Value::Null)]),
            Amf0Value::Null,
            Amf0Value::Undefined,
            Amf0Value::EcmaArray(vec![("duration".into(), Amf0Value::Number(0.0))]),
            Amf0Value::StrictArray(vec![Amf0Value::Number(1.0), Amf0Value::Reference(0)]),
            Amf0Value::Date {
                millis: 1.7e12,
                time_zone: -60,
            },
            Amf0Value::LongString("x".repeat(70_000)),
            Amf0Value::Unsupported,
            Amf0Value::XmlDocument("<a/>".into()),
            Amf0Value::TypedObject {
                class_name: "com.example.T".into(),
                properties: vec![("n".into(), Amf0Value::Number(2.0))],
            },
            Amf0Value::Avmplus(Amf3Value::Object(Box::new(Amf3Object {
                class_name: String::new(),
                dynamic: true,
                sealed: vec![],
                dynamic_members: vec![("k".into(), Amf3Value::Integer(7))],
                externalizable: None,
            }))),
        ];
        let enc = encode_all(&values);
        assert_eq!(decode_all(&enc, &AmfLimits::default()).unwrap(), values);
    }

    #[test]
    fn long_plain_string_becomes_long_string() {
        let s = "y".repeat(70_000);
        assert_eq!(
            roundtrip(&Amf0Value::String(s.clone())),
            Amf0Value::LongString(s)
        );
    }

    #[test]
    fn ecma_array_without_end_marker() {
        // Count 1, one pair, then the input ends: accepted.
        let mut buf = vec![marker::ECMA_ARRAY, 0, 0, 0, 1, 0, 1, b'a', marker::NULL];
        let v = decode_all(&buf, &AmfLimits::default()).unwrap();
        assert_eq!(
            v,
            vec![Amf0Value::EcmaArray(vec![("a".into(), Amf0Value::Null)])]
        );
        // With a wrong count and no end marker it is truncated.
        buf[4] = 2;
        assert!(decode_all(&buf, &AmfLimits::default()).is_err());
    }

    #[test]
    fn hostile_inputs_are_rejected() {
        let limits = AmfLimits::default();
        // Deep nesting.
        let deep: Vec<u8> = std::iter::repeat_n(marker::STRICT_ARRAY, 1)
            .chain([0, 0, 0, 1])
            .cycle()
            .take(5 * 100)
            .collect();
        let e = decode_all(&deep, &limits).unwrap_err();
        assert_eq!(e.kind(), crate::error::ErrorKind::LimitExceeded);
        // A strict array claiming four billion entries.
        let e = decode_all(&[marker::STRICT_ARRAY, 0xFF, 0xFF, 0xFF, 0xFF], &limits).unwrap_err();
        assert!(e.reason().contains("claims"), "{e}");
        // Reference to nothing.
        assert!(decode_all(&[marker::REFERENCE, 0, 0], &limits).is_err());
        // Reserved markers, unknown markers, stray end marker, truncation.
        for bad in [
            &[marker::MOVIECLIP][..],
            &[marker::RECORDSET],
            &[0x42],
            &[marker::OBJECT_END],
            &[marker::NUMBER, 0, 0],
            &[marker::STRING, 0, 9, b'a'],
            &[marker::OBJECT, 0, 1, b'a'],
        ] {
            assert!(decode_all(bad, &limits).is_err(), "{bad:?}");
        }
        // Too many values.
        let small = AmfLimits {
            max_elements: 3,
            ..limits
        };
        assert!(decode_all(&[5, 5, 5, 5], &small).is_err());
        assert!(decode_all(&[5, 5, 5], &small).is_ok());
    }

    pub(crate) fn arb_value() -> impl Strategy<Value = Amf0Value> {
        let leaf = prop_oneof![
            any::<f64>()
                .prop_filter("NaN never equals itself", |f| !f.is_nan())
                .prop_map(Amf0Value::Number),
            any::<bool>().prop_map(Amf0Value::Boolean),
            ".{0,20}".prop_map(Amf0Value::String),
            Just(Amf0Value::Null),
            Just(Amf0Value::Undefined),
            Just(Amf0Value::Unsupported),
            ".{0,20}".prop_map(Amf0Value::LongString),
            ".{0,20}".prop_map(Amf0Value::XmlDocument),
            (any::<i32>(), any::<i16>()).prop_map(|(m, tz)| Amf0Value::Date {
                millis: f64::from(m),
                time_zone: tz
            }),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            // Keys are never empty: an empty key followed by 0x09 ends an object.
            let props = prop::collection::vec(("[a-z]{1,8}", inner.clone()), 0..6);
            prop_oneof![
                props.clone().prop_map(Amf0Value::Object),
                props.clone().prop_map(Amf0Value::EcmaArray),
                prop::collection::vec(inner, 0..6).prop_map(Amf0Value::StrictArray),
                ("[a-zA-Z.]{0,12}", props).prop_map(|(c, p)| Amf0Value::TypedObject {
                    class_name: c,
                    properties: p
                }),
            ]
        })
    }

    proptest! {
        #[test]
        fn round_trip(values in prop::collection::vec(arb_value(), 0..4)) {
            let enc = encode_all(&values);
            prop_assert_eq!(decode_all(&enc, &AmfLimits::default()).unwrap(), values);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode_all(&bytes, &AmfLimits::default());
        }
    }
}
