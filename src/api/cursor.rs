//! Cursors: opaque to clients, a position in one hour's events to the server.
//!
//! A cursor names the hour, the topic asked for (or all), the position of the next event in
//! the hour's stable order, and a digest of the hour's files; a checksum guards it. Nothing in
//! it depends on the server process, so a cursor stays good across restarts, for as long as
//! the hour's files are the same.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::model::{Timestamp, Topic};

const VERSION: u8 = 1;
/// version, hour (8), topic (1), position (8), files digest (8), checksum (4).
const LEN: usize = 1 + 8 + 1 + 8 + 8 + 4;
/// The topic byte for "every topic".
const ALL_TOPICS: u8 = 0xff;

/// A position in an hour's events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub hour: Timestamp,
    pub topic: Option<Topic>,
    pub position: u64,
    pub files: u64,
}

/// The first 8 bytes of an hour's fingerprint.
pub fn files_digest(fingerprint: &[u8; 32]) -> u64 {
    u64::from_be_bytes(fingerprint[..8].try_into().expect("8 bytes"))
}

impl Cursor {
    /// The cursor's text.
    pub fn encode(&self) -> String {
        let mut bytes = Vec::with_capacity(LEN);
        bytes.push(VERSION);
        bytes.extend_from_slice(&self.hour.as_micros().to_be_bytes());
        bytes.push(self.topic.map_or(ALL_TOPICS, |t| t.index() as u8));
        bytes.extend_from_slice(&self.position.to_be_bytes());
        bytes.extend_from_slice(&self.files.to_be_bytes());
        let checksum = crc32fast::hash(&bytes);
        bytes.extend_from_slice(&checksum.to_be_bytes());
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// Reads a cursor this server (or another serving the same files) issued.
    pub fn decode(text: &str) -> Result<Self, &'static str> {
        const NOT_OURS: &str =
            "is not a cursor this API issued (use the `next_cursor` of a response as it is)";
        let bytes = URL_SAFE_NO_PAD.decode(text.trim()).map_err(|_| NOT_OURS)?;
        if bytes.len() != LEN || bytes[0] != VERSION {
            return Err(NOT_OURS);
        }
        let (body, checksum) = bytes.split_at(LEN - 4);
        if crc32fast::hash(body).to_be_bytes() != checksum {
            return Err(NOT_OURS);
        }
        let long = |at: usize| i64::from_be_bytes(body[at..at + 8].try_into().expect("8 bytes"));
        let topic = match body[9] {
            ALL_TOPICS => None,
            index => Some(*Topic::ALL.get(index as usize).ok_or(NOT_OURS)?),
        };
        Ok(Self {
            hour: Timestamp::from_micros(long(1)),
            topic,
            position: long(10) as u64,
            files: long(18) as u64,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_reads_back_and_a_changed_one_is_refused() {
        let cursor = Cursor {
            hour: Timestamp::from_micros(1_772_409_600_000_000),
            topic: Some(Topic::Payments),
            position: 12_345,
            files: 0xdead_beef_0bad_f00d,
        };
        let text = cursor.encode();
        assert_eq!(Cursor::decode(&text), Ok(cursor));
        let all = Cursor {
            topic: None,
            ..cursor
        };
        assert_eq!(Cursor::decode(&all.encode()), Ok(all));
        // Any one character changed is caught by the checksum.
        for at in 0..text.len() {
            let mut bytes = text.clone().into_bytes();
            bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
            let changed = String::from_utf8(bytes).unwrap();
            if changed != text {
                assert!(Cursor::decode(&changed).is_err(), "{changed}");
            }
        }
        assert!(Cursor::decode("").is_err());
        assert!(Cursor::decode("not a cursor!").is_err());
    }
}
