//! Rewriting of absolute symlink targets between the container's view
//! and the host's (`--rewrite-absolute-links`).
//!
//! By default targets are shown as they are (so an absolute one points
//! into the host's tree when followed); with the option, a target under the
//! mounted directory is shown under the mount point instead, and a symlink
//! created through the mount is stored in the container's terms. Nothing is
//! ever resolved on the host side: only the text changes.

/// The two roots a target is translated between.
#[derive(Clone, Debug)]
pub(crate) struct LinkRewrite {
    /// The mounted directory in the container (`--path`), e.g. `/`.
    pub(crate) root: Vec<u8>,
    /// The mount point on the host (absolute).
    pub(crate) mountpoint: Vec<u8>,
}

/// `rest` when `path` is `prefix` or lies under it (component-wise).
fn under<'a>(path: &'a [u8], prefix: &[u8]) -> Option<&'a [u8]> {
    let prefix = prefix.strip_suffix(b"/").unwrap_or(prefix);
    let rest = path.strip_prefix(prefix)?;
    (rest.is_empty() || rest[0] == b'/').then_some(rest)
}

impl LinkRewrite {
    /// Container target -> what the host is shown.
    pub(crate) fn to_host(&self, target: &[u8]) -> Option<Vec<u8>> {
        if !target.starts_with(b"/") {
            return None;
        }
        let rest = under(target, &self.root)?;
        let mut out = self
            .mountpoint
            .strip_suffix(b"/")
            .unwrap_or(&self.mountpoint)
            .to_vec();
        out.extend_from_slice(if rest.is_empty() { b"/" } else { rest });
        Some(out)
    }

    /// Host target -> what the container stores.
    pub(crate) fn to_container(&self, target: &[u8]) -> Option<Vec<u8>> {
        if !target.starts_with(b"/") {
            return None;
        }
        let rest = under(target, &self.mountpoint)?;
        let mut out = self.root.strip_suffix(b"/").unwrap_or(&self.root).to_vec();
        out.extend_from_slice(rest);
        if out.is_empty() {
            out.push(b'/');
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_links_are_rewritten_only_under_the_root() {
        let l = LinkRewrite {
            root: b"/".to_vec(),
            mountpoint: b"/home/u/mnt".to_vec(),
        };
        assert_eq!(
            l.to_host(b"/etc/passwd").as_deref(),
            Some(&b"/home/u/mnt/etc/passwd"[..])
        );
        assert_eq!(l.to_host(b"/").as_deref(), Some(&b"/home/u/mnt/"[..]));
        assert_eq!(l.to_host(b"rel/x"), None);
        assert_eq!(
            l.to_container(b"/home/u/mnt/etc").as_deref(),
            Some(&b"/etc"[..])
        );
        assert_eq!(l.to_container(b"/home/u/mntx/etc"), None);
        assert_eq!(l.to_container(b"/home/u/mnt").as_deref(), Some(&b"/"[..]));
        assert_eq!(l.to_container(b"rel/x"), None);
        let sub = LinkRewrite {
            root: b"/srv/app".to_vec(),
            mountpoint: b"/m".to_vec(),
        };
        assert_eq!(
            sub.to_host(b"/srv/app/conf").as_deref(),
            Some(&b"/m/conf"[..])
        );
        assert_eq!(sub.to_host(b"/srv/application"), None);
        assert_eq!(
            sub.to_host(b"/etc/x"),
            None,
            "outside the mounted tree: unchanged"
        );
        assert_eq!(
            sub.to_container(b"/m/conf").as_deref(),
            Some(&b"/srv/app/conf"[..])
        );
    }

    #[test]
    fn a_round_trip_gives_back_the_container_target() {
        let l = LinkRewrite {
            root: b"/srv".to_vec(),
            mountpoint: b"/mnt/c".to_vec(),
        };
        for t in [&b"/srv"[..], b"/srv/a/b", b"/srv/x/"] {
            let host = l.to_host(t).unwrap();
            let back = l.to_container(&host).unwrap();
            assert_eq!(
                back.strip_suffix(b"/").unwrap_or(&back),
                t.strip_suffix(b"/").unwrap_or(t)
            );
        }
    }
}
