//! A one-file ustar archive: the form the Engine API's archive upload
//! takes. Written by hand (a header is 512 bytes of fixed fields) rather
//! than pulling in a tar crate for one file.

/// Builds a tar holding `name` (no directories) with `data`, mode and owner.
pub(crate) fn single_file(name: &str, data: &[u8], mode: u32, uid: u32, gid: u32) -> Vec<u8> {
    assert!(
        name.len() < 100 && !name.contains('/'),
        "a short plain file name"
    );
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    octal(&mut h[100..108], mode as u64);
    octal(&mut h[108..116], uid as u64);
    octal(&mut h[116..124], gid as u64);
    octal(&mut h[124..136], data.len() as u64);
    let mtime = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    octal(&mut h[136..148], mtime);
    h[156] = b'0';
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    // The checksum is computed with its own field as spaces.
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| b as u32).sum();
    octal(&mut h[148..155], sum as u64);
    h[155] = b' ';

    let mut out = Vec::with_capacity(512 + data.len() + 1536);
    out.extend_from_slice(&h);
    out.extend_from_slice(data);
    out.resize(out.len().next_multiple_of(512), 0);
    out.resize(out.len() + 1024, 0);
    out
}

/// The contents of the first entry of a tar archive when it is a regular
/// file (what the Engine API's archive download gives for one file), or
/// `None` for anything else or a truncated archive.
pub(crate) fn first_file(tar: &[u8]) -> Option<&[u8]> {
    let h = tar.get(..512)?;
    if !matches!(h[156], b'0' | 0) {
        return None;
    }
    let size = std::str::from_utf8(&h[124..136])
        .ok()?
        .trim_matches(|c: char| c == '\0' || c == ' ');
    let size = usize::from_str_radix(size, 8).ok()?;
    tar.get(512..512usize.checked_add(size)?)
}

/// Writes `v` as zero-padded octal, NUL-terminated, filling `field`.
fn octal(field: &mut [u8], v: u64) {
    let digits = field.len() - 1;
    let s = format!("{v:0digits$o}");
    field[..digits].copy_from_slice(&s.as_bytes()[s.len() - digits..]);
    field[digits] = 0;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn system_tar_reads_it_back() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..1500u32).map(|i| i as u8).collect();
        let t = single_file("sat", &data, 0o755, 0, 0);
        assert_eq!(t.len() % 512, 0);
        std::fs::write(dir.path().join("a.tar"), &t).unwrap();
        let st = Command::new("tar")
            .arg("-xf")
            .arg("a.tar")
            .current_dir(dir.path())
            .status()
            .unwrap();
        assert!(st.success());
        assert_eq!(std::fs::read(dir.path().join("sat")).unwrap(), data);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("sat"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);
    }

    #[test]
    fn first_file_reads_back_what_single_file_wrote() {
        let data = b"root:x:0:0:root:/root:/bin/sh\n".to_vec();
        let t = single_file("passwd", &data, 0o644, 0, 0);
        assert_eq!(first_file(&t), Some(&data[..]));
        assert_eq!(first_file(&t[..520]), None, "truncated");
        let mut dir = t.clone();
        dir[156] = b'5';
        assert_eq!(first_file(&dir), None, "not a regular file");
    }
}
