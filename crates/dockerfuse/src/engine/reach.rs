//! Why the engine cannot be reached, in words: a refusal on the socket's
//! permissions, nothing listening, something that is not the Engine API,
//! or a TLS handshake that fails. The client library reports them all as
//! "client error (Connect)"; the socket itself is asked again here (a
//! plain connect, nothing sent) to tell them apart, and the error's
//! sources are read for the protocol and TLS cases.

use std::io;
use std::net::ToSocketAddrs;
use std::os::unix::fs::MetadataExt;
use std::time::Duration;

/// What went wrong, as far as it can be told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Cause {
    /// The socket exists, but this user may not connect to it.
    Permission { owner: String },
    /// No socket file at the path.
    NoSocket,
    /// The socket or port refuses connections: nothing listens.
    NotListening,
    /// The engine wants TLS and the client spoke plain HTTP.
    WantsTls,
    /// The TLS handshake failed (certificate, CA, or no TLS there).
    TlsRefused,
    /// It answered, but not as the Engine API.
    WrongProtocol,
    /// None of the above could be told.
    Other,
}

/// The text of `e` and of all its sources, joined.
pub(crate) fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let t = s.to_string();
        if !out.contains(&t) {
            out.push_str(": ");
            out.push_str(&t);
        }
        cur = s.source();
    }
    out
}

/// The cause of a failure to talk to `host` (`unix://...`, `tcp://...`),
/// given the error's text with its sources.
pub(crate) fn cause(host: &str, tls: bool, text: &str) -> Cause {
    let lower = text.to_ascii_lowercase();
    if let Some(path) = host.strip_prefix("unix://") {
        match std::os::unix::net::UnixStream::connect(path) {
            Err(e) => return from_connect(&e, path),
            Ok(_) if is_io(&lower) => return Cause::Other,
            Ok(_) => {}
        }
    } else if let Some(addr) = host
        .strip_prefix("tcp://")
        .or_else(|| host.strip_prefix("http://"))
        .or_else(|| host.strip_prefix("https://"))
    {
        let addr = addr.split('/').next().unwrap_or(addr);
        if let Some(Err(e)) = addr
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .map(|a| std::net::TcpStream::connect_timeout(&a, Duration::from_secs(3)))
        {
            if e.kind() == io::ErrorKind::ConnectionRefused {
                return Cause::NotListening;
            }
            return Cause::Other;
        }
    }
    if lower.contains("client sent an http request to an https server") {
        return Cause::WantsTls;
    }
    if tls
        && (lower.contains("tls")
            || lower.contains("handshake")
            || lower.contains("certificate")
            || lower.contains("ssl")
            || lower.contains("unknownissuer")
            || lower.contains("corrupt message"))
    {
        return Cause::TlsRefused;
    }
    if lower.contains("invalid http")
        || lower.contains("parse")
        || lower.contains("invalid status")
        || lower.contains("invalid header")
        || lower.contains("incompletemessage")
        || lower.contains("connection closed before message completed")
        || lower.contains("page not found")
        || lower.contains("404")
        || lower.contains("expected value")
        || lower.contains("json")
    {
        return if tls {
            Cause::TlsRefused
        } else {
            Cause::WrongProtocol
        };
    }
    Cause::Other
}

/// An error a timeout or I/O failure explains better than the socket.
fn is_io(lower: &str) -> bool {
    lower.contains("timed out") || lower.contains("timeout")
}

fn from_connect(e: &io::Error, path: &str) -> Cause {
    match e.raw_os_error() {
        Some(libc::EACCES) | Some(libc::EPERM) => Cause::Permission { owner: owner(path) },
        Some(libc::ENOENT) | Some(libc::ENOTDIR) => Cause::NoSocket,
        Some(libc::ECONNREFUSED) => Cause::NotListening,
        _ => Cause::Other,
    }
}

/// "owner root, group docker, mode 660" of a socket file.
fn owner(path: &str) -> String {
    let Ok(m) = std::fs::metadata(path) else {
        return String::new();
    };
    format!(
        "owner {}, group {}, mode {:o}",
        name_of(m.uid(), "/etc/passwd"),
        name_of(m.gid(), "/etc/group"),
        m.mode() & 0o7777
    )
}

/// The name of an id in a passwd/group file, else the number.
fn name_of(id: u32, file: &str) -> String {
    std::fs::read_to_string(file)
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                let mut f = l.split(':');
                let name = f.next()?;
                let n: u32 = f.nth(1)?.parse().ok()?;
                (n == id).then(|| name.to_owned())
            })
        })
        .unwrap_or_else(|| id.to_string())
}

/// True for a socket that looks like Podman's.
pub(crate) fn is_podman(host: &str) -> bool {
    host.contains("podman")
}

