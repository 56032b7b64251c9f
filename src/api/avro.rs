//! Avro object container files, block by block: what the API needs to count a file's records
//! without decoding them, to start reading at any record, and to write a container of records
//! taken verbatim from others.
//!
//! A container is a header (magic, a metadata map with `avro.schema` and `avro.codec`, a
//! 16-byte sync marker) and blocks, each a record count, a byte size, the (compressed) records
//! and the sync marker again. Codecs: `null`, `deflate` (raw RFC 1951) and `snappy` (with the
//! CRC32 of the uncompressed data after it), the ones the file sink writes.

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use apache_avro::Schema;
use apache_avro::types::Value;

use crate::encoding::container::{self, BLOCK_SIZE, Blocks, Codec, MAGIC};
/// The largest block or metadata value read: a file that claims more is corrupt.
const MAX_BLOCK: u64 = 256 * 1024 * 1024;

fn corrupt(path: &Path, what: impl std::fmt::Display) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("`{}` is not a valid Avro file: {what}", path.display()),
    )
}

/// Reads an Avro `long` (zig-zag varint); `None` at the end of the input before its first byte.
fn read_long(input: &mut impl Read) -> io::Result<Option<i64>> {
    let mut value: u64 = 0;
    let mut shift = 0;
    let mut byte = [0u8; 1];
    loop {
        if input.read(&mut byte)? == 0 {
            if shift == 0 {
                return Ok(None);
            }
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        if shift > 63 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "varint too long",
            ));
        }
        value |= u64::from(byte[0] & 0x7f) << shift;
        if byte[0] & 0x80 == 0 {
            return Ok(Some((value >> 1) as i64 ^ -((value & 1) as i64)));
        }
        shift += 7;
    }
}

fn require_long(input: &mut impl Read, path: &Path, what: &str) -> io::Result<i64> {
    read_long(input)
        .map_err(|e| corrupt(path, format!("{what}: {e}")))?
        .ok_or_else(|| corrupt(path, format!("cut before {what}")))
}

fn read_bytes(input: &mut impl Read, path: &Path, what: &str) -> io::Result<Vec<u8>> {
    let len = require_long(input, path, what)?;
    if len < 0 || len as u64 > MAX_BLOCK {
        return Err(corrupt(path, format!("{what} of {len} bytes")));
    }
    let mut bytes = vec![0; len as usize];
    input
        .read_exact(&mut bytes)
        .map_err(|e| corrupt(path, format!("{what}: {e}")))?;
    Ok(bytes)
}

/// An open container file, positioned at its first block.
pub struct Container {
    path: std::path::PathBuf,
    input: BufReader<File>,
    codec: Codec,
    sync: [u8; 16],
    /// The writer's schema, as text and parsed.
    pub schema_text: String,
    pub schema: Schema,
}

/// One block's header: its records and its compressed size.
struct BlockHeader {
    count: u64,
    size: u64,
}

impl Container {
    /// Opens `path` and reads its header.
    pub fn open(path: &Path) -> io::Result<Self> {
        let mut input = BufReader::with_capacity(BLOCK_SIZE, File::open(path)?);
        let mut magic = [0u8; 4];
        input
            .read_exact(&mut magic)
            .map_err(|_| corrupt(path, "no header"))?;
        if &magic != MAGIC {
            return Err(corrupt(path, "no Avro magic bytes"));
        }
        let (mut schema_text, mut codec) = (None, Codec::Null);
        loop {
            let mut count = require_long(&mut input, path, "the metadata")?;
            if count == 0 {
                break;
            }
            if count < 0 {
                count = -count;
                require_long(&mut input, path, "the metadata's size")?;
            }
            for _ in 0..count {
                let key = read_bytes(&mut input, path, "a metadata key")?;
                let value = read_bytes(&mut input, path, "a metadata value")?;
                match key.as_slice() {
                    b"avro.schema" => {
                        schema_text = Some(
                            String::from_utf8(value)
                                .map_err(|_| corrupt(path, "a schema that is not UTF-8"))?,
                        );
                    }
                    b"avro.codec" => {
                        let name = String::from_utf8_lossy(&value);
                        codec = match name.as_ref() {
                            "" => Codec::Null,
                            name => name.parse().map_err(|_| {
                                corrupt(path, format!("the codec `{name}`, not {}", Codec::names()))
                            })?,
                        };
                    }
                    _ => {}
                }
            }
        }
        let mut sync = [0u8; 16];
        input
            .read_exact(&mut sync)
            .map_err(|_| corrupt(path, "cut in its header"))?;
        let schema_text = schema_text.ok_or_else(|| corrupt(path, "no schema"))?;
        let schema = Schema::parse_str(&schema_text)
            .map_err(|e| corrupt(path, format!("its schema: {e}")))?;
        Ok(Self {
            path: path.to_owned(),
            input,
            codec,
            sync,
            schema_text,
            schema,
        })
    }

