//! [I/O] Reading `vip_file` safely: only a regular file (a FIFO with no writer would block the
//! start forever, `/dev/zero` would never end), at most [`MAX_BYTES`], and read again until two
//! reads [`SETTLE`] apart agree, so that a file rewritten in place is not taken half-written
//! (a torn `198.51.100.12` reads as `198.51.100.1`, and VIPs in every version were withdrawn).
//! Atomic replacement (write a temporary file, then rename it over) needs none of this and is
//! what docs/settings.md recommends.

use std::path::Path;
use std::time::Duration;

/// Far above 100,000 VIPs (about 1.6 MB).
pub const MAX_BYTES: u64 = 16 * 1024 * 1024;
/// The gap between two reads that must agree.
pub const SETTLE: Duration = Duration::from_millis(50);
/// Reads before giving up on a file that keeps changing.
const ATTEMPTS: usize = 20;

/// Why the file could not be read; each message names the file once and its cause once.
#[derive(Debug, thiserror::Error)]
pub enum VipFileError {
    #[error("vip_file {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("vip_file {path}: is not a regular file ({kind}); write the VIPs into a file")]
    NotAFile { path: String, kind: &'static str },
    #[error("vip_file {path}: is {size} bytes, more than the {MAX_BYTES} a VIP file may have")]
    TooLarge { path: String, size: u64 },
    #[error("vip_file {path}: changed on each of {ATTEMPTS} reads {SETTLE:?} apart; replace it atomically (write a new file, then rename it over)")]
    NeverSettled { path: String },
}

/// The file's text once two reads [`SETTLE`] apart agree.
pub async fn read_settled(path: &Path) -> Result<String, VipFileError> {
    let mut last = read_once(path).await?;
    for _ in 0..ATTEMPTS {
        tokio::time::sleep(SETTLE).await;
        let next = read_once(path).await?;
        if next == last {
            return Ok(next);
        }
        last = next;
    }
    Err(VipFileError::NeverSettled {
        path: path.display().to_string(),
    })
}

async fn read_once(path: &Path) -> Result<String, VipFileError> {
    use std::os::unix::fs::FileTypeExt;
    let shown = || path.display().to_string();
    let io = |source| VipFileError::Io {
        path: shown(),
        source,
    };
    // The type is checked before opening: opening a FIFO for reading blocks until a writer comes.
    let meta = tokio::fs::metadata(path).await.map_err(io)?;
    let t = meta.file_type();
    if !t.is_file() {
        let kind = if t.is_fifo() {
            "a FIFO"
        } else if t.is_char_device() {
            "a character device"
        } else if t.is_block_device() {
            "a block device"
        } else if t.is_dir() {
            "a directory"
        } else if t.is_socket() {
            "a socket"
        } else {
            "not a file"
        };
        return Err(VipFileError::NotAFile {
            path: shown(),
            kind,
        });
    }
    if meta.len() > MAX_BYTES {
        return Err(VipFileError::TooLarge {
            path: shown(),
            size: meta.len(),
        });
    }
    use tokio::io::AsyncReadExt;
    let file = tokio::fs::File::open(path).await.map_err(io)?;
    // Bounded even if the file grows between the size check and the read.
    let mut bytes = Vec::new();
    file.take(MAX_BYTES + 1)
        .read_to_end(&mut bytes)
        .await
        .map_err(io)?;
    if bytes.len() as u64 > MAX_BYTES {
        return Err(VipFileError::TooLarge {
            path: shown(),
            size: bytes.len() as u64,
        });
    }
    String::from_utf8(bytes).map_err(|_| {
        io(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "is not UTF-8 text",
        ))
    })
}
