//! `ssh://[user@]host[:port]` engines, the way the docker CLI reaches them:
//! `ssh [-l user] [-p port] -- host docker system dial-stdio` per
//! connection, with ssh's own configuration, keys and known_hosts.
//!
//! bollard speaks to a unix socket, so a [`Bridge`] listens on one in a
//! private directory and, for every connection bollard opens, starts such
//! an ssh process and copies bytes both ways. ssh runs with BatchMode=yes:
//! a mount never prompts for a password or a host key; a refused key or an
//! unknown host key is an error naming the cause. Before the first
//! connection [`check`] runs `docker version` over ssh once, so that what
//! went wrong (ssh refused, no docker on the remote) is told plainly
//! instead of as a broken HTTP stream.

use std::io::Read;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use crate::error::{Error, Result};

/// Where an `ssh://` URL points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    pub user: Option<String>,
    pub host: String,
    pub port: Option<u16>,
}

/// Parses `ssh://[user@]host[:port]` (a path is refused, as by the CLI).
pub(crate) fn parse(url: &str) -> Result<Target, String> {
    let rest = url
        .strip_prefix("ssh://")
        .ok_or_else(|| format!("{url} is not an ssh:// address"))?;
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    if !path.is_empty() {
        return Err(format!("{url}: an ssh:// address takes no path"));
    }
    let (user, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) if !u.is_empty() => (Some(u.to_owned()), h),
        Some((_, h)) => (None, h),
        None => (None, authority),
    };
    let (host, port) = if let Some(inner) = hostport.strip_prefix('[') {
        // [v6]:port
        let (h, rest) = inner
            .split_once(']')
            .ok_or_else(|| format!("{url}: unclosed ["))?;
        (h, rest.strip_prefix(':'))
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    if host.is_empty() {
        return Err(format!("{url}: no host"));
    }
    let port = port
        .map(|p| p.parse::<u16>().map_err(|_| format!("{url}: bad port {p}")))
        .transpose()?;
    Ok(Target {
        user,
        host: host.to_owned(),
        port,
    })
}

impl Target {
    /// The ssh command line running `remote` on the target.
    pub(crate) fn command(&self, remote: &[&str]) -> Command {
        let mut c = Command::new("ssh");
        c.args(["-o", "BatchMode=yes", "-o", "ConnectTimeout=30", "-T"]);
        if let Some(u) = &self.user {
            c.arg("-l").arg(u);
        }
        if let Some(p) = self.port {
            c.arg("-p").arg(p.to_string());
        }
        c.arg("--").arg(&self.host).args(remote);
        c
    }

    fn name(&self) -> String {
        let user = self
            .user
            .as_deref()
            .map(|u| format!("{u}@"))
            .unwrap_or_default();
        let port = self.port.map(|p| format!(":{p}")).unwrap_or_default();
        format!("{user}{}{port}", self.host)
    }
}

/// What ssh's or the remote's words mean, as an error with a hint.
pub(crate) fn explain(t: &Target, status: Option<i32>, stderr: &str) -> Error {
    let said = stderr.trim();
    let base = |what: &str| {
        Error::setup(format!(
            "ssh to {}: {what}{}",
            t.name(),
            if said.is_empty() {
                String::new()
            } else {
                format!(" ({})", said.lines().last().unwrap_or(said))
            }
        ))
    };
    if said.contains("Host key verification failed")
        || said.contains("No ED25519 host key is known")
        || said.contains("host key for") && said.contains("not known")
    {
        base("the host key is not known").with_hint(format!(
            "dockerfuse never asks: check the key and add it to ~/.ssh/known_hosts \
             (ssh {} once, or ssh-keyscan)",
            t.name()
        ))
    } else if said.contains("Permission denied") && status == Some(255) {
        base("the key was refused").with_hint(
            "ssh runs with BatchMode=yes (no password prompt): load the key in ssh-agent or \
             name it in ~/.ssh/config, and add it to the remote's authorized_keys",
        )
    } else if status == Some(127)
        || said.contains("docker: not found")
        || said.contains("command not found")
    {
        base("there is no docker command on the remote").with_hint(
            "install the docker CLI there (it runs `docker system dial-stdio`), or put it in the \
             remote user's PATH",
        )
    } else if status == Some(255) {
        base("ssh failed").with_hint(format!("try: ssh {} docker version", t.name()))
    } else {
        base("the remote docker failed")
    }
}

