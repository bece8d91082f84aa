//! The real satellite as a child process serving a temp dir over pipes,
//! with a [`Core`] wired to it, as a mount has one over `docker exec`,
//! change feed included (its notifications go nowhere: the model keeps
//! no kernel cache, but the core's policies follow the feed as a
//! mount's do).

use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use dockerfuse_proto::{HostHello, Request, HELLO_ID, MAX_IO, PROTOCOL_VERSION};
use dockerfuse_testkit::{retry_busy, Satellite, Spawn};

use crate::fs::{Core, Options};
use crate::kernel::feed::{Feed, Kernel};
use crate::satellites::embedded::Arch;
use crate::transport::rpc::{Rpc, Started};

/// How long a request may wait on a silent satellite.
const STALL: Duration = Duration::from_secs(30);

/// The embedded satellite for this host's architecture, written once per
/// test process next to the test binary (same content is reused).
fn satellite() -> &'static Satellite {
    static SATELLITE: OnceLock<Satellite> = OnceLock::new();
    SATELLITE.get_or_init(|| {
        let arch = Arch::parse(std::env::consts::ARCH).expect("a host arch with a satellite");
        let bin = arch
            .binary()
            .expect("this build embeds a satellite for the host arch");
        Satellite::written_out(&format!("model-satellite-{arch}"), bin)
    })
}

/// A satellite serving one directory, and the core that talks to it.
pub(super) struct Served {
    pub(super) core: Core<Rpc>,
    _feed: std::sync::Arc<Feed>,
    rpc: Rpc,
    child: smol::process::Child,
}

impl Served {
    /// Starts a satellite serving `root`, with RLIMIT_NOFILE at `nofile`
    /// when given (the satellite lets nodes hold half of it), and a core
    /// that performs requests as their caller when `per_caller`.
    pub(super) fn start(root: &Path, nofile: Option<u64>, per_caller: bool) -> Served {
        let mut child = spawn(root, nofile);
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        let Started {
            rpc, hello, tasks, ..
        } = Rpc::start_bytes(stdout, stdin, STALL);
        std::thread::Builder::new()
            .name("model-rpc".into())
            .spawn(move || smol::block_on(tasks))
            .expect("start the rpc thread");
        let got = smol::block_on(smol::future::or(async { hello.recv().await.ok() }, async {
            smol::Timer::after(Duration::from_secs(20)).await;
            None
        }));
        let h = got.expect("the satellite says hello");
        crate::satellites::launch::check_hello(&h).expect("an acceptable hello");
        rpc.send_frame(
            HELLO_ID,
            &Request::Hello(HostHello {
                protocol: PROTOCOL_VERSION,
                version: env!("CARGO_PKG_VERSION").into(),
                max_io: MAX_IO,
            }),
        )
        .expect("send the hello");
        let core = Core::new(
            rpc.clone(),
            Options {
                ttl: Duration::from_secs(1),
                fixed_ttl: false,
                writeback: false,
                links: None,
                per_caller,
                open_small: true,
                write_behind: true,
                host_attrs: true,
                lazy_open: true,
                open_read_dir: true,
                stream: true,
                pipeline: !per_caller,
                kernel_acls: false,
                symlink_new: true,
                close_behind: false,
                legacy_flags: None,
            },
        );
        let feed = Feed::enable_on(&core, &rpc, None).expect("the satellite's change feed starts");
        feed.start(NoKernel).expect("start the notifier thread");
        Served {
            core,
            _feed: feed,
            rpc,
            child,
        }
    }
}

/// A kernel without caches: every notification succeeds.
struct NoKernel;

impl Kernel for NoKernel {
    fn inval_entry(&self, _: u64, _: &[u8]) -> std::io::Result<()> {
        Ok(())
    }
    fn inval_inode(&self, _: u64, _: i64, _: i64) -> std::io::Result<()> {
        Ok(())
    }
    fn delete(&self, _: u64, _: u64, _: &[u8]) -> std::io::Result<()> {
        Ok(())
    }
}

/// Starts the satellite serving `root` (the shared harness's command,
/// spawned by smol so that its pipes are async).
fn spawn(root: &Path, nofile: Option<u64>) -> smol::process::Child {
    let how = Spawn {
        nofile,
        args: &[],
        quiet: true,
    };
    retry_busy(|| {
        // (smol's command sets the standard streams itself)
        smol::process::Command::from(satellite().command(root, &how))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
    })
}

impl Served {
    /// The satellite's process id.
    pub(super) fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        self.rpc.shutdown();
        let _ = self.child.kill();
    }
}
