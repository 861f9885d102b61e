// SPDX-License-Identifier: MPL-2.0
//! AMF3 (Adobe AMF3 spec): every type, with the string, object and traits
//! reference tables.
//!
//! String and traits references are resolved while decoding. Object
//! references are kept as [`Amf3Value::Reference`]: AMF3 object graphs may be
//! cyclic (an object holding itself), which a tree of values cannot hold, and
//! resolving them by copying would let a short input expand without bound.

use std::collections::HashMap;

use super::amf0::utf8_lossy;
use super::error::{Error, Result};
use super::limits::AmfLimits;
use super::reader::Reader;

/// The type markers that start each AMF3 value.
pub mod marker {
    /// undefined.
    pub const UNDEFINED: u8 = 0x00;
    /// null.
    pub const NULL: u8 = 0x01;
    /// false.
    pub const FALSE: u8 = 0x02;
    /// true.
    pub const TRUE: u8 = 0x03;
    /// A 29-bit integer.
    pub const INTEGER: u8 = 0x04;
    /// A double.
    pub const DOUBLE: u8 = 0x05;
    /// A string (or a reference to one).
    pub const STRING: u8 = 0x06;
    /// An XMLDocument.
    pub const XML_DOC: u8 = 0x07;
    /// A date.
    pub const DATE: u8 = 0x08;
    /// An array: associative part, then dense part.
    pub const ARRAY: u8 = 0x09;
    /// An object (traits inline or by reference).
    pub const OBJECT: u8 = 0x0A;
    /// An XML value (E4X).
    pub const XML: u8 = 0x0B;
    /// A byte array.
    pub const BYTE_ARRAY: u8 = 0x0C;
    /// A vector of i32.
    pub const VECTOR_INT: u8 = 0x0D;
    /// A vector of u32.
    pub const VECTOR_UINT: u8 = 0x0E;
    /// A vector of doubles.
    pub const VECTOR_DOUBLE: u8 = 0x0F;
    /// A vector of objects of one type.
    pub const VECTOR_OBJECT: u8 = 0x10;
    /// A dictionary.
    pub const DICTIONARY: u8 = 0x11;
}

/// The largest and smallest integers the 29-bit integer type holds.
pub const INTEGER_MAX: i32 = (1 << 28) - 1;
/// See [`INTEGER_MAX`].
pub const INTEGER_MIN: i32 = -(1 << 28);

/// Externalizable classes whose body is one AMF3 value (Flex's wrappers).
const KNOWN_EXTERNALIZABLE: [&str; 3] = [
    "flex.messaging.io.ArrayCollection",
    "flex.messaging.io.ObjectProxy",
    "DSK",
];

/// One AMF3 value.
#[derive(Debug, Clone, PartialEq)]
pub enum Amf3Value {
    /// undefined.
    Undefined,
    /// null.
    Null,
    /// A boolean (two markers on the wire).
    Boolean(bool),
    /// A 29-bit signed integer.
    Integer(i32),
    /// A double.
    Double(f64),
    /// A string.
    String(String),
    /// An XMLDocument, as text.
    XmlDocument(String),
    /// Milliseconds since the epoch, UTC.
    Date(f64),
    /// An array.
    Array {
        /// Its named members, in order.
        assoc: Vec<(String, Amf3Value)>,
        /// Its dense members.
        dense: Vec<Amf3Value>,
    },
    /// An object.
    Object(Box<Amf3Object>),
    /// An XML value (E4X), as text.
    Xml(String),
    /// A byte array.
    ByteArray(Vec<u8>),
    /// A vector of i32.
    VectorInt {
        /// Whether its length is fixed.
        fixed: bool,
        /// The items.
        items: Vec<i32>,
    },
    /// A vector of u32.
    VectorUint {
        /// Whether its length is fixed.
        fixed: bool,
        /// The items.
        items: Vec<u32>,
    },
    /// A vector of doubles.
    VectorDouble {
        /// Whether its length is fixed.
        fixed: bool,
        /// The items.
        items: Vec<f64>,
    },
    /// A vector of objects of one type.
    VectorObject {
        /// Whether its length is fixed.
        fixed: bool,
        /// The type of its items ("" for any).
        type_name: String,
        /// The items.
        items: Vec<Amf3Value>,
    },
    /// A dictionary: keys of any type.
    Dictionary {
        /// Whether its keys are weakly held (meaningless off Flash).
        weak_keys: bool,
        /// The entries, in order.
        entries: Vec<(Amf3Value, Amf3Value)>,
    },
    /// Index into the object table (complex values in order of appearance).
    Reference(u32),
}

