//! Extended attributes: get and list (answered on the host for nodes
//! known to have none), set and remove.

use super::super::*;

/// The answer for an xattr of a node known to have none: ENODATA, but
/// EOPNOTSUPP for the SELinux label. That name reaches us only when the
/// host runs without SELinux (its security module answers it otherwise),
/// where a container's label means nothing to the host; GNU `ls -l`
/// asks for it on every file, and stops asking for the rest of the mount
/// once told it is not supported (as for a file system without labels).
/// A label set through the mount, or found by the container, is answered
/// as any xattr.
fn no_such_xattr(name: &[u8]) -> Errno {
    match name {
        b"security.selinux" => Errno::EOPNOTSUPP,
        _ => Errno::ENODATA,
    }
}

impl<T: Transport, B: Send + Sync + 'static> Core<T, B> {
    pub(crate) fn getxattr(
        &self,
        who: &Who,
        NodeId(node): NodeId,
        name: &[u8],
        size: u32,
        cb: XattrCb,
    ) {
        if self.no_xattrs.known_empty(node) {
            return cb(Err(no_such_xattr(name).into()));
        }
        let name = name.into();
        self.call_xattr(who, Request::GetXattr { node, name, size }, size, cb)
    }

    pub(crate) fn listxattr(&self, who: &Who, NodeId(node): NodeId, size: u32, cb: XattrCb) {
        if self.no_xattrs.known_empty(node) {
            return cb(Ok(if size == 0 {
                Xattr::Size(0)
            } else {
                Xattr::Data(&[])
            }));
        }
        self.call_xattr(who, Request::ListXattr { node, size }, size, cb)
    }

    /// getxattr/listxattr: a value that does not fit `size` is ERANGE.
    pub(in crate::fs) fn call_xattr(&self, who: &Who, req: Request<'_>, size: u32, cb: XattrCb) {
        self.out.send(
            who,
            &req,
            Box::new(move |r| match r {
                Ok(Response::XattrSize(n)) => cb(Ok(Xattr::Size(n))),
                Ok(Response::Data(d)) if d.len() <= size as usize => cb(Ok(Xattr::Data(&d))),
                Ok(Response::Data(_)) => cb(Err(Errno::ERANGE.into())),
                Ok(r) => cb(Err(unexpected(r))),
                Err(e) => cb(Err(e)),
            }),
        );
    }

    pub(crate) fn setxattr(
        &self,
        who: &Who,
        NodeId(node): NodeId,
        name: &[u8],
        value: &[u8],
        flags: i32,
        cb: Cb<()>,
    ) {
        // GNU cp -a's trivial ACL on a file created behind: a chmod, when
        // the file has no ACL of its own (its directory, made, has no
        // xattrs, so no default ACL). (Were the node dropped meanwhile,
        // the chmod waits: the same.)
        let plain_dir = |dir: u64| !self.pending.is_pending(dir) && self.no_xattrs.known_empty(dir);
        let acl = (name == b"system.posix_acl_access" && flags == 0 && self.opts.pipeline)
            .then(|| made::trivial_acl(value))
            .flatten()
            .filter(|_| self.made.parent(node).is_some_and(plain_dir));
        if let Some((perms, a)) = acl.zip(self.made.attr(node)) {
            let set = SetAttr {
                mode: Some((a.mode & 0o7000) | perms),
                ..Default::default()
            };
            let cb: Cb<(Attr, Duration)> = Box::new(move |r| cb(r.map(|_| ())));
            match self.setattr_behind(node, None, &set, cb) {
                None => return,
                Some(cb) => {
                    return self.call_attr(
                        who,
                        Request::SetAttr {
                            node,
                            fh: None,
                            attr: set,
                        },
                        node,
                        cb,
                    )
                }
            }
        }
        self.no_xattrs.forget(node);
        self.made.forget(node);
        // The ctime changes.
        let cb = self.touching(node, cb);
        let req = Request::SetXattr {
            node,
            name: name.into(),
            value: value.into(),
            flags,
        };
        self.call(who, req, replies::ok, cb)
    }

    pub(crate) fn removexattr(&self, who: &Who, NodeId(node): NodeId, name: &[u8], cb: Cb<()>) {
        self.no_xattrs.forget(node);
        self.made.forget(node);
        let cb = self.touching(node, cb);
        let name = name.into();
        self.call(who, Request::RemoveXattr { node, name }, replies::ok, cb)
    }
}
