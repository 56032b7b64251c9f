//! Avro object container files, written block by block.
//!
//! A container is a header (magic, a metadata map with `avro.schema` and `avro.codec`, a
//! 16-byte sync marker) and blocks, each a record count, a byte size, the (compressed) records
//! and the sync marker again. The records are the datums [`super::Encoder`] writes, appended
//! straight into the block in progress, so a file costs what the encoding costs plus one copy
//! per block: apache-avro's writer goes through its schema-driven serialiser for every record.
//!
//! Codecs: `null`, `deflate` (raw RFC 1951) and `snappy` (with the big-endian CRC32 of the
//! uncompressed data after it), as the specification defines them.

use std::io::{self, Write};

use super::varint::write_long;

/// The four bytes a container starts with.
pub const MAGIC: &[u8; 4] = b"Obj\x01";
/// Uncompressed bytes per block, at most (a record larger than this gets a block of its own).
pub const BLOCK_SIZE: usize = 64 * 1024;

crate::named! {
    /// Compression of a container's blocks.
    #[derive(Default)]
    pub enum Codec {
        /// No compression: the fastest, read by every Avro reader.
        #[default]
        Null = "null",
        /// Deflate (RFC 1951), part of the Avro specification.
        Deflate = "deflate",
        /// Snappy with a CRC32 per block.
        Snappy = "snappy",
    }
}

/// The header of a container of `schema_json` records whose blocks are compressed with
/// `codec` and end with `sync`.
pub fn header(schema_json: &str, codec: Codec, sync: [u8; 16]) -> Vec<u8> {
    let mut header = Vec::with_capacity(schema_json.len() + 64);
    header.extend_from_slice(MAGIC);
    write_long(&mut header, 2);
    for (key, value) in [
        (&b"avro.schema"[..], schema_json.as_bytes()),
        (&b"avro.codec"[..], codec.as_str().as_bytes()),
    ] {
        write_long(&mut header, key.len() as i64);
        header.extend_from_slice(key);
        write_long(&mut header, value.len() as i64);
        header.extend_from_slice(value);
    }
    write_long(&mut header, 0);
    header.extend_from_slice(&sync);
    header
}

/// A sync marker derived from `name` (a file's path, say): the same file gets the same marker,
/// so a seed fixes a file's bytes, and markers of different files differ.
pub fn sync_marker(name: &str) -> [u8; 16] {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(name.as_bytes());
    digest[..16].try_into().expect("16 of 32 bytes")
}

/// The block in progress of one container: records are appended to [`Blocks::records`] and
/// counted with [`Blocks::added`]; [`Blocks::write_block`] writes them out as one block.
#[derive(Debug)]
pub struct Blocks {
    codec: Codec,
    sync: [u8; 16],
    block: Vec<u8>,
    records: i64,
    /// The compressed block, kept to reuse its allocation.
    compressed: Vec<u8>,
}

impl Blocks {
    /// An empty block of a container with this codec and sync marker.
    pub fn new(codec: Codec, sync: [u8; 16]) -> Self {
        Self {
            codec,
            sync,
            block: Vec::with_capacity(BLOCK_SIZE + 1024),
            records: 0,
            compressed: Vec::new(),
        }
    }

    /// Where the next record's datum goes; [`Blocks::added`] counts it once written.
    pub fn records(&mut self) -> &mut Vec<u8> {
        &mut self.block
    }

    /// Counts a record written into [`Blocks::records`]; true once the block is full.
    pub fn added(&mut self) -> bool {
        self.records += 1;
        self.block.len() >= BLOCK_SIZE
    }

    /// Adds one encoded record; true once the block is full.
    pub fn append(&mut self, record: &[u8]) -> bool {
        self.block.extend_from_slice(record);
        self.added()
    }

    /// Whether no record waits in the block.
    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// Writes the block in progress to `out` (nothing when it is empty) and starts another;
    /// returns the bytes written.
    pub fn write_block(&mut self, out: &mut impl Write) -> io::Result<usize> {
        if self.records == 0 {
            return Ok(0);
        }
        let data: &[u8] = match self.codec {
            Codec::Null => &self.block,
            Codec::Deflate => {
                self.compressed.clear();
                let mut encoder = flate2::write::DeflateEncoder::new(
                    std::mem::take(&mut self.compressed),
                    flate2::Compression::default(),
                );
                encoder.write_all(&self.block)?;
                self.compressed = encoder.finish()?;
                &self.compressed
            }
            Codec::Snappy => {
                self.compressed
                    .resize(snap::raw::max_compress_len(self.block.len()) + 4, 0);
                let n = snap::raw::Encoder::new()
                    .compress(&self.block, &mut self.compressed)
                    .map_err(io::Error::other)?;
                self.compressed.truncate(n);
                self.compressed
                    .extend_from_slice(&crc32fast::hash(&self.block).to_be_bytes());
                &self.compressed
            }
        };
        let mut head = Vec::with_capacity(20);
        write_long(&mut head, self.records);
        write_long(&mut head, data.len() as i64);
        out.write_all(&head)?;
        out.write_all(data)?;
        out.write_all(&self.sync)?;
        let written = head.len() + data.len() + self.sync.len();
        self.block.clear();
        self.records = 0;
        Ok(written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use apache_avro::Schema;
    use apache_avro::types::Value;

    const SCHEMA: &str = r#"{"type":"record","name":"r","fields":[{"name":"n","type":"long"},{"name":"s","type":"string"}]}"#;

    /// A container of `n` records through [`Blocks`], with a small block now and then.
    fn container(codec: Codec, n: i64) -> Vec<u8> {
        let schema = Schema::parse_str(SCHEMA).unwrap();
        let sync = *b"0123456789abcdef";
        let mut out = header(SCHEMA, codec, sync);
        let mut blocks = Blocks::new(codec, sync);
        for i in 0..n {
            let value = Value::Record(vec![
                ("n".into(), Value::Long(i)),
                ("s".into(), Value::String("x".repeat((i % 97) as usize))),
            ]);
            let datum = apache_avro::to_avro_datum(&schema, value).unwrap();
            if blocks.append(&datum) || i % 1000 == 999 {
                blocks.write_block(&mut out).unwrap();
            }
        }
        blocks.write_block(&mut out).unwrap();
        assert!(blocks.is_empty());
        out
    }

    #[test]
    fn apache_avro_reads_every_codec() {
        for codec in Codec::ALL {
            let bytes = container(codec, 5_000);
            let reader = apache_avro::Reader::new(bytes.as_slice()).unwrap();
            let mut expected = 0;
            for value in reader {
                let Value::Record(fields) = value.unwrap() else {
                    panic!("not a record")
                };
                assert_eq!(fields[0].1, Value::Long(expected), "{codec}");
                expected += 1;
            }
            assert_eq!(expected, 5_000, "{codec}");
        }
    }

    #[test]
    fn an_empty_block_writes_nothing() {
        let mut blocks = Blocks::new(Codec::Snappy, [7; 16]);
        let mut out = Vec::new();
        assert_eq!(blocks.write_block(&mut out).unwrap(), 0);
        assert!(out.is_empty());
    }
}
