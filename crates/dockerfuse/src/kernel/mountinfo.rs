//! The kernel's mount table, `/proc/self/mountinfo`, read without touching
//! the mounts themselves (a stat of a FUSE mount point is a request to its
//! server, which may be this very process).

use std::path::{Path, PathBuf};

/// One line of mountinfo: what we use of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    /// `major:minor` of the mounted filesystem.
    pub device: String,
    pub mount_point: PathBuf,
    /// `fuse`, `fuse.dockerfuse`, `ext4`...
    pub fstype: String,
    /// The source: `dockerfuse:web` for ours.
    pub source: String,
}

impl Entry {
    /// A dockerfuse mount: type `fuse.dockerfuse`, or `fuse` with a
    /// `dockerfuse:` source (made by an older dockerfuse as root).
    pub(crate) fn is_dockerfuse(&self) -> bool {
        self.fstype == crate::kernel::sys_mount::FSTYPE
            || (self.fstype == "fuse" && self.source.starts_with("dockerfuse:"))
    }
}

/// Decodes the octal escapes (`\040` for a space) of a mountinfo field.
pub(crate) fn unescape(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

fn os_path(bytes: Vec<u8>) -> PathBuf {
    use std::os::unix::ffi::OsStringExt;
    PathBuf::from(std::ffi::OsString::from_vec(bytes))
}

/// Parses mountinfo text; lines that do not parse are skipped.
pub(crate) fn parse(text: &str) -> Vec<Entry> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            // ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS [OPTIONAL...] - TYPE SOURCE SUPER
            let dash = f.iter().position(|x| *x == "-")?;
            Some(Entry {
                device: f.get(2)?.to_string(),
                mount_point: os_path(unescape(f.get(4)?)),
                fstype: f.get(dash + 1)?.to_string(),
                source: String::from_utf8_lossy(&unescape(f.get(dash + 2)?)).into_owned(),
            })
        })
        .collect()
}

/// The current mount table (empty when it cannot be read).
pub(crate) fn read() -> Vec<Entry> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .map(|t| parse(&t))
        .unwrap_or_default()
}

/// The last mount on `path`, if any.
pub(crate) fn find(path: &Path) -> Option<Entry> {
    read().into_iter().rev().find(|e| e.mount_point == path)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
62 27 0:63 / /tmp/a\\040b rw,nosuid,nodev,relatime - fuse dockerfuse:web rw,user_id=0,group_id=0
63 27 0:64 / /mnt/web ro,nosuid,nodev shared:5 - fuse.dockerfuse dockerfuse:db ro,user_id=0
64 27 0:65 / /mnt/other rw - fuse.sshfs host: rw";

    #[test]
    fn fields_and_escapes() {
        let e = parse(SAMPLE);
        assert_eq!(e.len(), 4);
        assert_eq!(e[1].mount_point, Path::new("/tmp/a b"));
        assert_eq!(e[1].device, "0:63");
        assert_eq!(
            (e[2].fstype.as_str(), e[2].source.as_str()),
            ("fuse.dockerfuse", "dockerfuse:db")
        );
        let ours: Vec<bool> = e.iter().map(Entry::is_dockerfuse).collect();
        assert_eq!(ours, [false, true, true, false]);
        assert_eq!(unescape("/x\\"), b"/x\\");
    }

    #[test]
    fn root_is_mounted() {
        assert!(find(Path::new("/")).is_some());
    }
}
