//! One small JSON file per live mount in the runtime directory, written
//! once the mount is ready and removed when the serving process ends:
//! what `dockerfuse list` shows beyond the kernel's mount table (the
//! container's id, the path in it, the pid, the transport, since when).
//!
//! The directory is `/run/dockerfuse` for root (the same whether started
//! from a shell or by mount(8), which clears the environment), else
//! `$XDG_RUNTIME_DIR/dockerfuse`, else `/tmp/dockerfuse-<uid>`;
//! `DOCKERFUSE_RUNTIME_DIR` overrides it. A file whose process or mount is
//! gone (the process was killed) is stale and removed by `list`, with the
//! stats socket next to it (see [`crate::mount::stats`]).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// What is recorded about one mount.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Record {
    pub container: String,
    pub container_id: String,
    pub path: String,
    pub mountpoint: PathBuf,
    pub pid: u32,
    /// How the satellite is reached: "exec" (docker exec, attached).
    pub transport: String,
    /// Seconds since the epoch when the mount became ready.
    pub since: u64,
}

/// The runtime directory (not created).
pub(crate) fn dir() -> PathBuf {
    if let Some(d) = std::env::var_os("DOCKERFUSE_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let uid = unsafe { libc::geteuid() };
    if uid == 0 {
        return PathBuf::from("/run/dockerfuse");
    }
    match std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        Some(d) => Path::new(&d).join("dockerfuse"),
        None => PathBuf::from(format!("/tmp/dockerfuse-{uid}")),
    }
}

fn file_of(dir: &Path, pid: u32) -> PathBuf {
    dir.join(format!("{pid}.json"))
}

/// Writes the record of this process (atomically: a temporary file renamed).
pub(crate) fn write(dir: &Path, r: &Record) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let path = file_of(dir, r.pid);
    let tmp = dir.join(format!(".{}.tmp", r.pid));
    let json = serde_json::to_vec_pretty(r).map_err(std::io::Error::other)?;
    std::fs::write(&tmp, json)?;
    std::fs::rename(&tmp, &path)?;
    Ok(path)
}

/// Every record in `dir` with the file it came from (unreadable ones skipped).
pub(crate) fn read_all(dir: &Path) -> Vec<(PathBuf, Record)> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<(PathBuf, Record)> = rd
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .filter_map(|p| {
            let text = std::fs::read(&p).ok()?;
            let r = serde_json::from_slice::<Record>(&text).ok()?;
            Some((p, r))
        })
        .collect();
    out.sort_by(|a, b| a.1.mountpoint.cmp(&b.1.mountpoint));
    out
}

/// True when `pid` names a live process.
pub(crate) fn alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 only checks that the process exists.
    let rc = unsafe { libc::kill(pid, 0) };
    // A zombie still answers kill(0): look at its state too.
    (rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM))
        && std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| s.rsplit_once(") ").map(|(_, r)| !r.starts_with('Z')))
            .unwrap_or(false)
}

/// The record of a running mount, removed by [`Registration::drop`].
pub(crate) struct Registration(Option<PathBuf>);

impl Registration {
    /// Records the mount; a failure only costs the entry in `list`.
    pub(crate) fn new(r: &Record) -> Registration {
        match write(&dir(), r) {
            Ok(p) => Registration(Some(p)),
            Err(e) => {
                tracing::debug!(dir = %dir().display(), error = %e, "no state file");
                Registration(None)
            }
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Seconds since the epoch, now.
pub(crate) fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `YYYY-MM-DD HH:MM:SS` (UTC) of seconds since the epoch.
pub(crate) fn utc(secs: u64) -> String {
    let days = (secs / 86400) as i64;
    let rem = secs % 86400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let d = tempfile::tempdir().unwrap();
        let r = Record {
            container: "web".into(),
            container_id: "abc".into(),
            path: "/etc".into(),
            mountpoint: "/mnt/web".into(),
            pid: 4242,
            transport: "exec".into(),
            since: 1,
        };
        let p = write(d.path(), &r).unwrap();
        assert_eq!(p, d.path().join("4242.json"));
        assert_eq!(read_all(d.path()), vec![(p, r)]);
        std::fs::write(d.path().join("junk.json"), "{").unwrap();
        assert_eq!(read_all(d.path()).len(), 1, "unreadable files are skipped");
    }

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00");
        assert_eq!(utc(1_796_042_096), "2026-11-30 12:34:56");
    }

    #[test]
    fn this_process_is_alive() {
        assert!(alive(std::process::id()));
        assert!(!alive(u32::MAX));
    }
}
