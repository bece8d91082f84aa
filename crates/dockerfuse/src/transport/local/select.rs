//! Which path a mount takes, decided from facts about this host, and the
//! parsing of those facts (pure functions, tested without a kernel).
//!
//! Two questions: may the RPC bypass the engine (the local channel), and
//! may the kernel pass file data straight to the container's files (FUSE
//! passthrough, only on the local channel). Each answer that is "no"
//! carries the reason in words, for `-debug` and for `--transport local`'s
//! error.

/// How the host talks to the satellite.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum TransportChoice {
    /// The local channel when the engine is on this host and allows it,
    /// else the exec stream.
    #[default]
    Auto,
    /// Always the exec stream through the engine.
    Exec,
    /// The local channel, or fail the mount saying why not.
    Local,
}

/// Whether to try the local channel at all: `Err` says why not.
pub(crate) fn channel_wanted(choice: TransportChoice, engine_host: &str) -> Result<(), String> {
    if choice == TransportChoice::Exec {
        return Err("--transport exec was asked".into());
    }
    if !engine_host.starts_with("unix://") {
        return Err(format!(
            "the engine is remote ({}): its containers' processes are not on this host",
            engine_host.split('@').next_back().unwrap_or(engine_host)
        ));
    }
    Ok(())
}

/// Facts that decide FUSE passthrough.
#[derive(Clone, Debug)]
pub(crate) struct PassthroughFacts {
    pub(crate) local: bool,
    pub(crate) disabled: bool,
    pub(crate) writeback: bool,
    /// Requests are performed as their callers (`--allow-other`).
    pub(crate) per_caller: bool,
    /// CAP_SYS_ADMIN is in the effective set.
    pub(crate) sys_admin: bool,
    /// (major, minor) of the running kernel, when known.
    pub(crate) kernel: Option<(u32, u32)>,
}

/// Whether to ask the kernel for passthrough: `Err` says why not.
pub(crate) fn passthrough_wanted(f: &PassthroughFacts) -> Result<(), String> {
    if !f.local {
        return Err("it needs the local channel".into());
    }
    if f.disabled {
        return Err("--no-passthrough was asked".into());
    }
    if f.writeback {
        return Err(
            "--writeback-cache was asked (the kernel allows no passthrough with it)".into(),
        );
    }
    if f.per_caller {
        // The kernel writes to a backing file with the credentials of the
        // process that registered it: a write by an unprivileged caller
        // would keep setuid/setgid bits it must clear.
        return Err(
            "--allow-other was asked (writes through the kernel would run with dockerfuse's privileges, not the caller's)"
                .into(),
        );
    }
    if !f.sys_admin {
        return Err("dockerfuse lacks CAP_SYS_ADMIN (run it as root)".into());
    }
    match f.kernel {
        Some(k) if k >= (6, 9) => Ok(()),
        Some((a, b)) => Err(format!("kernel {a}.{b} is older than 6.9")),
        None => Err("the kernel version is unknown".into()),
    }
}

/// The last field of `NSpid:` in a /proc/<pid>/status: the pid as the
/// process's own (innermost) pid namespace sees it.
pub(crate) fn innermost_pid(status: &str) -> Option<u32> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))?
        .split_whitespace()
        .next_back()?
        .parse()
        .ok()
}

/// Whether a capability bit is in `CapEff:` of a /proc/<pid>/status.
pub(crate) fn has_capability(status: &str, cap: u32) -> bool {
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .is_some_and(|bits| cap < 64 && bits & (1 << cap) != 0)
}

/// (major, minor) of a kernel release string such as `6.18.0-1-amd64`.
pub(crate) fn kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut it = release.split(|c: char| !c.is_ascii_digit());
    let major = it.next()?.parse().ok()?;
    let minor = it.next()?.parse().ok()?;
    Some((major, minor))
}