/// An AMF3 object: its class, and its sealed and dynamic members.
#[derive(Debug, Clone, PartialEq)]
pub struct Amf3Object {
    /// Empty for an anonymous object.
    pub class_name: String,
    /// Whether it may carry members beyond its sealed ones.
    pub dynamic: bool,
    /// The members its traits name, in order.
    pub sealed: Vec<(String, Amf3Value)>,
    /// The members beyond its traits (dynamic objects).
    pub dynamic_members: Vec<(String, Amf3Value)>,
    /// The single wrapped value of a known externalizable class.
    pub externalizable: Option<Amf3Value>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Traits {
    class_name: String,
    dynamic: bool,
    externalizable: bool,
    sealed_names: Vec<String>,
}

/// A stateful decoder: the string, object and traits tables span the
/// values of one message (or one AMF0 switch).
pub struct Decoder<'a> {
    reader: Reader<'a>,
    limits: AmfLimits,
    strings: Vec<String>,
    traits: Vec<Traits>,
    objects: u32,
    depth: u32,
    elements: u32,
    string_bytes: u32,
}

impl<'a> Decoder<'a> {
    /// A decoder of `buf` within `limits`.
    pub fn new(buf: &'a [u8], limits: &AmfLimits) -> Self {
        Decoder {
            reader: Reader::new(buf),
            limits: *limits,
            strings: Vec::new(),
            traits: Vec::new(),
            objects: 0,
            depth: 0,
            elements: 0,
            string_bytes: 0,
        }
    }

    /// How many bytes have been read.
    pub fn position(&self) -> usize {
        self.reader.position()
    }

    /// Values decoded so far (nested ones included), for the limits.
    pub fn elements(&self) -> u32 {
        self.elements
    }

    /// String bytes materialised so far, for the limits.
    pub fn string_bytes(&self) -> u32 {
        self.string_bytes
    }

    fn u8(&mut self) -> Result<u8> {
        self.reader.u8().map_err(truncated)
    }

