//! Which engine, and how to reach it: the endpoint, chosen the way the
//! docker CLI chooses it (see [`resolve`]): `-H`, else DOCKER_HOST
//! (unix://, tcp://, with DOCKER_TLS_VERIFY and DOCKER_CERT_PATH), else
//! the context named by DOCKER_CONTEXT, else the `currentContext` of
//! `~/.docker/config.json`, else the local socket.
//!
//! bollard's own `connect_with_defaults` knows nothing of contexts and
//! reads the TLS environment even for a context, so the endpoint is
//! resolved here (pure functions, unit-tested) and bollard only connects
//! ([`api`](super::api)).

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Where the engine is and how to reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Endpoint {
    /// `unix:///path` or `tcp://host:port`.
    pub host: String,
    /// Client TLS material; `None` for plain HTTP or a unix socket.
    pub tls: Option<TlsFiles>,
    /// What chose this endpoint, for messages: "-H", "DOCKER_HOST",
    /// "context NAME (DOCKER_CONTEXT)", "default socket"...
    pub source: String,
}

/// The CA that signs the engine's certificate and the client's own pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TlsFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TlsFiles {
    fn in_dir(dir: &Path) -> TlsFiles {
        TlsFiles {
            ca: dir.join("ca.pem"),
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
        }
    }
}

pub(crate) const DEFAULT_HOST: &str = "unix:///var/run/docker.sock";

/// The docker CLI's global flags that choose the engine (all optional).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct EngineFlags {
    /// `-H`/`--host`.
    pub host: Option<String>,
    /// `--context`/`-c`.
    pub context: Option<String>,
    /// `--config`: the CLI's configuration directory.
    pub config: Option<PathBuf>,
    /// `--tlsverify` (`Some(false)`: `--tlsverify=false`).
    pub tls_verify: Option<bool>,
    /// `--tlscacert`, `--tlscert`, `--tlskey`.
    pub tls_ca: Option<PathBuf>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
}

impl EngineFlags {
    /// Only `-H` (and the environment).
    #[cfg(test)]
    pub(crate) fn host(h: Option<&str>) -> EngineFlags {
        EngineFlags {
            host: h.map(str::to_owned),
            ..EngineFlags::default()
        }
    }
}

/// The docker CLI's configuration directory: `$DOCKER_CONFIG`, else
/// `$HOME/.docker`.
fn config_dir(env: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    if let Some(d) = env("DOCKER_CONFIG") {
        return Some(PathBuf::from(d));
    }
    env("HOME").map(|h| Path::new(&h).join(".docker"))
}

/// TLS for a host given by `-H` or DOCKER_HOST: on when `--tlsverify` or
/// DOCKER_TLS_VERIFY is set (and not empty, as for the CLI) or the scheme
/// is https://; the files come from `--tlscacert`/`--tlscert`/`--tlskey`,
/// else DOCKER_CERT_PATH, else the config directory.
fn env_tls(
    host: &str,
    flags: &EngineFlags,
    env: &dyn Fn(&str) -> Option<String>,
) -> Option<TlsFiles> {
    let tcp = host.starts_with("tcp://") || host.starts_with("https://");
    let verify = flags
        .tls_verify
        .unwrap_or_else(|| env("DOCKER_TLS_VERIFY").is_some());
    if !tcp || (!verify && !host.starts_with("https://")) {
        return None;
    }
    let dir = env("DOCKER_CERT_PATH")
        .map(PathBuf::from)
        .or_else(|| config_dir(env))
        .unwrap_or_else(|| PathBuf::from(".docker"));
    let d = TlsFiles::in_dir(&dir);
    Some(TlsFiles {
        ca: flags.tls_ca.clone().unwrap_or(d.ca),
        cert: flags.tls_cert.clone().unwrap_or(d.cert),
        key: flags.tls_key.clone().unwrap_or(d.key),
    })
}