/// Whether a NUL-separated /proc/<pid>/cmdline runs `path`: as argv[0],
/// or as argv[1] when an interpreter (qemu-user through binfmt_misc)
/// runs the binary for another architecture.
pub(crate) fn cmdline_runs(cmdline: &[u8], path: &str) -> bool {
    cmdline
        .split(|&b| b == 0)
        .take(2)
        .any(|arg| arg == path.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> PassthroughFacts {
        PassthroughFacts {
            local: true,
            disabled: false,
            writeback: false,
            per_caller: false,
            sys_admin: true,
            kernel: Some((6, 18)),
        }
    }

    #[test]
    fn channel_decision_table() {
        let unix = "unix:///var/run/docker.sock";
        assert!(channel_wanted(TransportChoice::Auto, unix).is_ok());
        assert!(channel_wanted(TransportChoice::Local, unix).is_ok());
        let e = channel_wanted(TransportChoice::Exec, unix).unwrap_err();
        assert!(e.contains("--transport exec"), "{e}");
        for remote in [
            "tcp://10.0.0.1:2376",
            "https://h:2376",
            "ssh://u@h",
            "http://h:2375",
        ] {
            for c in [TransportChoice::Auto, TransportChoice::Local] {
                let e = channel_wanted(c, remote).unwrap_err();
                assert!(e.contains("remote"), "{remote}: {e}");
            }
        }
    }

    #[test]
    fn passthrough_decision_table() {
        assert!(passthrough_wanted(&facts()).is_ok());
        assert!(passthrough_wanted(&PassthroughFacts {
            kernel: Some((6, 9)),
            ..facts()
        })
        .is_ok());
        assert!(passthrough_wanted(&PassthroughFacts {
            kernel: Some((7, 0)),
            ..facts()
        })
        .is_ok());
        let cases: [(PassthroughFacts, &str); 7] = [
            (
                PassthroughFacts {
                    local: false,
                    ..facts()
                },
                "local channel",
            ),
            (
                PassthroughFacts {
                    disabled: true,
                    ..facts()
                },
                "--no-passthrough",
            ),
            (
                PassthroughFacts {
                    writeback: true,
                    ..facts()
                },
                "--writeback-cache",
            ),
            (
                PassthroughFacts {
                    per_caller: true,
                    ..facts()
                },
                "--allow-other",
            ),
            (
                PassthroughFacts {
                    sys_admin: false,
                    ..facts()
                },
                "CAP_SYS_ADMIN",
            ),
            (
                PassthroughFacts {
                    kernel: Some((6, 8)),
                    ..facts()
                },
                "older than 6.9",
            ),
            (
                PassthroughFacts {
                    kernel: None,
                    ..facts()
                },
                "unknown",
            ),
        ];
        for (f, why) in cases {
            let e = passthrough_wanted(&f).unwrap_err();
            assert!(e.contains(why), "{f:?}: {e}");
        }
    }

    #[test]
    fn nspid_gives_the_innermost_pid() {
        let s = "Name:\tsat\nTgid:\t4242\nNSpid:\t4242\t17\nPPid:\t1\n";
        assert_eq!(innermost_pid(s), Some(17));
        assert_eq!(innermost_pid("NSpid:\t99\n"), Some(99));
        assert_eq!(innermost_pid("NSpid:\t1\t2\t3\n"), Some(3));
        assert_eq!(innermost_pid("Name:\tx\n"), None);
        assert_eq!(innermost_pid("NSpid:\t\n"), None);
        assert_eq!(innermost_pid("NSpid:\tabc\n"), None);
    }

    #[test]
    fn capabilities_from_status() {
        let root = "CapInh:\t0000000000000000\nCapEff:\t000001ffffffffff\n";
        assert!(has_capability(root, 21));
        let none = "CapEff:\t0000000000000000\n";
        assert!(!has_capability(none, 21));
        assert!(!has_capability("CapEff:\tzz\n", 21));
        assert!(!has_capability("", 21));
        assert!(!has_capability(root, 64));
    }

    #[test]
    fn kernel_versions() {
        assert_eq!(kernel_version("6.18.0-1-amd64"), Some((6, 18)));
        assert_eq!(kernel_version("6.9"), Some((6, 9)));
        assert_eq!(kernel_version("5.15.0+"), Some((5, 15)));
        assert_eq!(kernel_version("weird"), None);
    }

    #[test]
    fn cmdline_names_the_binary_directly_or_under_qemu() {
        let p = "/tmp/.dockerfuse-satellite-1-ab";
        assert!(cmdline_runs(
            b"/tmp/.dockerfuse-satellite-1-ab\0--delete-self\0",
            p
        ));
        assert!(cmdline_runs(
            b"/usr/bin/qemu-aarch64-static\0/tmp/.dockerfuse-satellite-1-ab\0--delete-self\0",
            p
        ));
        assert!(!cmdline_runs(
            b"/bin/sh\0-c\0/tmp/.dockerfuse-satellite-1-ab\0",
            p
        ));
        assert!(!cmdline_runs(b"", p));
    }
}