    /// The variable-length 29-bit unsigned integer.
    fn u29(&mut self) -> Result<u32> {
        let mut v: u32 = 0;
        for _ in 0..3 {
            let b = self.u8()?;
            v = (v << 7) | u32::from(b & 0x7F);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        let b = self.u8()?;
        Ok((v << 8) | u32::from(b))
    }

    fn count(&mut self, what: &str, n: u32, min_bytes_each: usize) -> Result<usize> {
        // A count that cannot fit in what is left is a lie, caught before
        // anything is reserved for it.
        if (n as usize).saturating_mul(min_bytes_each) > self.reader.remaining() {
            return Err(Error::malformed(format!(
                "AMF3 {what} claims {n} entries in {} bytes",
                self.reader.remaining()
            )));
        }
        Ok(n as usize)
    }

    fn charge_string(&mut self, len: usize) -> Result<()> {
        self.string_bytes = self.string_bytes.saturating_add(len as u32);
        if self.string_bytes > self.limits.max_string_bytes {
            return Err(Error::limit(format!(
                "AMF3 message has more than {} bytes of strings",
                self.limits.max_string_bytes
            )));
        }
        Ok(())
    }

    fn string(&mut self) -> Result<String> {
        let h = self.u29()?;
        if h & 1 == 0 {
            let idx = (h >> 1) as usize;
            let s = self.strings.get(idx).cloned().ok_or_else(|| {
                Error::malformed(format!("AMF3 string reference {idx} is out of range"))
            })?;
            self.charge_string(s.len())?;
            return Ok(s);
        }
        let len = (h >> 1) as usize;
        self.charge_string(len)?;
        let bytes = self.reader.bytes(len).map_err(truncated)?;
        let s = utf8_lossy(bytes);
        if !s.is_empty() {
            self.strings.push(s.clone());
        }
        Ok(s)
    }

    /// Reads a U29 header whose low bit tells an inline value (1) from an
    /// object reference (0). Returns the remaining bits for inline values.
    fn object_header(&mut self) -> Result<std::result::Result<u32, Amf3Value>> {
        let h = self.u29()?;
        if h & 1 == 0 {
            let idx = h >> 1;
            if idx >= self.objects {
                return Err(Error::malformed(format!(
                    "AMF3 object reference {idx} points past the {} objects seen",
                    self.objects
                )));
            }
            return Ok(Err(Amf3Value::Reference(idx)));
        }
        self.objects += 1;
        Ok(Ok(h >> 1))
    }

    fn enter(&mut self) -> Result<()> {
        self.depth += 1;
        if self.depth > self.limits.max_depth {
            return Err(Error::limit(format!(
                "AMF3 values nested deeper than {}",
                self.limits.max_depth
            )));
        }
        Ok(())
    }

    /// Decodes the next value.
    pub fn value(&mut self) -> Result<Amf3Value> {
        self.elements += 1;
        if self.elements > self.limits.max_elements {
            return Err(Error::limit(format!(
                "AMF3 message has more than {} values",
                self.limits.max_elements
            )));
        }
        let m = self.u8()?;
        // What follows the header of a value kept in the object table.
        let body: fn(&mut Self, u8, u32) -> Result<Amf3Value> = match m {
            marker::UNDEFINED => return Ok(Amf3Value::Undefined),
            marker::NULL => return Ok(Amf3Value::Null),
            marker::FALSE => return Ok(Amf3Value::Boolean(false)),
            marker::TRUE => return Ok(Amf3Value::Boolean(true)),
            marker::INTEGER => {
                let v = self.u29()?;
                // Sign-extend from 29 bits.
                return Ok(Amf3Value::Integer(((v << 3) as i32) >> 3));
            }
            marker::DOUBLE => return Ok(Amf3Value::Double(self.reader.f64().map_err(truncated)?)),
            marker::STRING => return Ok(Amf3Value::String(self.string()?)),
            marker::XML_DOC | marker::XML => Self::text,
            marker::DATE => |d, _, _| Ok(Amf3Value::Date(d.reader.f64().map_err(truncated)?)),
            marker::ARRAY => Self::array,
            marker::OBJECT => |d, _, bits| d.object(bits),
            marker::BYTE_ARRAY => |d, _, len| {
                d.charge_string(len as usize)?;
                let b = d.reader.bytes(len as usize).map_err(truncated)?;
                Ok(Amf3Value::ByteArray(b.to_vec()))
            },
            marker::VECTOR_INT | marker::VECTOR_UINT | marker::VECTOR_DOUBLE => Self::vector,
            marker::VECTOR_OBJECT => Self::vector_object,
            marker::DICTIONARY => Self::dictionary,
            _ => return Err(Error::malformed(format!("unknown AMF3 marker 0x{m:02x}"))),
        };
        match self.object_header()? {
            Err(reference) => Ok(reference),
            Ok(bits) => body(self, m, bits),
        }
    }

    /// An XML document or E4X value of `len` bytes.
    fn text(&mut self, m: u8, len: u32) -> Result<Amf3Value> {
        self.charge_string(len as usize)?;
        let s = utf8_lossy(self.reader.bytes(len as usize).map_err(truncated)?);
        Ok(if m == marker::XML {
            Amf3Value::Xml(s)
        } else {
            Amf3Value::XmlDocument(s)
        })
    }

    /// An array: named members up to an empty name, then `dense_len` more.
    fn array(&mut self, _: u8, dense_len: u32) -> Result<Amf3Value> {
        self.enter()?;
        let mut assoc = Vec::new();
        loop {
            let key = self.string()?;
            if key.is_empty() {
                break;
            }
            assoc.push((key, self.value()?));
        }
        let n = self.count("array", dense_len, 1)?;
        let mut dense = Vec::with_capacity(n);
        for _ in 0..n {
            dense.push(self.value()?);
        }
        self.depth -= 1;
        Ok(Amf3Value::Array { assoc, dense })
    }

    /// A vector of `len` numbers, of the kind marker `m` says.
    fn vector(&mut self, m: u8, len: u32) -> Result<Amf3Value> {
        let fixed = self.u8()? != 0;
        let each = if m == marker::VECTOR_DOUBLE { 8 } else { 4 };
        let n = self.count("vector", len, each)?;
        let r = &mut self.reader;
        Ok(match m {
            marker::VECTOR_INT => Amf3Value::VectorInt {
                fixed,
                items: (0..n)
                    .map(|_| r.u32().map(|v| v as i32))
                    .collect::<Result<_>>()
                    .map_err(truncated)?,
            },
            marker::VECTOR_UINT => Amf3Value::VectorUint {
                fixed,
                items: (0..n)
                    .map(|_| r.u32())
                    .collect::<Result<_>>()
                    .map_err(truncated)?,
            },
            _ => Amf3Value::VectorDouble {
                fixed,
                items: (0..n)
                    .map(|_| r.f64())
                    .collect::<Result<_>>()
                    .map_err(truncated)?,
            },
        })
    }

    /// A vector of `len` values of one (named) type.
    fn vector_object(&mut self, _: u8, len: u32) -> Result<Amf3Value> {
        let fixed = self.u8()? != 0;
        let type_name = self.string()?;
        let n = self.count("vector", len, 1)?;
        self.enter()?;
        let mut items = Vec::with_capacity(n);
        for _ in 0..n {
            items.push(self.value()?);
        }
        self.depth -= 1;
        Ok(Amf3Value::VectorObject {
            fixed,
            type_name,
            items,
        })
    }

    /// A dictionary of `len` key and value pairs.
    fn dictionary(&mut self, _: u8, len: u32) -> Result<Amf3Value> {
        let weak_keys = self.u8()? != 0;
        let n = self.count("dictionary", len, 2)?;
        self.enter()?;
        let mut entries = Vec::with_capacity(n);
        for _ in 0..n {
            let k = self.value()?;
            let v = self.value()?;
            entries.push((k, v));
        }
        self.depth -= 1;
        Ok(Amf3Value::Dictionary { weak_keys, entries })
    }

    fn object(&mut self, bits: u32) -> Result<Amf3Value> {
        // bits: [sealed count..][dynamic][externalizable][traits inline]
        let traits = if bits & 1 == 0 {
            let idx = (bits >> 1) as usize;
            self.traits.get(idx).cloned().ok_or_else(|| {
                Error::malformed(format!("AMF3 traits reference {idx} is out of range"))
            })?
        } else {
            let externalizable = bits & 2 != 0;
            let dynamic = bits & 4 != 0;
            let n = self.count("traits", bits >> 3, 1)?;
            let class_name = self.string()?;
            let mut sealed_names = Vec::with_capacity(n);
            for _ in 0..n {
                sealed_names.push(self.string()?);
            }
            let t = Traits {
                class_name,
                dynamic,
                externalizable,
                sealed_names,
            };
            self.traits.push(t.clone());
            t
        };
        self.enter()?;
        let obj = if traits.externalizable {
            if !KNOWN_EXTERNALIZABLE.contains(&traits.class_name.as_str()) {
                return Err(Error::unsupported(format!(
                    "AMF3 externalizable class '{}' has a private encoding",
                    traits.class_name
                )));
            }
            Amf3Object {
                class_name: traits.class_name,
                dynamic: false,
                sealed: Vec::new(),
                dynamic_members: Vec::new(),
                externalizable: Some(self.value()?),
            }
        } else {
            let mut sealed = Vec::with_capacity(traits.sealed_names.len());
            for name in traits.sealed_names {
                let v = self.value()?;
                sealed.push((name, v));
            }
            let mut dynamic_members = Vec::new();
            if traits.dynamic {
                loop {
                    let key = self.string()?;
                    if key.is_empty() {
                        break;
                    }
                    dynamic_members.push((key, self.value()?));
                }
            }
            Amf3Object {
                class_name: traits.class_name,
                dynamic: traits.dynamic,
                sealed,
                dynamic_members,
                externalizable: None,
            }
        };
        self.depth -= 1;
        Ok(Amf3Value::Object(Box::new(obj)))
    }
}

fn truncated(_: Error) -> Error {
    Error::malformed("AMF3 value is truncated")
}

/// Decodes one AMF3 value from the front of `buf`.
pub fn decode_one(buf: &[u8], limits: &AmfLimits) -> Result<(Amf3Value, usize)> {
    let mut d = Decoder::new(buf, limits);
    let v = d.value()?;
    Ok((v, d.position()))
}

/// An encoder with its own string, traits and object tables; use one per
/// message so that references stay within it.
#[derive(Default)]
pub struct Encoder {
    strings: HashMap<String, u32>,
    traits: HashMap<Traits, u32>,
    objects: u32,
}

impl Encoder {
    /// An encoder with empty tables.
    pub fn new() -> Self {
        Self::default()
    }

