//! GGUF metadata values: the type tags, a borrowed view of a value inside the file, and an owned
//! value for the writer; and the bounds-checked cursor that reads them out of the file.
//!
//! Values are not copied out of the map when a file is opened: strings are borrowed, and arrays
//! (a 262k-entry vocabulary, say) stay a typed view over their bytes until someone asks for them.

use crate::error::{Error, Result};

/// The type tag of a metadata value, as stored in the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum ValueType {
    U8 = 0,
    I8 = 1,
    U16 = 2,
    I16 = 3,
    U32 = 4,
    I32 = 5,
    F32 = 6,
    Bool = 7,
    String = 8,
    Array = 9,
    U64 = 10,
    I64 = 11,
    F64 = 12,
}

impl ValueType {
    /// The tag with id `id`, or a `Format` error.
    pub fn from_id(id: u32) -> Result<ValueType> {
        use ValueType::*;
        Ok(match id {
            0 => U8,
            1 => I8,
            2 => U16,
            3 => I16,
            4 => U32,
            5 => I32,
            6 => F32,
            7 => Bool,
            8 => String,
            9 => Array,
            10 => U64,
            11 => I64,
            12 => F64,
            _ => return Err(Error::format(format!("unknown metadata value type {id}"))),
        })
    }

    /// Encoded size in bytes for fixed-size types; `None` for strings and arrays.
    pub fn fixed_size(self) -> Option<usize> {
        use ValueType::*;
        match self {
            U8 | I8 | Bool => Some(1),
            U16 | I16 => Some(2),
            U32 | I32 | F32 => Some(4),
            U64 | I64 | F64 => Some(8),
            String | Array => None,
        }
    }

    /// The smallest number of bytes one encoded value of this type can take.
    pub fn min_size(self) -> usize {
        match self {
            ValueType::String => 8,
            ValueType::Array => 12,
            t => t.fixed_size().unwrap_or(1),
        }
    }

    /// A lowercase name for messages.
    pub fn name(self) -> &'static str {
        use ValueType::*;
        match self {
            U8 => "u8",
            I8 => "i8",
            U16 => "u16",
            I16 => "i16",
            U32 => "u32",
            I32 => "i32",
            F32 => "f32",
            Bool => "bool",
            String => "string",
            Array => "array",
            U64 => "u64",
            I64 => "i64",
            F64 => "f64",
        }
    }
}

/// A metadata value borrowed from the file's bytes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Value<'a> {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(&'a str),
    Array(ArrayView<'a>),
    U64(u64),
    I64(i64),
    F64(f64),
}

impl<'a> Value<'a> {
    /// The value's type tag.
    pub fn value_type(&self) -> ValueType {
        match self {
            Value::U8(_) => ValueType::U8,
            Value::I8(_) => ValueType::I8,
            Value::U16(_) => ValueType::U16,
            Value::I16(_) => ValueType::I16,
            Value::U32(_) => ValueType::U32,
            Value::I32(_) => ValueType::I32,
            Value::F32(_) => ValueType::F32,
            Value::Bool(_) => ValueType::Bool,
            Value::String(_) => ValueType::String,
            Value::Array(_) => ValueType::Array,
            Value::U64(_) => ValueType::U64,
            Value::I64(_) => ValueType::I64,
            Value::F64(_) => ValueType::F64,
        }
    }

    /// Any integer type as a u64 (negative values give `None`).
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U8(v) => Some(v as u64),
            Value::U16(v) => Some(v as u64),
            Value::U32(v) => Some(v as u64),
            Value::U64(v) => Some(v),
            Value::I8(v) => u64::try_from(v).ok(),
            Value::I16(v) => u64::try_from(v).ok(),
            Value::I32(v) => u64::try_from(v).ok(),
            Value::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// Any integer type as an i64 (u64 values above i64::MAX give `None`).
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Value::U64(v) => i64::try_from(v).ok(),
            Value::I8(v) => Some(v as i64),
            Value::I16(v) => Some(v as i64),
            Value::I32(v) => Some(v as i64),
            Value::I64(v) => Some(v),
            _ => self.as_u64().and_then(|v| i64::try_from(v).ok()),
        }
    }

    /// Any float (or integer) type as an f64.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::F32(v) => Some(v as f64),
            Value::F64(v) => Some(v),
            _ => self.as_i64().map(|v| v as f64),
        }
    }

    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&'a str> {
        match *self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// The boolean, if this is one.
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Value::Bool(b) => Some(b),
            _ => None,
        }
    }

    /// The array, if this is one.
    pub fn as_array(&self) -> Option<ArrayView<'a>> {
        match *self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }
}

