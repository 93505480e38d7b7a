//! Protocol-buffer wire format, encoding only: the few field kinds the TensorBoard event writer
//! (`train::tensorboard`) and the ONNX writer (`interop::onnx`) need, without generated code.
//!
//! A [`Message`] is a byte buffer that fields are appended to, in the order written. Each field
//! is a key (`field number << 3 | wire type`) then its value: a varint (wire type 0), 8 or 4
//! little-endian bytes (1, 5), or a length-prefixed byte string (2: strings, bytes, nested
//! messages and packed repeated numbers).

/// Wire type of varint-encoded integers.
const VARINT: u64 = 0;
/// Wire type of 8-byte values (`double`, `fixed64`).
const FIXED64: u64 = 1;
/// Wire type of length-delimited values.
const LEN: u64 = 2;
/// Wire type of 4-byte values (`float`, `fixed32`).
const FIXED32: u64 = 5;

/// An encoded message, built field by field.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Message {
    buf: Vec<u8>,
}

/// Append `v` as a base-128 varint.
fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

impl Message {
    /// An empty message.
    pub fn new() -> Self {
        Self::default()
    }

    fn key(&mut self, field: u32, wire: u64) {
        put_varint(&mut self.buf, ((field as u64) << 3) | wire);
    }

    /// An unsigned integer field (`uint64`, `uint32`, `bool`, enum values).
    pub fn uint(mut self, field: u32, v: u64) -> Self {
        self.key(field, VARINT);
        put_varint(&mut self.buf, v);
        self
    }

    /// A signed integer field (`int64`, `int32`): negative values take ten bytes, as the
    /// format's two's-complement encoding prescribes.
    pub fn int(self, field: u32, v: i64) -> Self {
        self.uint(field, v as u64)
    }

    /// A `double` field.
    pub fn double(mut self, field: u32, v: f64) -> Self {
        self.key(field, FIXED64);
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }

    /// A `float` field.
    pub fn float(mut self, field: u32, v: f32) -> Self {
        self.key(field, FIXED32);
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }

    /// A `bytes` field.
    pub fn bytes(mut self, field: u32, v: &[u8]) -> Self {
        self.key(field, LEN);
        put_varint(&mut self.buf, v.len() as u64);
        self.buf.extend_from_slice(v);
        self
    }

    /// A `string` field.
    pub fn string(self, field: u32, v: &str) -> Self {
        self.bytes(field, v.as_bytes())
    }

    /// A nested message field.
    pub fn message(self, field: u32, m: &Message) -> Self {
        self.bytes(field, &m.buf)
    }

    /// A packed repeated `int64` field (nothing when `v` is empty).
    pub fn packed_int(self, field: u32, v: &[i64]) -> Self {
        let mut body = Vec::with_capacity(v.len());
        v.iter().for_each(|&x| put_varint(&mut body, x as u64));
        self.packed(field, &body)
    }

    /// A packed repeated `double` field (nothing when `v` is empty).
    pub fn packed_double(self, field: u32, v: &[f64]) -> Self {
        let body: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.packed(field, &body)
    }

    fn packed(self, field: u32, body: &[u8]) -> Self {
        if body.is_empty() { self } else { self.bytes(field, body) }
    }

    /// The encoded bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }

    /// The encoded bytes, taken.
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings_match_the_protobuf_documentation() {
        // "Encoding" in the protobuf documentation: field 1 = 150 is 08 96 01; field 2 =
        // "testing" is 12 07 74 65 73 74 69 6e 67; a nested message with field 1 = 150 at
        // field 3 is 1a 03 08 96 01; packed [3, 270, 86942] at field 4 is 22 06 03 8e 02 9e a7 05.
        assert_eq!(Message::new().uint(1, 150).as_bytes(), [0x08, 0x96, 0x01]);
        assert_eq!(Message::new().string(2, "testing").as_bytes(), b"\x12\x07testing");
        assert_eq!(Message::new().message(3, &Message::new().uint(1, 150)).as_bytes(), [0x1a, 0x03, 0x08, 0x96, 0x01]);
        assert_eq!(Message::new().packed_int(4, &[3, 270, 86942]).as_bytes(), [0x22, 0x06, 0x03, 0x8e, 0x02, 0x9e, 0xa7, 0x05]);
        // int32/int64 -2 is ten bytes: fe ff ff ff ff ff ff ff ff 01.
        assert_eq!(Message::new().int(1, -2).as_bytes(), [0x08, 0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
        assert_eq!(Message::new().double(1, 1.0).as_bytes(), [0x09, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f]);
        assert_eq!(Message::new().float(2, 1.0).as_bytes(), [0x15, 0, 0, 0x80, 0x3f]);
        assert_eq!(Message::new().packed_double(6, &[]).as_bytes(), [] as [u8; 0]);
        // Field numbers above 15 take a two-byte key: field 20, varint → a0 01.
        assert_eq!(Message::new().uint(20, 1).into_bytes(), [0xa0, 0x01, 0x01]);
    }
}