/// Runs `docker version` on the target once; the error says what is wrong.
pub(crate) fn check(t: &Target) -> Result<()> {
    let out = t
        .command(&["docker", "version", "--format", "{{.Server.Version}}"])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| {
            Error::setup(format!("cannot run ssh: {e}"))
                .with_hint("install the OpenSSH client (apt-get install openssh-client)")
        })?;
    if out.status.success() {
        return Ok(());
    }
    Err(explain(
        t,
        out.status.code(),
        &String::from_utf8_lossy(&out.stderr),
    ))
}

/// A unix socket whose every connection is an ssh dial-stdio session.
pub(crate) struct Bridge {
    dir: PathBuf,
    socket: PathBuf,
}

impl Bridge {
    /// Listens in a new private directory and serves in a thread.
    pub(crate) fn start(t: Target) -> std::io::Result<Bridge> {
        use std::os::unix::fs::DirBuilderExt;
        let dir = std::env::temp_dir().join(format!(
            "dockerfuse-ssh-{}-{}",
            std::process::id(),
            crate::mount::state::now()
        ));
        std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
        let socket = dir.join("docker.sock");
        let listener = UnixListener::bind(&socket)?;
        std::thread::Builder::new()
            .name("ssh-bridge".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    match conn {
                        Ok(c) => {
                            if let Err(e) = serve(&t, c) {
                                tracing::warn!(error = %e, "cannot start ssh");
                            }
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "ssh bridge stopped");
                            return;
                        }
                    }
                }
            })?;
        Ok(Bridge { dir, socket })
    }

    /// `unix://...` of the socket, for bollard.
    pub(crate) fn url(&self) -> String {
        format!("unix://{}", self.socket.display())
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One connection: an ssh process whose stdin and stdout are the
/// connection itself; a thread waits for it and logs why it failed.
fn serve(t: &Target, conn: UnixStream) -> std::io::Result<()> {
    let out = conn.try_clone()?;
    let mut child: Child = t
        .command(&["docker", "system", "dial-stdio"])
        .stdin(Stdio::from(std::os::fd::OwnedFd::from(conn)))
        .stdout(Stdio::from(std::os::fd::OwnedFd::from(out)))
        .stderr(Stdio::piped())
        .spawn()?;
    let mut err = child.stderr.take();
    let target = t.clone();
    std::thread::Builder::new()
        .name("ssh-wait".into())
        .spawn(move || {
            let mut said = String::new();
            if let Some(e) = err.as_mut() {
                let _ = e.take(64 * 1024).read_to_string(&mut said);
            }
            let status = child.wait().ok().and_then(|s| s.code());
            if status != Some(0) && !said.trim().is_empty() {
                tracing::warn!(error = %explain(&target, status, &said), "ssh session ended");
            }
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            parse("ssh://me@host:2222").unwrap(),
            Target {
                user: Some("me".into()),
                host: "host".into(),
                port: Some(2222)
            }
        );
        assert_eq!(
            parse("ssh://host").unwrap(),
            Target {
                user: None,
                host: "host".into(),
                port: None
            }
        );
        assert_eq!(parse("ssh://[::1]:22").unwrap().host, "::1");
        assert!(parse("ssh://host/path").is_err());
        assert!(parse("ssh://me@").is_err());
        assert!(parse("ssh://h:notaport").is_err());
    }

    #[test]
    fn the_command_is_the_clis() {
        let t = parse("ssh://me@h:2").unwrap();
        let c = t.command(&["docker", "system", "dial-stdio"]);
        let args: Vec<String> = c
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            args.join(" "),
            "-o BatchMode=yes -o ConnectTimeout=30 -T -l me -p 2 -- h docker system dial-stdio"
        );
    }

    #[test]
    fn causes_are_told_apart() {
        let t = parse("ssh://me@h").unwrap();
        let e = explain(&t, Some(255), "Host key verification failed.\r\n");
        assert!(e.message.contains("host key is not known"), "{}", e.message);
        let e = explain(&t, Some(255), "me@h: Permission denied (publickey).");
        assert!(e.message.contains("key was refused"), "{}", e.message);
        let e = explain(&t, Some(127), "sh: 1: docker: not found");
        assert!(e.message.contains("no docker command"), "{}", e.message);
        assert!(e.hint.is_some());
    }
}