    fn block_header(&mut self) -> io::Result<Option<BlockHeader>> {
        let path = self.path.clone();
        let Some(count) =
            read_long(&mut self.input).map_err(|e| corrupt(&path, format!("a block: {e}")))?
        else {
            return Ok(None);
        };
        let size = require_long(&mut self.input, &path, "a block's size")?;
        if count < 0 || size < 0 || size as u64 > MAX_BLOCK {
            return Err(corrupt(
                &path,
                format!("a block of {count} records in {size} bytes"),
            ));
        }
        Ok(Some(BlockHeader {
            count: count as u64,
            size: size as u64,
        }))
    }

    fn check_sync(&mut self) -> io::Result<()> {
        let mut sync = [0u8; 16];
        self.input
            .read_exact(&mut sync)
            .map_err(|_| corrupt(&self.path, "cut in a block"))?;
        if sync != self.sync {
            return Err(corrupt(
                &self.path,
                "a block without the file's sync marker",
            ));
        }
        Ok(())
    }

    fn skip_block(&mut self, header: &BlockHeader) -> io::Result<()> {
        self.input.seek(SeekFrom::Current(header.size as i64))?;
        self.check_sync()
    }

    /// The records of the next block, uncompressed, and their count.
    fn read_block(&mut self, header: &BlockHeader) -> io::Result<Vec<u8>> {
        let mut data = vec![0; header.size as usize];
        self.input
            .read_exact(&mut data)
            .map_err(|_| corrupt(&self.path, "cut in a block"))?;
        self.check_sync()?;
        match self.codec {
            Codec::Null => Ok(data),
            Codec::Deflate => {
                let mut out = Vec::with_capacity(data.len() * 4);
                flate2::read::DeflateDecoder::new(data.as_slice())
                    .read_to_end(&mut out)
                    .map_err(|e| corrupt(&self.path, format!("a deflate block: {e}")))?;
                Ok(out)
            }
            Codec::Snappy => {
                let Some(body) = data.len().checked_sub(4) else {
                    return Err(corrupt(&self.path, "a snappy block without its CRC"));
                };
                let out = snap::raw::Decoder::new()
                    .decompress_vec(&data[..body])
                    .map_err(|e| corrupt(&self.path, format!("a snappy block: {e}")))?;
                let crc = u32::from_be_bytes(data[body..].try_into().expect("4 bytes"));
                if crc32fast::hash(&out) != crc {
                    return Err(corrupt(
                        &self.path,
                        "a snappy block whose CRC does not match",
                    ));
                }
                Ok(out)
            }
        }
    }

    /// Counts the records of every block, reading only the blocks' headers.
    pub fn count(mut self) -> io::Result<u64> {
        let mut total = 0;
        while let Some(header) = self.block_header()? {
            total += header.count;
            self.skip_block(&header)?;
        }
        Ok(total)
    }

    /// Calls `each` with `take` records from record `skip` on (fewer if the file ends first),
    /// each as its encoded bytes and its decoded value (`decode` false: [`Value::Null`] is
    /// passed; a record is still decoded to find where it ends). Whole blocks before `skip` are
    /// skipped unread. Stops early when `each` returns false; returns the records passed.
    pub fn scan(
        mut self,
        mut skip: u64,
        take: u64,
        decode: bool,
        mut each: impl FnMut(&[u8], Value) -> bool,
    ) -> io::Result<u64> {
        let mut passed = 0;
        while passed < take {
            let Some(header) = self.block_header()? else {
                break;
            };
            if skip >= header.count {
                skip -= header.count;
                self.skip_block(&header)?;
                continue;
            }
            let data = self.read_block(&header)?;
            let mut rest: &[u8] = &data;
            for index in 0..header.count {
                let before = rest;
                let value = apache_avro::from_avro_datum(&self.schema, &mut rest, None)
                    .map_err(|e| corrupt(&self.path, format!("record {index} of a block: {e}")))?;
                if index < skip {
                    continue;
                }
                let record = &before[..before.len() - rest.len()];
                let value = if decode { value } else { Value::Null };
                passed += 1;
                if !each(record, value) || passed == take {
                    return Ok(passed);
                }
            }
            skip = 0;
        }
        Ok(passed)
    }
}

