//! The object upload stream: frames of `hash (32 bytes) | length (u64, little-endian) | content`.
//! One request carries every missing object, so a deploy of thousands of small files is one
//! round trip.

/// Bytes before each object's content.
pub const FRAME_HEADER: usize = 40;

pub fn frame_header(hash: &[u8; 32], len: u64) -> [u8; FRAME_HEADER] {
    let mut out = [0u8; FRAME_HEADER];
    out[..32].copy_from_slice(hash);
    out[32..].copy_from_slice(&len.to_le_bytes());
    out
}

/// Splits a byte stream back into frames, whatever the chunking of the transport.
#[derive(Default)]
pub struct FrameDecoder {
    header: Vec<u8>,
    remaining: u64,
}

/// What a chunk of the stream holds, in order.
#[derive(Debug, PartialEq, Eq)]
pub enum Piece<'a> {
    Start { hash: [u8; 32], len: u64 },
    Content(&'a [u8]),
    End,
}

impl FrameDecoder {
    /// Feeds `chunk`, calling `f` for each piece. Returns an error from `f` unchanged.
    pub fn feed<E>(
        &mut self,
        mut chunk: &[u8],
        mut f: impl FnMut(Piece<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        while !chunk.is_empty() {
            if self.remaining > 0 {
                let n = (self.remaining.min(chunk.len() as u64)) as usize;
                f(Piece::Content(&chunk[..n]))?;
                self.remaining -= n as u64;
                chunk = &chunk[n..];
                if self.remaining == 0 {
                    f(Piece::End)?;
                }
                continue;
            }
            let need = FRAME_HEADER - self.header.len();
            let n = need.min(chunk.len());
            self.header.extend_from_slice(&chunk[..n]);
            chunk = &chunk[n..];
            if self.header.len() == FRAME_HEADER {
                let mut hash = [0u8; 32];
                hash.copy_from_slice(&self.header[..32]);
                let len = u64::from_le_bytes(self.header[32..].try_into().expect("8 bytes"));
                self.header.clear();
                f(Piece::Start { hash, len })?;
                if len == 0 {
                    f(Piece::End)?;
                } else {
                    self.remaining = len;
                }
            }
        }
        Ok(())
    }

    /// Whether the stream ended between frames (not in the middle of one).
    pub fn is_clean(&self) -> bool {
        self.header.is_empty() && self.remaining == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_survive_any_chunking() {
        let mut stream = Vec::new();
        for (h, content) in [(1u8, &b"hello"[..]), (2, b""), (3, b"world!")] {
            stream.extend_from_slice(&frame_header(&[h; 32], content.len() as u64));
            stream.extend_from_slice(content);
        }
        for size in 1..stream.len() {
            let mut d = FrameDecoder::default();
            let mut seen = Vec::new();
            for chunk in stream.chunks(size) {
                d.feed::<()>(chunk, |p| {
                    seen.push(match p {
                        Piece::Start { hash, len } => format!("start {} {len}", hash[0]),
                        Piece::Content(c) => String::from_utf8(c.to_vec()).unwrap(),
                        Piece::End => "end".into(),
                    });
                    Ok(())
                })
                .unwrap();
            }
            assert!(d.is_clean());
            let joined = seen.join("|");
            let merged = joined.replace("|", "");
            assert!(
                merged.contains("start 1 5")
                    && merged.contains("hello")
                    && merged.contains("world!"),
                "{joined}"
            );
            assert_eq!(seen.iter().filter(|s| *s == "end").count(), 3);
        }
    }
}
