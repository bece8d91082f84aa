//! The kernel's operations on the core, one file per family, each an
//! `impl Core` block: [`names`] (lookup and what changes a directory),
//! [`attrs`], [`opens`] (open and create), [`data`] (an open file's
//! reads, writes and release), [`dirs`] and [`xattrs`]. The state they
//! share and the one send path ([`super::Outbox`]) stay in the core's
//! `mod.rs`.

mod attrs;
mod data;
mod dirs;
mod names;
mod opens;
mod xattrs;

#[cfg(test)]
pub(in crate::fs) use data::suidgid_cleared;
