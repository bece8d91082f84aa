//! Messages to people on stderr: `dockerfuse: <what went wrong>` and, when
//! there is something to try, a `hint:` line.
//!
//! Colour only when stderr is a terminal and `NO_COLOR` is unset (or
//! empty), as <https://no-color.org> asks; no timestamps. The log lines of
//! `-debug` and `-json` keep their own formatting (see [`crate::logging`]).

use std::io::{IsTerminal, Write};

use crate::error::Error;

/// True when stderr is a terminal and `NO_COLOR` does not forbid colour.
pub(crate) fn colour() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && std::io::stderr().is_terminal()
}

/// The lines printed for `e`, coloured or not.
pub(crate) fn render(e: &Error, colour: bool) -> String {
    render_text(&e.message, e.hint.as_deref(), colour)
}

/// The lines for a message and an optional hint (the hint may also be the
/// message's own second line, as a background process sends it).
pub(crate) fn render_text(message: &str, hint: Option<&str>, colour: bool) -> String {
    let (message, inline_hint) = match message.split_once("\nhint: ") {
        Some((m, h)) => (m, Some(h)),
        None => (message, None),
    };
    let (bold_red, cyan, reset) = if colour {
        ("\x1b[1;31m", "\x1b[36m", "\x1b[0m")
    } else {
        ("", "", "")
    };
    let mut out = format!("{bold_red}dockerfuse:{reset} {message}\n");
    if let Some(h) = hint.or(inline_hint) {
        out.push_str(&format!("{cyan}hint:{reset} {h}\n"));
    }
    out
}

/// Prints `e` to stderr.
pub(crate) fn print(e: &Error) {
    let _ = std::io::stderr().write_all(render(e, colour()).as_bytes());
}

/// Prints a message (with an optional `\nhint: ` line) to stderr.
pub(crate) fn print_text(message: &str) {
    let _ = std::io::stderr().write_all(render_text(message, None, colour()).as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_lines_without_colour() {
        let e = Error::setup("no such container: web").with_hint("running containers: db");
        assert_eq!(
            render(&e, false),
            "dockerfuse: no such container: web\nhint: running containers: db\n"
        );
        assert_eq!(
            render(&Error::setup("x"), false),
            "dockerfuse: x\n",
            "no hint line when there is none"
        );
    }

    #[test]
    fn colour_only_adds_escapes() {
        let e = Error::setup("x").with_hint("y");
        let c = render(&e, true);
        assert!(c.contains('\x1b'));
        let stripped: String = c
            .split('\x1b')
            .enumerate()
            .map(|(i, s)| {
                if i == 0 {
                    s
                } else {
                    s.split_once('m').map_or("", |x| x.1)
                }
            })
            .collect();
        assert_eq!(stripped, render(&e, false));
    }

    #[test]
    fn a_hint_sent_inline_gets_its_own_line() {
        assert_eq!(
            render_text("busy\nhint: unmount it", None, false),
            "dockerfuse: busy\nhint: unmount it\n"
        );
    }
}