/// The sentence and the hint for `cause` at `host`.
pub(crate) fn words(cause: &Cause, host: &str) -> Option<(String, String)> {
    let path = host.strip_prefix("unix://").unwrap_or(host);
    let podman = is_podman(host);
    let start = if podman {
        format!(
            "start the Podman service: systemctl --user start podman.socket, \
             or podman system service --time=0 unix://{path} &"
        )
    } else if host.starts_with("unix://") {
        "start the engine (systemctl start docker, or dockerd-rootless.sh for rootless Docker), \
         or choose another with -H, DOCKER_HOST or --context"
            .to_owned()
    } else {
        "start the engine there, or choose another with -H, DOCKER_HOST or --context".to_owned()
    };
    let out = match cause {
        Cause::Permission { owner } => (
            format!(
                "permission denied on the socket {path}{}: this user may not use that engine",
                if owner.is_empty() {
                    String::new()
                } else {
                    format!(" ({owner})")
                }
            ),
            if podman {
                "use your own Podman service (DOCKER_HOST=unix://$XDG_RUNTIME_DIR/podman/podman.sock) \
                 or run as the socket's owner"
                    .to_owned()
            } else {
                "join the socket's group (sudo usermod -aG docker $USER, then log in again); \
                 or use rootless Docker or Podman and point DOCKER_HOST (or --context) at its socket \
                 under $XDG_RUNTIME_DIR; or run as root"
                    .to_owned()
            },
        ),
        Cause::NoSocket => (
            format!("no socket at {path}: no engine listens there"),
            start,
        ),
        Cause::NotListening => (
            format!("nothing listens at {host} (connection refused)"),
            start,
        ),
        Cause::WantsTls => (
            format!("the engine at {host} wants TLS and was spoken to in plain HTTP"),
            "use TLS: --tlsverify with DOCKER_CERT_PATH, or a docker context with its certificates"
                .to_owned(),
        ),
        Cause::TlsRefused => (
            format!("the TLS handshake with {host} failed"),
            format!(
                "check that the engine at {host} serves TLS and that the CA signs its certificate \
                 (and that it accepts the client certificate)"
            ),
        ),
        Cause::WrongProtocol => (
            format!("{host} answers, but not as a Docker Engine API (wrong protocol)"),
            "check the address: it should be dockerd's or Podman's API socket \
             (docker context ls, podman info --format '{{.Host.RemoteSocket.Path}}')"
                .to_owned(),
        ),
        Cause::Other => return None,
    };
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::net::UnixListener;

    #[test]
    fn a_missing_socket_and_a_dead_one() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("docker.sock");
        let host = format!("unix://{}", p.display());
        assert_eq!(
            cause(&host, false, "client error (Connect)"),
            Cause::NoSocket
        );
        drop(UnixListener::bind(&p).unwrap());
        assert_eq!(
            cause(&host, false, "client error (Connect)"),
            Cause::NotListening
        );
        let (s, h) = words(&Cause::NotListening, &host).unwrap();
        assert!(s.contains("nothing listens"), "{s}");
        assert!(h.contains("systemctl start docker"), "{h}");
    }

    #[test]
    fn podman_sockets_get_podman_hints() {
        let host = "unix:///run/user/1000/podman/podman.sock";
        let (_, h) = words(&Cause::NoSocket, host).unwrap();
        assert!(h.contains("podman system service"), "{h}");
        let (s, h) = words(
            &Cause::Permission {
                owner: "owner a".into(),
            },
            host,
        )
        .unwrap();
        assert!(s.starts_with("permission denied on the socket"), "{s}");
        assert!(h.contains("XDG_RUNTIME_DIR"), "{h}");
    }

    #[test]
    fn the_permission_hint_names_the_group_and_rootless_engines() {
        let (s, h) = words(
            &Cause::Permission {
                owner: "owner root, group docker, mode 660".into(),
            },
            "unix:///var/run/docker.sock",
        )
        .unwrap();
        assert!(s.contains("(owner root, group docker, mode 660)"), "{s}");
        assert!(h.contains("usermod -aG docker"), "{h}");
        assert!(h.contains("rootless"), "{h}");
        assert!(h.contains("DOCKER_HOST"), "{h}");
    }

    #[test]
    fn a_socket_that_speaks_something_else() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("other.sock");
        let l = UnixListener::bind(&p).unwrap();
        let t = std::thread::spawn(move || {
            if let Ok((mut c, _)) = l.accept() {
                let _ = c.write_all(b"SSH-2.0-nope\r\n");
                let mut b = [0u8; 64];
                let _ = c.read(&mut b);
            }
        });
        let host = format!("unix://{}", p.display());
        let c = cause(
            &host,
            false,
            "client error (SendRequest): invalid HTTP version parsed",
        );
        assert_eq!(c, Cause::WrongProtocol);
        drop(t);
    }

    #[test]
    fn tls_cases() {
        assert_eq!(
            cause(
                "tcp://127.0.0.1:1",
                false,
                "Client sent an HTTP request to an HTTPS server."
            ),
            Cause::NotListening,
            "a closed port is found before the words"
        );
        assert_eq!(
            cause(
                "unix:///nonexistent-dir/x.sock",
                false,
                "Client sent an HTTP request to an HTTPS server."
            ),
            Cause::NoSocket
        );
        assert_eq!(
            cause("ssh://x", true, "invalid peer certificate: UnknownIssuer"),
            Cause::TlsRefused
        );
        assert_eq!(
            cause(
                "ssh://x",
                false,
                "Client sent an HTTP request to an HTTPS server."
            ),
            Cause::WantsTls
        );
    }

    #[test]
    fn a_socket_this_user_may_not_open() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            // root passes any mode: the mapping is checked directly
            let e = io::Error::from_raw_os_error(libc::EACCES);
            assert!(matches!(from_connect(&e, "/x"), Cause::Permission { .. }));
            return;
        }
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("s.sock");
        let _l = UnixListener::bind(&p).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o000)).unwrap();
        let host = format!("unix://{}", p.display());
        assert!(matches!(cause(&host, false, ""), Cause::Permission { .. }));
    }

    #[test]
    fn names_come_from_the_files() {
        assert_eq!(name_of(0, "/etc/passwd"), "root");
        assert_eq!(name_of(4_000_000, "/etc/passwd"), "4000000");
    }
}