/// Lowercase hex sha256 of a context name: the directory the CLI keeps
/// the context in.
pub(crate) fn context_dir_name(name: &str) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, name.as_bytes());
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// Picks the engine like the docker CLI: `--context`, then `-H`, then
/// DOCKER_HOST, DOCKER_CONTEXT, `currentContext` in config.json, and last
/// the default socket.
/// `env` reads an environment variable (empty counts as unset).
pub(crate) fn resolve(
    flags: &EngineFlags,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Endpoint> {
    let config = flags.config.as_ref().map(|c| c.display().to_string());
    let env = |k: &str| match (k, &config) {
        ("DOCKER_CONFIG", Some(c)) => Some(c.clone()),
        _ => env(k).filter(|v| !v.is_empty()),
    };
    let flag = flags.host.as_deref().filter(|h| !h.is_empty());
    let context = flags.context.as_deref().filter(|c| !c.is_empty());
    if let (Some(_), Some(_)) = (flag, context) {
        return Err(
            Error::setup("conflicting options: cannot specify both --host and --context")
                .with_hint("give one of them"),
        );
    }
    if let Some(h) = flag {
        return Ok(Endpoint {
            host: h.to_owned(),
            tls: env_tls(h, flags, &env),
            source: "-H".into(),
        });
    }
    // The default context's endpoint is DOCKER_HOST when it is set.
    if context.is_none_or(|c| c == "default") {
        if let Some(h) = env("DOCKER_HOST") {
            return Ok(Endpoint {
                tls: env_tls(&h, flags, &env),
                host: h,
                source: "DOCKER_HOST".into(),
            });
        }
    }
    let dir = config_dir(&env);
    let (name, from) = match (context, env("DOCKER_CONTEXT")) {
        (Some(n), _) => (Some(n.to_owned()), "--context"),
        (None, Some(n)) => (Some(n), "DOCKER_CONTEXT"),
        (None, None) => (
            match dir.as_deref() {
                Some(d) => current_context(d)?,
                None => None,
            },
            "currentContext in config.json",
        ),
    };
    match name {
        Some(n) if n != "default" => {
            let dir = dir.ok_or_else(|| {
                Error::setup(format!(
                    "docker context {n} ({from}): no HOME or DOCKER_CONFIG to find it in"
                ))
            })?;
            read_context(&dir, &n, from)
        }
        _ => Ok(Endpoint {
            host: DEFAULT_HOST.into(),
            tls: None,
            source: "the default socket".into(),
        }),
    }
}

/// `currentContext` of `DIR/config.json`, `Ok(None)` when there is none.
fn current_context(dir: &Path) -> Result<Option<String>> {
    let path = dir.join("config.json");
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::setup(format!("cannot read {}: {e}", path.display()))),
    };
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::setup(format!("{} is not valid JSON: {e}", path.display())))?;
    Ok(v.get("currentContext")
        .and_then(|c| c.as_str())
        .filter(|c| !c.is_empty())
        .map(str::to_owned))
}

/// Reads context `name` from the CLI's store under `dir`:
/// `contexts/meta/<sha256>/meta.json` holds `Endpoints.docker.Host`,
/// `contexts/tls/<sha256>/docker/{ca,cert,key}.pem` the TLS material.
fn read_context(dir: &Path, name: &str, from: &str) -> Result<Endpoint> {
    let hash = context_dir_name(name);
    let meta = dir.join("contexts/meta").join(&hash).join("meta.json");
    let text = std::fs::read_to_string(&meta).map_err(|e| {
        Error::setup(format!(
            "docker context {name} ({from}) not found: cannot read {}: {e}",
            meta.display()
        ))
        .with_hint("docker context ls lists the contexts")
    })?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::setup(format!("{} is not valid JSON: {e}", meta.display())))?;
    let ep = &v["Endpoints"]["docker"];
    let host = ep["Host"]
        .as_str()
        .filter(|h| !h.is_empty())
        .unwrap_or(DEFAULT_HOST)
        .to_owned();
    if ep["SkipTLSVerify"].as_bool() == Some(true) {
        return Err(Error::setup(format!(
            "docker context {name} ({from}) skips TLS verification, which dockerfuse does not do: \
             give it a CA (docker context update {name} --docker ca=...)"
        )));
    }
    let tls_dir = dir.join("contexts/tls").join(&hash).join("docker");
    let tls = (host.starts_with("tcp://") || host.starts_with("https://"))
        .then(|| TlsFiles::in_dir(&tls_dir))
        .filter(|t| t.ca.exists() || t.cert.exists() || host.starts_with("https://"));
    Ok(Endpoint {
        host,
        tls,
        source: format!("docker context {name} ({from})"),
    })
}