/// Writes an Avro container of one schema, block by block, into chunks of bytes.
pub struct ContainerWriter {
    blocks: Blocks,
}

impl ContainerWriter {
    /// A writer with `sync` as its marker; returns it and the header's bytes.
    pub fn start(schema_text: &str, sync: [u8; 16]) -> (Self, Vec<u8>) {
        let header = container::header(schema_text, Codec::Null, sync);
        let blocks = Blocks::new(Codec::Null, sync);
        (Self { blocks }, header)
    }

    /// Adds one encoded record; returns a finished block's bytes once the block is full.
    pub fn append(&mut self, record: &[u8]) -> Option<Vec<u8>> {
        self.blocks.append(record).then(|| self.flush())
    }

    /// The bytes of the block in progress (nothing when it is empty).
    pub fn flush(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        self.blocks
            .write_block(&mut out)
            .expect("writing to memory does not fail");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use apache_avro::{Codec as AvroCodec, DeflateSettings, Writer};

    fn schema() -> Schema {
        Schema::parse_str(
            r#"{"type":"record","name":"R","fields":[{"name":"n","type":"long"},{"name":"s","type":"string"}]}"#,
        )
        .unwrap()
    }

    fn record(n: i64) -> Value {
        Value::Record(vec![
            ("n".into(), Value::Long(n)),
            ("s".into(), Value::String("x".repeat((n % 50) as usize))),
        ])
    }

    fn write(path: &Path, codec: AvroCodec, n: i64) {
        let schema = schema();
        let mut writer = Writer::builder()
            .schema(&schema)
            .writer(File::create(path).unwrap())
            .codec(codec)
            .block_size(512)
            .build();
        for i in 0..n {
            writer.append(record(i)).unwrap();
        }
        writer.into_inner().unwrap();
    }

    #[test]
    fn counts_and_reads_from_any_record_in_every_codec() {
        let dir = tempfile::tempdir().unwrap();
        for codec in [
            AvroCodec::Null,
            AvroCodec::Deflate(DeflateSettings::default()),
            AvroCodec::Snappy,
        ] {
            let path = dir.path().join(format!("{codec:?}.avro"));
            write(&path, codec, 1000);
            assert_eq!(Container::open(&path).unwrap().count().unwrap(), 1000);
            for (skip, take) in [(0, 3), (997, 10), (123, 400), (1000, 5)] {
                let mut seen = Vec::new();
                let passed = Container::open(&path)
                    .unwrap()
                    .scan(skip, take, true, |_, v| {
                        seen.push(v);
                        true
                    })
                    .unwrap();
                let expected: Vec<Value> = (skip..(skip + take).min(1000))
                    .map(|i| record(i as i64))
                    .collect();
                assert_eq!(seen, expected, "{codec:?} skip {skip}");
                assert_eq!(passed, expected.len() as u64);
            }
        }
    }

    #[test]
    fn records_copied_verbatim_make_a_container_another_reader_reads() {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("in.avro");
        write(&source, AvroCodec::Deflate(DeflateSettings::default()), 300);
        let container = Container::open(&source).unwrap();
        let (mut writer, mut bytes) = ContainerWriter::start(&container.schema_text, [7; 16]);
        container
            .scan(100, 150, false, |record, _| {
                if let Some(block) = writer.append(record) {
                    bytes.extend(block);
                }
                true
            })
            .unwrap();
        bytes.extend(writer.flush());
        let read: Vec<Value> = apache_avro::Reader::new(bytes.as_slice())
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(read, (100..250).map(record).collect::<Vec<_>>());
    }

    #[test]
    fn a_cut_or_foreign_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cut.avro");
        write(&path, AvroCodec::Null, 500);
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 100]).unwrap();
        let error = Container::open(&path).unwrap().count().unwrap_err();
        assert!(error.to_string().contains("cut.avro"), "{error}");
        std::fs::write(&path, b"PAR1 not avro").unwrap();
        let error = Container::open(&path).err().unwrap();
        assert!(error.to_string().contains("no Avro magic bytes"), "{error}");
    }
}