impl std::fmt::Display for Value<'_> {
    /// Scalars in full; strings quoted and cut at 60 characters; arrays as `[type; len]`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::U8(v) => write!(f, "{v}"),
            Value::I8(v) => write!(f, "{v}"),
            Value::U16(v) => write!(f, "{v}"),
            Value::I16(v) => write!(f, "{v}"),
            Value::U32(v) => write!(f, "{v}"),
            Value::I32(v) => write!(f, "{v}"),
            Value::U64(v) => write!(f, "{v}"),
            Value::I64(v) => write!(f, "{v}"),
            Value::F32(v) => write!(f, "{v}"),
            Value::F64(v) => write!(f, "{v}"),
            Value::Bool(v) => write!(f, "{v}"),
            Value::String(s) => {
                let cut: String = s.chars().take(60).collect();
                let more = if cut.len() < s.len() { "…" } else { "" };
                write!(f, "{:?}{more}", cut)
            }
            Value::Array(a) => write!(f, "[{}; {}]", a.elem_type().name(), a.len()),
        }
    }
}

/// A typed view of an array's encoded elements. The elements were bounds-checked (and strings
/// checked for UTF-8) when the file was parsed; decoding them again cannot run out of bounds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ArrayView<'a> {
    pub(crate) elem: ValueType,
    pub(crate) len: usize,
    /// The encoded elements, exactly (no trailing bytes).
    pub(crate) bytes: &'a [u8],
}

impl<'a> ArrayView<'a> {
    /// The element type.
    pub fn elem_type(&self) -> ValueType {
        self.elem
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Decode the elements one by one.
    pub fn iter(&self) -> ArrayIter<'a> {
        ArrayIter { elem: self.elem, remaining: self.len, cursor: Cursor::new(self.bytes) }
    }

    /// All elements as strings; a `Format` error if the elements are not strings.
    pub fn strings(&self) -> Result<Vec<&'a str>> {
        self.expect(ValueType::String)?;
        self.iter().map(|v| v.map(|v| v.as_str().unwrap_or_default())).collect()
    }

    /// All elements as f32 (from f32 or f64 elements).
    pub fn f32s(&self) -> Result<Vec<f32>> {
        if !matches!(self.elem, ValueType::F32 | ValueType::F64) {
            return Err(self.wrong("a float"));
        }
        self.iter().map(|v| v.map(|v| v.as_f64().unwrap_or_default() as f32)).collect()
    }

    /// All elements as i64 (from any integer element type).
    pub fn ints(&self) -> Result<Vec<i64>> {
        match self.elem {
            ValueType::String | ValueType::Array | ValueType::Bool | ValueType::F32 | ValueType::F64 => {
                return Err(self.wrong("an integer"))
            }
            _ => {}
        }
        self.iter()
            .map(|v| v.and_then(|v| v.as_i64().ok_or_else(|| Error::format("integer out of i64 range"))))
            .collect()
    }

    fn expect(&self, t: ValueType) -> Result<()> {
        if self.elem == t {
            Ok(())
        } else {
            Err(self.wrong(t.name()))
        }
    }

    fn wrong(&self, want: &str) -> Error {
        Error::format(format!("expected an array of {want}, found an array of {}", self.elem.name()))
    }
}

/// Iterator over an [`ArrayView`]'s elements.
pub struct ArrayIter<'a> {
    elem: ValueType,
    remaining: usize,
    cursor: Cursor<'a>,
}

impl<'a> Iterator for ArrayIter<'a> {
    type Item = Result<Value<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        Some(self.cursor.value(self.elem, 1))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

/// An owned metadata value, for writing GGUF files.
#[derive(Clone, Debug, PartialEq)]
pub enum MetaValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(String),
    /// An array of values that all have the element type given first.
    Array(ValueType, Vec<MetaValue>),
    U64(u64),
    I64(i64),
    F64(f64),
}

impl MetaValue {
    /// The value's type tag.
    pub fn value_type(&self) -> ValueType {
        match self {
            MetaValue::U8(_) => ValueType::U8,
            MetaValue::I8(_) => ValueType::I8,
            MetaValue::U16(_) => ValueType::U16,
            MetaValue::I16(_) => ValueType::I16,
            MetaValue::U32(_) => ValueType::U32,
            MetaValue::I32(_) => ValueType::I32,
            MetaValue::F32(_) => ValueType::F32,
            MetaValue::Bool(_) => ValueType::Bool,
            MetaValue::String(_) => ValueType::String,
            MetaValue::Array(..) => ValueType::Array,
            MetaValue::U64(_) => ValueType::U64,
            MetaValue::I64(_) => ValueType::I64,
            MetaValue::F64(_) => ValueType::F64,
        }
    }

    /// An array of strings.
    pub fn strings<S: Into<String>>(items: impl IntoIterator<Item = S>) -> MetaValue {
        MetaValue::Array(ValueType::String, items.into_iter().map(|s| MetaValue::String(s.into())).collect())
    }

    /// An array of f32.
    pub fn f32s(items: impl IntoIterator<Item = f32>) -> MetaValue {
        MetaValue::Array(ValueType::F32, items.into_iter().map(MetaValue::F32).collect())
    }

    /// An array of i32.
    pub fn i32s(items: impl IntoIterator<Item = i32>) -> MetaValue {
        MetaValue::Array(ValueType::I32, items.into_iter().map(MetaValue::I32).collect())
    }
}

impl From<&str> for MetaValue {
    fn from(s: &str) -> Self {
        MetaValue::String(s.to_string())
    }
}