    fn u29(out: &mut Vec<u8>, v: u32) {
        let v = v & 0x1FFF_FFFF;
        if v < 0x80 {
            out.push(v as u8);
        } else if v < 0x4000 {
            out.extend_from_slice(&[((v >> 7) | 0x80) as u8, (v & 0x7F) as u8]);
        } else if v < 0x20_0000 {
            out.extend_from_slice(&[
                ((v >> 14) | 0x80) as u8,
                ((v >> 7) | 0x80) as u8,
                (v & 0x7F) as u8,
            ]);
        } else {
            out.extend_from_slice(&[
                ((v >> 22) | 0x80) as u8,
                ((v >> 15) | 0x80) as u8,
                ((v >> 8) | 0x80) as u8,
                v as u8,
            ]);
        }
    }

    fn string(&mut self, s: &str, out: &mut Vec<u8>) {
        if let Some(&idx) = self.strings.get(s) {
            Self::u29(out, idx << 1);
            return;
        }
        if !s.is_empty() {
            let idx = self.strings.len() as u32;
            self.strings.insert(s.to_owned(), idx);
        }
        Self::u29(out, ((s.len() as u32) << 1) | 1);
        out.extend_from_slice(s.as_bytes());
    }

    fn inline_object(&mut self, out: &mut Vec<u8>, bits: u32) {
        self.objects += 1;
        Self::u29(out, (bits << 1) | 1);
    }

