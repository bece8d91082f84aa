//! `dockerfuse completions bash|zsh|fish` and `dockerfuse man`, generated
//! from the clap definition the parser uses (the mount flags and the
//! subcommands), so they follow every flag that is added.
//!
//! Container names come from the engine at completion time: the scripts
//! call `dockerfuse complete-containers` (the running containers' names,
//! one a line, nothing at all when the engine does not answer) for
//! `-i`/`--id` and for the first word that is not a flag.

use std::io::Write;

use clap::ValueEnum;

/// The shells with completion scripts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Shell {
    Bash,
    Zsh,
    Fish,
}

const BASH_CONTAINERS: &str = r#"
# Container names from the engine, for -i/--id and the first word.
_dockerfuse_with_containers() {
    local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}
    case "$prev" in
    -i | --id | -id)
        mapfile -t COMPREPLY < <(compgen -W "$(dockerfuse complete-containers 2>/dev/null)" -- "$cur")
        return 0
        ;;
    esac
    if [ "$COMP_CWORD" -eq 1 ] && [[ "$cur" != -* ]]; then
        mapfile -t COMPREPLY < <(compgen -W "$(dockerfuse complete-containers 2>/dev/null) SUBCOMMANDS" -- "$cur")
        return 0
    fi
    _dockerfuse "$@"
}
complete -F _dockerfuse_with_containers -o bashdefault -o default dockerfuse
"#;

const ZSH_CONTAINERS: &str = r#"
# Container names from the engine.
_dockerfuse_containers() {
    local -a names
    names=(${(f)"$(dockerfuse complete-containers 2>/dev/null)"})
    _describe -t containers 'running container' names
}
"#;

const FISH_CONTAINERS: &str = r#"
# Container names from the engine.
complete -c dockerfuse -s i -l id -x -a '(dockerfuse complete-containers 2>/dev/null)'
complete -c dockerfuse -n '__fish_is_first_arg' -f -a '(dockerfuse complete-containers 2>/dev/null)' -d 'running container'
"#;

/// The completion script for `shell`, for `cmd`, the whole command line
/// (`commands::command`).
pub(crate) fn script(shell: Shell, mut cmd: clap::Command) -> String {
    let mut out = Vec::new();
    let gen = match shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    clap_complete::generate(gen, &mut cmd, "dockerfuse", &mut out);
    let mut text = String::from_utf8_lossy(&out).into_owned();
    match shell {
        Shell::Bash => {
            let subs: Vec<String> = cmd
                .get_subcommands()
                .filter(|c| !c.is_hide_set())
                .map(|c| c.get_name().to_owned())
                .collect();
            text.push_str(&BASH_CONTAINERS.replace("SUBCOMMANDS", &subs.join(" ")));
        }
        Shell::Zsh => {
            // The container arguments complete with the engine's names.
            text = text
                .lines()
                .map(|l| {
                    let container = l.contains(":ID:_default")
                        || (l.starts_with("'::source -- ") && l.contains(":_default'"));
                    if container {
                        l.replace(":_default'", ":_dockerfuse_containers'") + "\n"
                    } else {
                        format!("{l}\n")
                    }
                })
                .collect();
            // Define the helper before the completion function runs.
            text = text.replacen(
                "#compdef dockerfuse\n",
                &format!("#compdef dockerfuse\n{ZSH_CONTAINERS}"),
                1,
            );
        }
        Shell::Fish => text.push_str(FISH_CONTAINERS),
    }
    text
}

/// `dockerfuse completions SHELL`, for `cmd`, the whole command line.
pub(crate) fn print(shell: Shell, cmd: clap::Command) -> std::io::Result<()> {
    std::io::stdout().write_all(script(shell, cmd).as_bytes())
}

/// `dockerfuse man`: the manual page (roff) of `cmd` on stdout.
pub(crate) fn man(cmd: clap::Command) -> std::io::Result<()> {
    let mut out = Vec::new();
    clap_mangen::Man::new(cmd).render(&mut out)?;
    std::io::stdout().write_all(&out)
}

/// `dockerfuse complete-containers`: the running containers' names, one a
/// line; silent when the engine cannot be reached.
pub(crate) fn containers() {
    let names = smol::block_on(async_compat::Compat::new(async {
        let engine =
            crate::engine::api::Engine::connect(&crate::engine::endpoint::EngineFlags::default())
                .await?;
        engine.running_names().await
    }));
    for n in names.unwrap_or_default() {
        println!("{n}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::commands::command;

    #[test]
    fn the_command_with_subcommands_is_consistent() {
        command().debug_assert();
    }

    #[test]
    fn scripts_complete_flags_subcommands_and_containers() {
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let s = script(shell, command());
            for want in [
                "read-only",
                "list",
                "unmount",
                "stats",
                "complete-containers 2>/dev/null",
            ] {
                assert!(s.contains(want), "{shell:?} script lacks {want}");
            }
        }
        let zsh = script(Shell::Zsh, command());
        assert!(zsh.contains(":ID:_dockerfuse_containers'"));
        assert!(zsh
            .lines()
            .any(|l| l.starts_with("'::source -- ") && l.contains(":_dockerfuse_containers'")));
    }
}