impl From<String> for MetaValue {
    fn from(s: String) -> Self {
        MetaValue::String(s)
    }
}

impl From<u32> for MetaValue {
    fn from(v: u32) -> Self {
        MetaValue::U32(v)
    }
}

impl From<f32> for MetaValue {
    fn from(v: f32) -> Self {
        MetaValue::F32(v)
    }
}

impl From<bool> for MetaValue {
    fn from(v: bool) -> Self {
        MetaValue::Bool(v)
    }
}

/// Longest string value accepted (chat templates are a few KiB).
pub const MAX_STRING_LEN: u64 = 64 * 1024 * 1024;
/// Deepest nesting of arrays accepted.
pub const MAX_ARRAY_DEPTH: u32 = 4;

/// A read position over a byte slice; every read is bounds-checked.
#[derive(Clone, Debug)]
pub(crate) struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Cursor { bytes, pos: 0 }
    }

    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    pub(crate) fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    pub(crate) fn take(&mut self, n: u64, what: &str) -> Result<&'a [u8]> {
        if n > self.remaining() as u64 {
            return Err(Error::format(format!(
                "truncated: {what} needs {n} bytes at offset {}, only {} remain",
                self.pos,
                self.remaining()
            )));
        }
        let n = n as usize;
        let out = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    pub(crate) fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        let b = self.take(N as u64, what)?;
        let mut out = [0u8; N];
        out.copy_from_slice(b);
        Ok(out)
    }

    pub(crate) fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    pub(crate) fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// A length-prefixed string of at most `cap` bytes, checked for UTF-8.
    pub(crate) fn string(&mut self, cap: u64, what: &str) -> Result<&'a str> {
        let at = self.pos;
        let len = self.u64(what)?;
        if len > cap {
            return Err(Error::format(format!(
                "{what} at offset {at} claims {len} bytes, more than the limit of {cap}"
            )));
        }
        let b = self.take(len, what)?;
        std::str::from_utf8(b).map_err(|e| Error::format(format!("{what} at offset {at} is not UTF-8: {e}")))
    }

    /// One value of type `ty`. `depth` counts enclosing arrays (1 for an array's elements).
    pub(crate) fn value(&mut self, ty: ValueType, depth: u32) -> Result<Value<'a>> {
        Ok(match ty {
            ValueType::U8 => Value::U8(u8::from_le_bytes(self.array("u8 value")?)),
            ValueType::I8 => Value::I8(i8::from_le_bytes(self.array("i8 value")?)),
            ValueType::U16 => Value::U16(u16::from_le_bytes(self.array("u16 value")?)),
            ValueType::I16 => Value::I16(i16::from_le_bytes(self.array("i16 value")?)),
            ValueType::U32 => Value::U32(self.u32("u32 value")?),
            ValueType::I32 => Value::I32(i32::from_le_bytes(self.array("i32 value")?)),
            ValueType::F32 => Value::F32(f32::from_le_bytes(self.array("f32 value")?)),
            ValueType::U64 => Value::U64(self.u64("u64 value")?),
            ValueType::I64 => Value::I64(i64::from_le_bytes(self.array("i64 value")?)),
            ValueType::F64 => Value::F64(f64::from_le_bytes(self.array("f64 value")?)),
            ValueType::Bool => {
                let at = self.pos;
                match self.array::<1>("bool value")?[0] {
                    0 => Value::Bool(false),
                    1 => Value::Bool(true),
                    b => return Err(Error::format(format!("bool at offset {at} has value {b}, not 0 or 1"))),
                }
            }
            ValueType::String => Value::String(self.string(MAX_STRING_LEN, "string value")?),
            ValueType::Array => Value::Array(self.array_value(depth)?),
        })
    }

    fn array_value(&mut self, depth: u32) -> Result<ArrayView<'a>> {
        let at = self.pos;
        if depth >= MAX_ARRAY_DEPTH {
            return Err(Error::format(format!("arrays nested deeper than {MAX_ARRAY_DEPTH} at offset {at}")));
        }
        let elem = ValueType::from_id(self.u32("array element type")?)
            .map_err(|e| e.context(format!("array at offset {at}")))?;
        let len = self.u64("array length")?;
        // Every element takes at least min_size bytes: a larger count cannot fit in the file.
        let max = self.remaining() as u64 / elem.min_size() as u64;
        if len > max {
            return Err(Error::format(format!(
                "array at offset {at} claims {len} {} elements but only {} bytes remain",
                elem.name(),
                self.remaining()
            )));
        }
        let start = self.pos;
        match elem.fixed_size() {
            Some(size) => {
                self.take(len * size as u64, "array elements")?;
                if elem == ValueType::Bool {
                    if let Some(b) = self.bytes[start..self.pos].iter().find(|&&b| b > 1) {
                        return Err(Error::format(format!("bool array at offset {at} holds value {b}")));
                    }
                }
            }
            None => {
                for _ in 0..len {
                    self.value(elem, depth + 1)?;
                }
            }
        }
        Ok(ArrayView { elem, len: len as usize, bytes: &self.bytes[start..self.pos] })
    }
}