pub(crate) fn os_env(k: &str) -> Option<String> {
    std::env::var(k).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// An environment made of `pairs`, with HOME set to `home`.
    fn env_of<'a>(
        home: &'a Path,
        pairs: &'a [(&'a str, &'a str)],
    ) -> impl Fn(&str) -> Option<String> + 'a {
        let mut m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        m.entry("HOME".into())
            .or_insert_with(|| home.display().to_string());
        move |k| m.get(k).cloned()
    }

    /// Writes a context the way `docker context create` does.
    fn make_context(home: &Path, name: &str, host: &str, tls: bool) {
        let hash = context_dir_name(name);
        let meta = home.join(".docker/contexts/meta").join(&hash);
        std::fs::create_dir_all(&meta).unwrap();
        std::fs::write(
            meta.join("meta.json"),
            format!(
                r#"{{"Name":"{name}","Metadata":{{}},"Endpoints":{{"docker":{{"Host":"{host}","SkipTLSVerify":false}}}}}}"#
            ),
        )
        .unwrap();
        if tls {
            let t = home.join(".docker/contexts/tls").join(&hash).join("docker");
            std::fs::create_dir_all(&t).unwrap();
            for f in ["ca.pem", "cert.pem", "key.pem"] {
                std::fs::write(t.join(f), "x").unwrap();
            }
        }
    }

    fn set_current(home: &Path, name: &str) {
        std::fs::create_dir_all(home.join(".docker")).unwrap();
        std::fs::write(
            home.join(".docker/config.json"),
            format!(r#"{{"auths":{{}},"currentContext":"{name}"}}"#),
        )
        .unwrap();
    }

    #[test]
    fn context_dir_is_the_sha256_of_the_name() {
        // echo -n default | sha256sum
        assert_eq!(
            context_dir_name("default"),
            "37a8eec1ce19687d132fe29051dca629d164e2c4958ba141d5f4133a33f0688f"
        );
    }

    #[test]
    fn nothing_set_gives_the_default_socket() {
        let home = tempfile::tempdir().unwrap();
        let ep = resolve(&EngineFlags::default(), &env_of(home.path(), &[])).unwrap();
        assert_eq!(ep.host, DEFAULT_HOST);
        assert_eq!(ep.tls, None);
    }

    #[test]
    fn precedence_flag_host_context_current() {
        let home = tempfile::tempdir().unwrap();
        let h = home.path();
        make_context(h, "ctx-env", "tcp://10.0.0.1:2376", false);
        make_context(h, "ctx-cur", "unix:///run/cur.sock", false);
        set_current(h, "ctx-cur");
        let all = [
            ("DOCKER_HOST", "unix:///run/env.sock"),
            ("DOCKER_CONTEXT", "ctx-env"),
        ];
        let ep = resolve(&EngineFlags::host(Some("tcp://flag:1")), &env_of(h, &all)).unwrap();
        assert_eq!(
            (ep.host.as_str(), ep.source.as_str()),
            ("tcp://flag:1", "-H")
        );
        let ep = resolve(&EngineFlags::default(), &env_of(h, &all)).unwrap();
        assert_eq!(ep.host, "unix:///run/env.sock");
        let ep = resolve(&EngineFlags::default(), &env_of(h, &all[1..])).unwrap();
        assert_eq!(ep.host, "tcp://10.0.0.1:2376");
        assert!(ep.source.contains("ctx-env") && ep.source.contains("DOCKER_CONTEXT"));
        let ep = resolve(&EngineFlags::default(), &env_of(h, &[])).unwrap();
        assert_eq!(ep.host, "unix:///run/cur.sock");
        assert!(ep.source.contains("currentContext"));
        // Empty values count as unset, as for the CLI.
        let ep = resolve(
            &EngineFlags::host(Some("")),
            &env_of(h, &[("DOCKER_HOST", ""), ("DOCKER_CONTEXT", "")]),
        )
        .unwrap();
        assert_eq!(ep.host, "unix:///run/cur.sock");
        // "default" is the default socket even when currentContext says otherwise.
        let ep = resolve(
            &EngineFlags::default(),
            &env_of(h, &[("DOCKER_CONTEXT", "default")]),
        )
        .unwrap();
        assert_eq!(ep.host, DEFAULT_HOST);
    }

    #[test]
    fn the_context_flag_beats_everything_and_conflicts_with_host() {
        let home = tempfile::tempdir().unwrap();
        let h = home.path();
        make_context(h, "flagged", "tcp://10.9.9.9:2375", false);
        make_context(h, "ctx-env", "tcp://10.0.0.1:2376", false);
        let all = [
            ("DOCKER_HOST", "unix:///run/env.sock"),
            ("DOCKER_CONTEXT", "ctx-env"),
        ];
        let flags = EngineFlags {
            context: Some("flagged".into()),
            ..EngineFlags::default()
        };
        let ep = resolve(&flags, &env_of(h, &all)).unwrap();
        assert_eq!(ep.host, "tcp://10.9.9.9:2375");
        assert!(ep.source.contains("--context"), "{}", ep.source);
        let both = EngineFlags {
            host: Some("tcp://x:1".into()),
            ..flags.clone()
        };
        let e = resolve(&both, &env_of(h, &all)).unwrap_err();
        assert!(e.message.contains("conflicting"), "{}", e.message);
        // --context default is DOCKER_HOST when set, else the socket.
        let default = EngineFlags {
            context: Some("default".into()),
            ..EngineFlags::default()
        };
        assert_eq!(
            resolve(&default, &env_of(h, &all)).unwrap().host,
            "unix:///run/env.sock"
        );
        assert_eq!(
            resolve(&default, &env_of(h, &all[1..])).unwrap().host,
            DEFAULT_HOST
        );
    }

    #[test]
    fn config_and_tls_flags_override_the_environment() {
        let home = tempfile::tempdir().unwrap();
        let other = tempfile::tempdir().unwrap();
        make_context(other.path(), "there", "tcp://5.6.7.8:9", false);
        let flags = EngineFlags {
            config: Some(other.path().join(".docker")),
            ..EngineFlags::default()
        };
        let env = env_of(home.path(), &[("DOCKER_CONTEXT", "there")]);
        assert_eq!(resolve(&flags, &env).unwrap().host, "tcp://5.6.7.8:9");
        let flags = EngineFlags {
            host: Some("tcp://h:2376".into()),
            tls_verify: Some(true),
            tls_ca: Some("/c/ca".into()),
            ..EngineFlags::default()
        };
        let ep = resolve(&flags, &env_of(home.path(), &[("DOCKER_CERT_PATH", "/d")])).unwrap();
        let tls = ep.tls.unwrap();
        assert_eq!(tls.ca, Path::new("/c/ca"));
        assert_eq!(tls.cert, Path::new("/d/cert.pem"));
        let off = EngineFlags {
            tls_verify: Some(false),
            ..flags
        };
        let env = env_of(home.path(), &[("DOCKER_TLS_VERIFY", "1")]);
        assert_eq!(resolve(&off, &env).unwrap().tls, None);
    }

    #[test]
    fn context_tls_material_comes_from_the_store() {
        let home = tempfile::tempdir().unwrap();
        let h = home.path();
        make_context(h, "secure", "tcp://127.0.0.1:2376", true);
        // The environment's TLS settings do not apply to a context.
        let env = env_of(
            h,
            &[
                ("DOCKER_CONTEXT", "secure"),
                ("DOCKER_TLS_VERIFY", "1"),
                ("DOCKER_CERT_PATH", "/elsewhere"),
            ],
        );
        let ep = resolve(&EngineFlags::default(), &env).unwrap();
        let dir = h
            .join(".docker/contexts/tls")
            .join(context_dir_name("secure"))
            .join("docker");
        assert_eq!(ep.tls, Some(TlsFiles::in_dir(&dir)));
        make_context(h, "plain", "tcp://127.0.0.1:2375", false);
        let ep = resolve(
            &EngineFlags::default(),
            &env_of(h, &[("DOCKER_CONTEXT", "plain")]),
        )
        .unwrap();
        assert_eq!(ep.tls, None);
    }

    #[test]
    fn docker_config_moves_the_store() {
        let home = tempfile::tempdir().unwrap();
        let other = tempfile::tempdir().unwrap();
        make_context(other.path(), "moved", "tcp://1.2.3.4:5", false);
        // make_context writes below DIR/.docker: point DOCKER_CONFIG there.
        let cfg = other.path().join(".docker");
        let cfg = cfg.to_str().unwrap();
        let ep = resolve(
            &EngineFlags::default(),
            &env_of(
                home.path(),
                &[("DOCKER_CONFIG", cfg), ("DOCKER_CONTEXT", "moved")],
            ),
        )
        .unwrap();
        assert_eq!(ep.host, "tcp://1.2.3.4:5");
    }

    #[test]
    fn env_tls_for_host_and_flag() {
        let home = tempfile::tempdir().unwrap();
        let h = home.path();
        let env = env_of(
            h,
            &[
                ("DOCKER_HOST", "tcp://e:2376"),
                ("DOCKER_TLS_VERIFY", "1"),
                ("DOCKER_CERT_PATH", "/certs"),
            ],
        );
        let ep = resolve(&EngineFlags::default(), &env).unwrap();
        assert_eq!(ep.tls, Some(TlsFiles::in_dir(Path::new("/certs"))));
        let ep = resolve(&EngineFlags::host(Some("tcp://f:2376")), &env).unwrap();
        assert_eq!(ep.tls, Some(TlsFiles::in_dir(Path::new("/certs"))));
        // Without DOCKER_CERT_PATH: ~/.docker.
        let ep = resolve(
            &EngineFlags::default(),
            &env_of(
                h,
                &[("DOCKER_HOST", "tcp://e:2376"), ("DOCKER_TLS_VERIFY", "1")],
            ),
        )
        .unwrap();
        assert_eq!(ep.tls, Some(TlsFiles::in_dir(&h.join(".docker"))));
        // No TLS without DOCKER_TLS_VERIFY, nor for a unix socket.
        let ep = resolve(
            &EngineFlags::default(),
            &env_of(h, &[("DOCKER_HOST", "tcp://e:2375")]),
        )
        .unwrap();
        assert_eq!(ep.tls, None);
        let ep = resolve(&EngineFlags::host(Some("unix:///x.sock")), &env).unwrap();
        assert_eq!(ep.tls, None);
    }

    #[test]
    fn missing_context_names_the_file_tried() {
        let home = tempfile::tempdir().unwrap();
        let e = resolve(
            &EngineFlags::default(),
            &env_of(home.path(), &[("DOCKER_CONTEXT", "nope")]),
        )
        .unwrap_err();
        assert!(
            e.message.contains("nope") && e.message.contains(&context_dir_name("nope")),
            "{}",
            e.message
        );
        set_current(home.path(), "gone");
        let e = resolve(&EngineFlags::default(), &env_of(home.path(), &[])).unwrap_err();
        assert!(
            e.message.contains("gone") && e.message.contains("currentContext"),
            "{}",
            e.message
        );
    }
}
