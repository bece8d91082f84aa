//! The `dockerfuse` command; everything lives in the library.
//!
//! One binary, several faces: the docker CLI plugin (`docker mount`), a
//! subcommand (`dockerfuse install-plugin`...), or a mount.

fn main() {
    dockerfuse::run()
}