    /// A vector's marker, length and whether it is fixed.
    fn vector_head(&mut self, out: &mut Vec<u8>, m: u8, fixed: bool, len: usize) {
        out.push(m);
        self.inline_object(out, len as u32);
        out.push(u8::from(fixed));
    }

    /// Appends `v` to `out`, using the string and traits tables.
    pub fn encode(&mut self, v: &Amf3Value, out: &mut Vec<u8>) {
        match v {
            Amf3Value::Undefined => out.push(marker::UNDEFINED),
            Amf3Value::Null => out.push(marker::NULL),
            Amf3Value::Boolean(false) => out.push(marker::FALSE),
            Amf3Value::Boolean(true) => out.push(marker::TRUE),
            Amf3Value::Integer(i) if (INTEGER_MIN..=INTEGER_MAX).contains(i) => {
                out.push(marker::INTEGER);
                Self::u29(out, *i as u32);
            }
            Amf3Value::Integer(i) => {
                out.push(marker::DOUBLE);
                out.extend_from_slice(&f64::from(*i).to_be_bytes());
            }
            Amf3Value::Double(d) => {
                out.push(marker::DOUBLE);
                out.extend_from_slice(&d.to_be_bytes());
            }
            Amf3Value::String(s) => {
                out.push(marker::STRING);
                self.string(s, out);
            }
            Amf3Value::XmlDocument(s) | Amf3Value::Xml(s) => {
                out.push(if matches!(v, Amf3Value::Xml(_)) {
                    marker::XML
                } else {
                    marker::XML_DOC
                });
                self.inline_object(out, s.len() as u32);
                out.extend_from_slice(s.as_bytes());
            }
            Amf3Value::Date(ms) => {
                out.push(marker::DATE);
                self.inline_object(out, 0);
                out.extend_from_slice(&ms.to_be_bytes());
            }
            Amf3Value::Array { assoc, dense } => {
                out.push(marker::ARRAY);
                self.inline_object(out, dense.len() as u32);
                for (k, v) in assoc {
                    self.string(k, out);
                    self.encode(v, out);
                }
                self.string("", out);
                for v in dense {
                    self.encode(v, out);
                }
            }
            Amf3Value::Object(o) => self.object(o, out),
            Amf3Value::ByteArray(b) => {
                out.push(marker::BYTE_ARRAY);
                self.inline_object(out, b.len() as u32);
                out.extend_from_slice(b);
            }
            Amf3Value::VectorInt { fixed, items } => {
                self.vector_head(out, marker::VECTOR_INT, *fixed, items.len());
                items
                    .iter()
                    .for_each(|i| out.extend_from_slice(&i.to_be_bytes()));
            }
            Amf3Value::VectorUint { fixed, items } => {
                self.vector_head(out, marker::VECTOR_UINT, *fixed, items.len());
                items
                    .iter()
                    .for_each(|i| out.extend_from_slice(&i.to_be_bytes()));
            }
            Amf3Value::VectorDouble { fixed, items } => {
                self.vector_head(out, marker::VECTOR_DOUBLE, *fixed, items.len());
                items
                    .iter()
                    .for_each(|i| out.extend_from_slice(&i.to_be_bytes()));
            }
            Amf3Value::VectorObject {
                fixed,
                type_name,
                items,
            } => {
                self.vector_head(out, marker::VECTOR_OBJECT, *fixed, items.len());
                self.string(type_name, out);
                for i in items {
                    self.encode(i, out);
                }
            }
            Amf3Value::Dictionary { weak_keys, entries } => {
                out.push(marker::DICTIONARY);
                self.inline_object(out, entries.len() as u32);
                out.push(u8::from(*weak_keys));
                for (k, v) in entries {
                    self.encode(k, out);
                    self.encode(v, out);
                }
            }
            Amf3Value::Reference(idx) => {
                // The marker does not matter to a reference; Object is usual.
                out.push(marker::OBJECT);
                Self::u29(out, idx << 1);
            }
        }
    }

