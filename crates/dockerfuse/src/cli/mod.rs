//! The command line: what the user typed, in each of the binary's faces.
//!
//! * [`flags`] — the mount flags (classic single-dash and `--long` forms);
//! * [`commands`] — the subcommands next to mounting (`list`, `unmount`,
//!   `stats`, `install-plugin`...), and [`completions`] — shell
//!   completions and the man page, generated from the same definition;
//! * [`plugin`] — the docker CLI plugin face (`docker mount`);
//! * [`helper`] — the mount helper face (`mount -t fuse.dockerfuse`,
//!   `/etc/fstab`): `-o` options turned into flags.
//!
//! Dependencies point one way: `flags` needs none of the others,
//! `helper` and `plugin` build on `flags`, `commands` on `completions`.

pub(crate) mod commands;
pub(crate) mod completions;
pub(crate) mod flags;
pub(crate) mod helper;
pub(crate) mod plugin;
