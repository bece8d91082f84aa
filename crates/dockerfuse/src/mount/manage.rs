//! `dockerfuse list` and `dockerfuse unmount`: the live mounts, from the
//! kernel's mount table joined with the state files of [`crate::mount::state`].

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::kernel::mountinfo;
use crate::mount::state::{self, Record};

/// One mount as `list` shows it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Listed {
    pub container: Option<String>,
    pub container_id: Option<String>,
    pub path: Option<String>,
    pub mountpoint: PathBuf,
    pub pid: Option<u32>,
    pub transport: Option<String>,
    /// `YYYY-MM-DD HH:MM:SS` UTC.
    pub since: Option<String>,
    /// Seconds since the epoch.
    pub since_epoch: Option<u64>,
}

/// The dockerfuse mounts: those with a state file here first (their
/// process alive and their mount in the table; stale files are removed),
/// then the ones in the mount table without one (another user's, or
/// mounted by an older dockerfuse), with only what the table says.
pub(crate) fn mounts() -> Vec<Listed> {
    let table: Vec<mountinfo::Entry> = mountinfo::read()
        .into_iter()
        .filter(mountinfo::Entry::is_dockerfuse)
        .collect();
    let mut out = Vec::new();
    for (file, r) in state::read_all(&state::dir()) {
        let mounted = table.iter().any(|e| e.mount_point == r.mountpoint);
        if !mounted || !state::alive(r.pid) {
            tracing::debug!(file = %file.display(), "removing a stale state file");
            let _ = std::fs::remove_file(&file);
            // The stats socket of a killed process goes with it.
            let _ = std::fs::remove_file(file.with_extension("sock"));
            continue;
        }
        out.push(from_record(r));
    }
    for e in table {
        if out.iter().any(|l| l.mountpoint == e.mount_point) {
            continue;
        }
        out.push(Listed {
            container: e.source.strip_prefix("dockerfuse:").map(str::to_owned),
            container_id: None,
            path: None,
            mountpoint: e.mount_point,
            pid: None,
            transport: None,
            since: None,
            since_epoch: None,
        });
    }
    out
}

fn from_record(r: Record) -> Listed {
    Listed {
        container: Some(r.container),
        container_id: Some(r.container_id),
        path: Some(r.path),
        mountpoint: r.mountpoint,
        pid: Some(r.pid),
        transport: Some(r.transport),
        since: Some(state::utc(r.since)),
        since_epoch: Some(r.since),
    }
}

/// The table `dockerfuse list` prints.
pub(crate) fn table(list: &[Listed]) -> String {
    let dash = || "-".to_owned();
    let rows: Vec<[String; 7]> = list
        .iter()
        .map(|l| {
            [
                l.container.clone().unwrap_or_else(dash),
                l.container_id
                    .as_deref()
                    .map(|i| i.chars().take(12).collect())
                    .unwrap_or_else(dash),
                l.path.clone().unwrap_or_else(dash),
                l.mountpoint.display().to_string(),
                l.pid.map(|p| p.to_string()).unwrap_or_else(dash),
                l.transport.clone().unwrap_or_else(dash),
                l.since.clone().map(|s| s + " UTC").unwrap_or_else(dash),
            ]
        })
        .collect();
    let head = [
        "CONTAINER",
        "ID",
        "PATH",
        "MOUNTPOINT",
        "PID",
        "TRANSPORT",
        "SINCE",
    ]
    .map(String::from);
    let mut width = [0usize; 7];
    for r in std::iter::once(&head).chain(&rows) {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for r in std::iter::once(&head).chain(&rows) {
        let line: Vec<String> = r
            .iter()
            .zip(width)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// `dockerfuse list [--json]`.
pub(crate) fn list(json: bool) -> Result<()> {
    let l = mounts();
    if json {
        let text = serde_json::to_string_pretty(&l)
            .map_err(|e| Error::setup(format!("cannot write JSON: {e}")))?;
        println!("{text}");
    } else {
        print!("{}", table(&l));
    }
    Ok(())
}

/// `dockerfuse unmount DIR...` / `--all`: unmounts each and waits for its
/// serving process to exit. Goes on after a failure (printed); the exit
/// status is 1 when anything failed.
pub(crate) fn unmount(dirs: &[PathBuf], all: bool, timeout: Duration) -> i32 {
    let listed = mounts();
    let targets: Vec<PathBuf> = if all {
        listed
            .iter()
            .filter(|l| l.pid.is_some())
            .map(|l| l.mountpoint.clone())
            .collect()
    } else {
        dirs.iter()
            .map(|d| d.canonicalize().unwrap_or_else(|_| d.clone()))
            .collect()
    };
    let mut status = crate::error::EXIT_OK;
    for dir in targets {
        let pid = listed
            .iter()
            .find(|l| l.mountpoint == dir)
            .and_then(|l| l.pid);
        if let Err(e) = unmount_one(&dir, pid, timeout) {
            crate::report::print(&e);
            status = e.exit_code();
        }
    }
    status
}

fn unmount_one(dir: &Path, pid: Option<u32>, timeout: Duration) -> Result<()> {
    match mountinfo::find(dir) {
        Some(e) if e.is_dockerfuse() => {}
        Some(e) => {
            return Err(Error::setup(format!(
                "{} is not a dockerfuse mount (type {})",
                dir.display(),
                e.fstype
            ))
            .with_errno(libc::EINVAL))
        }
        None => {
            return Err(Error::setup(format!("{} is not mounted", dir.display()))
                .with_errno(libc::EINVAL)
                .with_hint("dockerfuse list shows the mounts"))
        }
    }
    crate::kernel::sys_mount::unmount_strict(dir).map_err(|e| {
        let err = Error::setup(format!("cannot unmount {}: {e}", dir.display()));
        if crate::kernel::fusermount::errno_of(&e) == Some(libc::EBUSY) {
            // SAFETY: geteuid has no preconditions and cannot fail.
            let detach = if unsafe { libc::geteuid() } == 0 {
                "umount -l"
            } else {
                "fusermount3 -u -z"
            };
            err.with_errno(libc::EBUSY).with_hint(format!(
                "something uses it (a shell's current directory, an open file: fuser -vm {0}); \
                 {detach} {0} detaches it anyway",
                dir.display()
            ))
        } else {
            err
        }
    })?;
    if let Some(pid) = pid {
        let deadline = Instant::now() + timeout;
        while state::alive(pid) {
            if Instant::now() > deadline {
                return Err(Error::setup(format!(
                    "{} is unmounted but its process {pid} is still running after {}s",
                    dir.display(),
                    timeout.as_secs()
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    println!("unmounted {}", dir.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_has_a_header_and_aligned_columns() {
        let l = vec![
            from_record(Record {
                container: "web".into(),
                container_id: "0123456789abcdef".into(),
                path: "/etc".into(),
                mountpoint: "/mnt/web".into(),
                pid: 42,
                transport: "exec".into(),
                since: 0,
            }),
            Listed {
                container: Some("db".into()),
                container_id: None,
                path: None,
                mountpoint: "/mnt/db".into(),
                pid: None,
                transport: None,
                since: None,
                since_epoch: None,
            },
        ];
        let t = table(&l);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("CONTAINER  ID"), "{t}");
        assert!(
            lines[1].contains("0123456789ab ") && !lines[1].contains("cdef"),
            "{t}"
        );
        assert!(lines[1].contains("1970-01-01 00:00:00 UTC"), "{t}");
        let col = lines[0].find("MOUNTPOINT").unwrap();
        assert_eq!(&lines[2][col..col + 7], "/mnt/db");
    }
}