    fn object(&mut self, o: &Amf3Object, out: &mut Vec<u8>) {
        out.push(marker::OBJECT);
        self.objects += 1;
        let traits = Traits {
            class_name: o.class_name.clone(),
            dynamic: o.dynamic,
            externalizable: o.externalizable.is_some(),
            sealed_names: o.sealed.iter().map(|(k, _)| k.clone()).collect(),
        };
        if let Some(&idx) = self.traits.get(&traits) {
            // Object inline (1), traits by reference (0).
            Self::u29(out, (idx << 2) | 0b01);
        } else {
            let idx = self.traits.len() as u32;
            let mut bits = ((traits.sealed_names.len() as u32) << 4) | 0b0011;
            if traits.externalizable {
                bits |= 0b0100;
            }
            if traits.dynamic {
                bits |= 0b1000;
            }
            Self::u29(out, bits);
            self.string(&traits.class_name, out);
            for n in &traits.sealed_names {
                self.string(n, out);
            }
            self.traits.insert(traits, idx);
        }
        if let Some(inner) = &o.externalizable {
            self.encode(inner, out);
            return;
        }
        for (_, v) in &o.sealed {
            self.encode(v, out);
        }
        if o.dynamic {
            for (k, v) in &o.dynamic_members {
                self.string(k, out);
                self.encode(v, out);
            }
            self.string("", out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn enc(v: &Amf3Value) -> Vec<u8> {
        let mut out = Vec::new();
        Encoder::new().encode(v, &mut out);
        out
    }

    fn dec(b: &[u8]) -> Result<Amf3Value> {
        let (v, used) = decode_one(b, &AmfLimits::default())?;
        assert_eq!(used, b.len());
        Ok(v)
    }

    #[test]
    fn u29_boundaries() {
        for i in [
            0,
            1,
            0x7F,
            0x80,
            0x3FFF,
            0x4000,
            0x1F_FFFF,
            0x20_0000,
            INTEGER_MAX,
            -1,
            INTEGER_MIN,
        ] {
            assert_eq!(
                dec(&enc(&Amf3Value::Integer(i))).unwrap(),
                Amf3Value::Integer(i)
            );
        }
        // Outside the 29-bit range it becomes a double.
        assert_eq!(
            dec(&enc(&Amf3Value::Integer(1 << 29))).unwrap(),
            Amf3Value::Double((1 << 29) as f64)
        );
        assert_eq!(
            enc(&Amf3Value::Integer(0x80)),
            vec![marker::INTEGER, 0x81, 0x00]
        );
    }

    #[test]
    fn string_and_traits_references() {
        let obj = |n: i32| {
            Amf3Value::Object(Box::new(Amf3Object {
                class_name: "Point".into(),
                dynamic: false,
                sealed: vec![
                    ("x".into(), Amf3Value::Integer(n)),
                    ("y".into(), Amf3Value::String("same".into())),
                ],
                dynamic_members: vec![],
                externalizable: None,
            }))
        };
        let v = Amf3Value::Array {
            assoc: vec![],
            dense: vec![
                obj(1),
                obj(2),
                Amf3Value::String("same".into()),
                Amf3Value::Reference(1),
            ],
        };
        let bytes = enc(&v);
        // "same", "Point", "x" and "y" each appear once in the bytes.
        let count = bytes.windows(4).filter(|w| w == b"same").count();
        assert_eq!(count, 1);
        assert_eq!(bytes.windows(5).filter(|w| w == b"Point").count(), 1);
        assert_eq!(dec(&bytes).unwrap(), v);
    }

    #[test]
    fn externalizable() {
        let v = Amf3Value::Object(Box::new(Amf3Object {
            class_name: "flex.messaging.io.ArrayCollection".into(),
            dynamic: false,
            sealed: vec![],
            dynamic_members: vec![],
            externalizable: Some(Amf3Value::Array {
                assoc: vec![],
                dense: vec![Amf3Value::Null],
            }),
        }));
        assert_eq!(dec(&enc(&v)).unwrap(), v);
        let mut other = enc(&v);
        // Rename the class: same length, unknown, so unsupported.
        let pos = other.windows(4).position(|w| w == b"flex").unwrap();
        other[pos] = b'g';
        assert_eq!(
            dec(&other).unwrap_err().kind(),
            crate::error::ErrorKind::Unsupported
        );
    }

    #[test]
    fn hostile() {
        // References to nothing.
        assert!(dec(&[marker::STRING, 0x00]).is_err());
        assert!(dec(&[marker::OBJECT, 0x00]).is_err());
        assert!(dec(&[marker::OBJECT, 0x01]).is_err());
        // Huge counts.
        assert!(dec(&[marker::VECTOR_DOUBLE, 0xFF, 0xFF, 0xFF, 0xFF, 0]).is_err());
        assert!(dec(&[marker::ARRAY, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]).is_err());
        // A string referenced over and over cannot expand past the budget.
        let mut b = vec![marker::ARRAY];
        let n = 20_000u32;
        Encoder::u29(&mut b, (n << 1) | 1);
        b.push(0x01); // no assoc part
        b.push(marker::STRING);
        let s = vec![b'a'; 1000];
        Encoder::u29(&mut b, (1000 << 1) | 1);
        b.extend_from_slice(&s);
        for _ in 1..n {
            b.extend_from_slice(&[marker::STRING, 0x00]);
        }
        assert_eq!(
            dec(&b).unwrap_err().kind(),
            crate::error::ErrorKind::LimitExceeded
        );
        // Deep nesting.
        let deep: Vec<u8> = [marker::ARRAY, 0x03, 0x01].repeat(100);
        assert_eq!(
            dec(&deep).unwrap_err().kind(),
            crate::error::ErrorKind::LimitExceeded
        );
    }

    fn arb() -> impl Strategy<Value = Amf3Value> {
        let leaf = prop_oneof![
            Just(Amf3Value::Undefined),
            Just(Amf3Value::Null),
            any::<bool>().prop_map(Amf3Value::Boolean),
            (INTEGER_MIN..=INTEGER_MAX).prop_map(Amf3Value::Integer),
            any::<f64>()
                .prop_filter("NaN", |f| !f.is_nan())
                .prop_map(Amf3Value::Double),
            "[a-c]{0,3}".prop_map(Amf3Value::String),
            ".{0,8}".prop_map(Amf3Value::XmlDocument),
            ".{0,8}".prop_map(Amf3Value::Xml),
            any::<i32>().prop_map(|d| Amf3Value::Date(f64::from(d))),
            prop::collection::vec(any::<u8>(), 0..16).prop_map(Amf3Value::ByteArray),
            (any::<bool>(), prop::collection::vec(any::<i32>(), 0..4))
                .prop_map(|(fixed, items)| Amf3Value::VectorInt { fixed, items }),
            (any::<bool>(), prop::collection::vec(any::<u32>(), 0..4))
                .prop_map(|(fixed, items)| Amf3Value::VectorUint { fixed, items }),
            (
                any::<bool>(),
                prop::collection::vec(any::<i16>().prop_map(f64::from), 0..4)
            )
                .prop_map(|(fixed, items)| Amf3Value::VectorDouble { fixed, items }),
        ];
        leaf.prop_recursive(3, 48, 6, |inner| {
            let members = prop::collection::vec(("[a-c]{1,3}", inner.clone()), 0..4);
            prop_oneof![
                (members.clone(), prop::collection::vec(inner.clone(), 0..4))
                    .prop_map(|(assoc, dense)| Amf3Value::Array { assoc, dense }),
                ("[A-C]{0,2}", any::<bool>(), members.clone(), members).prop_map(
                    |(class_name, dynamic, sealed, dm)| {
                        Amf3Value::Object(Box::new(Amf3Object {
                            class_name,
                            dynamic,
                            sealed,
                            dynamic_members: if dynamic { dm } else { vec![] },
                            externalizable: None,
                        }))
                    }
                ),
                (
                    any::<bool>(),
                    "[a-c]{0,3}",
                    prop::collection::vec(inner.clone(), 0..4)
                )
                    .prop_map(|(fixed, type_name, items)| {
                        Amf3Value::VectorObject {
                            fixed,
                            type_name,
                            items,
                        }
                    }),
                (
                    any::<bool>(),
                    prop::collection::vec((inner.clone(), inner), 0..3)
                )
                    .prop_map(|(weak_keys, entries)| Amf3Value::Dictionary { weak_keys, entries }),
            ]
        })
    }

    proptest! {
        #[test]
        fn round_trip(v in arb()) {
            prop_assert_eq!(dec(&enc(&v)).unwrap(), v);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode_one(&bytes, &AmfLimits::default());
        }
    }
}
