#!/usr/bin/env bash
# Offline checks of the Nix side of dockerfuse, for machines that cannot
# evaluate nixpkgs or build with Nix (no network, Debian's nix-bin 2.8):
#
#  (a) every *.nix file in the repository parses (`nix-instantiate --parse`,
#      which also rejects undefined variables);
#  (b) flake.lock is a valid version-7 lock whose nodes match the inputs
#      flake.nix declares and the pinned revisions below (copied from
#      shared/nix-facts.md, and compared with it when it is present); the
#      alpine tarballs nix/images.nix fetches are the pinned ones;
#  (c) nix/packages.nix builds the satellites build.rs builds, with the
#      nightly satellite-toolchain.txt pins; nix/module.nix maps its
#      options to the CLI flags it should, and, with
#      DOCKERFUSE=/path/to/dockerfuse set, every --flag it passes appears in
#      `$DOCKERFUSE --help`;
#  (d) nix/vm-matrix.txt, the one list of what the VM test provides: it
#      parses, its two readers (nix/vm-matrix.nix for Nix, nix/vm-matrix.sh
#      for CI) agree, every scenario in it exists and every scenario
#      run-matrix.sh knows is in it, every binary it names is on this host;
#      nix/vm-cli.nix takes its scenarios and environment from it (shown
#      by evaluating vm-cli.nix against a stub nixpkgs with the real list
#      and with a changed copy); the VM tests' Python scripts parse;
#      no VM test's node sets an option that nixpkgs' qemu-vm.nix overrides
#      in a test VM (fileSystems and the like: such a setting is dropped),
#      shown catching a copy of vm-fstab.nix that does; vm-cli.nix declares
#      the users the user scenarios name, as they need them (the docker
#      group, subordinate ids), enables rootless Docker and Podman and
#      checks the setuid wrappers they use (shown catching a copy that
#      drops the group and the ids);
#  (e) the flake stops with a plain sentence on a Nix older than the one
#      the READMEs name; shellcheck on the scripts the VM test and CI share.
#
# Usage: [DOCKERFUSE=target/debug/dockerfuse] nix/check-offline.sh
# Prints one line per check and "N passed, N failed"; exits 1 on failure.
set -uo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root" || exit 2

pass=0
fail=0
ok() {
  pass=$((pass + 1))
  printf 'ok   %s\n' "$*"
}
bad() {
  fail=$((fail + 1))
  printf 'FAIL %s\n' "$*"
}
# expect DESCRIPTION ACTUAL EXPECTED
expect() {
  if [ "$2" = "$3" ]; then
    ok "$1"
  else
    bad "$1: got '$2', want '$3'"
  fi
}

# need COMMAND DEBIAN-PACKAGE: install the package with apt when missing.
need() {
  command -v "$1" >/dev/null 2>&1 && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing Debian package $2 (for $1)" >&2
    apt-get update -qq >/dev/null 2>&1
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null 2>&1
  fi
  if ! command -v "$1" >/dev/null 2>&1; then
    echo "error: $1 not found and Debian package $2 could not be installed" >&2
    exit 2
  fi
}
need nix-instantiate nix-bin
need jq jq
need shellcheck shellcheck
need python3 python3

# nix-instantiate wants a state directory; keep it out of the way (and
# writable for non-root users).
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if [ "$(id -u)" != 0 ]; then
  export NIX_STATE_DIR="$tmp/state" NIX_LOG_DIR="$tmp/log"
fi

# ---------------------------------------------------------------------------
echo "== (a) every .nix file parses"

mapfile -d '' nix_files < <(
  find . \( -name .git -o -name target \) -prune -o -type f -name '*.nix' -print0 | sort -z
)
if [ "${#nix_files[@]}" -eq 0 ]; then
  bad "no .nix files found under $root"
fi
for f in "${nix_files[@]}"; do
  f=${f#./}
  if out=$(nix-instantiate --parse "$f" 2>&1 >/dev/null); then
    ok "parse $f"
  else
    bad "parse $f"
    printf '%s\n' "$out" | sed 's/^/       /'
  fi
done

# ---------------------------------------------------------------------------
echo "== (b) flake.lock"

# The pinned inputs: name, original URL, rev, narHash, lastModified. Source:
# shared/nix-facts.md ("flake.lock nodes"). Update both together.
declare -A want_url want_rev want_nar want_mod
while read -r name url rev nar mod; do
  want_url[$name]=$url want_rev[$name]=$rev want_nar[$name]=$nar want_mod[$name]=$mod
done <<'EOF'
nixpkgs github:NixOS/nixpkgs/nixos-25.11 8fd9daa3db09ced9700431c5b7ad0e8ba199b575 sha256-Ti+ZBvW6yrWWAg2szExVTwCd4qOJ3KlVr1tFHfyfi8Q= 1778430510
crane github:ipetkov/crane/v0.23.4 10e6e3cb966f7cfcc789fe5eee7a85f3188ce08b sha256-nnGD2f8OlAZT2i5OfwikJsw+ifWfiA4d6A8BWlgOXV0= 1779041105
rust-overlay github:oxalica/rust-overlay 4852a8aa041c94af55e136cde5b8b6d42c3563e8 sha256-NTZzJ7xJvMXOonYqut3WLUhryeZj5QuuL0ANcqS7d30= 1778469574
EOF

# When shared/nix-facts.md sits beside the repository (CI, developers), the
# table above must still agree with it.
facts=${DOCKERFUSE_NIX_FACTS:-$root/../shared/nix-facts.md}
if [ -f "$facts" ]; then
  for name in "${!want_rev[@]}"; do
    line=$(grep -E "^\| $name \|" "$facts" | head -n1)
    if [ -z "$line" ]; then
      bad "nix-facts.md has no row for $name"
      continue
    fi
    IFS='|' read -r _ _ f_url f_rev f_nar f_mod _ <<<"$line"
    f_url=$(echo "$f_url" | tr -d ' `')
    expect "table agrees with nix-facts.md: $name" \
      "${want_url[$name]} ${want_rev[$name]} ${want_nar[$name]} ${want_mod[$name]}" \
      "$f_url $(echo "$f_rev" | tr -d ' ') $(echo "$f_nar" | tr -d ' ') $(echo "$f_mod" | tr -d ' ')"
  done
else
  echo "note: $facts not found; using the built-in table only"
fi

lock=flake.lock
if ! jq -e . "$lock" >/dev/null 2>&1; then
  bad "$lock is valid JSON"
else
  ok "$lock is valid JSON"
  expect "$lock version" "$(jq -r '.version' "$lock")" 7
  expect "$lock root" "$(jq -r '.root' "$lock")" root
  expect "$lock root node has inputs" "$(jq -r '.nodes.root.inputs | type' "$lock")" object

  # The inputs flake.nix declares, evaluated (flake.nix is a plain attribute
  # set; `outputs` is never forced).
  if inputs_json=$(nix-instantiate --eval --strict --json \
    -E '(import ./flake.nix).inputs' 2>"$tmp/eval.err"); then
    ok "flake.nix inputs evaluate"
  else
    bad "flake.nix inputs evaluate"
    sed 's/^/       /' "$tmp/eval.err"
    inputs_json='{}'
  fi
  mapfile -t inputs < <(jq -r 'keys[]' <<<"$inputs_json")

  expect "flake.nix inputs are the pinned set" \
    "$(printf '%s\n' "${inputs[@]}" | sort | tr '\n' ' ')" \
    "$(printf '%s\n' "${!want_rev[@]}" | sort | tr '\n' ' ')"
  expect "root node lists exactly flake.nix's inputs" \
    "$(jq -r '.nodes.root.inputs | keys[]' "$lock" | sort | tr '\n' ' ')" \
    "$(printf '%s\n' "${inputs[@]}" | sort | tr '\n' ' ')"

  node_names=(root)
  for name in "${inputs[@]}"; do
    node=$(jq -r --arg n "$name" '.nodes.root.inputs[$n] | if type == "string" then . else "" end' "$lock")
    if [ -z "$node" ] || [ "$(jq -r --arg n "$node" '.nodes | has($n)' "$lock")" != true ]; then
      bad "$name: root input points at an existing node"
      continue
    fi
    ok "$name: root input points at node '$node'"
    node_names+=("$node")
    n=".nodes[\"$node\"]"

    rev=$(jq -r "$n.locked.rev // \"\"" "$lock")
    nar=$(jq -r "$n.locked.narHash // \"\"" "$lock")
    mod=$(jq -r "$n.locked.lastModified | if type == \"number\" then tostring else \"\" end" "$lock")
    if [[ $rev =~ ^[0-9a-f]{40}$ ]]; then ok "$name: locked.rev is 40 hex"; else bad "$name: locked.rev '$rev' is not 40 hex"; fi
    if [[ $nar =~ ^sha256-[A-Za-z0-9+/]{43}=$ ]]; then ok "$name: locked.narHash is sha256-<base64>"; else bad "$name: locked.narHash '$nar' is not sha256-<base64>"; fi
    if [[ $mod =~ ^[0-9]+$ ]]; then ok "$name: locked.lastModified is a number"; else bad "$name: locked.lastModified missing or not a number"; fi
    expect "$name: pinned rev/narHash/lastModified" "$rev $nar $mod" \
      "${want_rev[$name]:-?} ${want_nar[$name]:-?} ${want_mod[$name]:-?}"

    # locked/original agree with the input's URL (github:OWNER/REPO[/REF]).
    url=$(jq -r --arg n "$name" '.[$n].url // ""' <<<"$inputs_json")
    expect "$name: flake.nix url" "$url" "${want_url[$name]:-?}"
    if [[ $url =~ ^github:([^/]+)/([^/]+)(/(.+))?$ ]]; then
      owner=${BASH_REMATCH[1]} repo=${BASH_REMATCH[2]} ref=${BASH_REMATCH[4]}
      expect "$name: locked is github:$owner/$repo" \
        "$(jq -r "$n.locked | [.type, .owner, .repo] | join(\" \")" "$lock")" "github $owner $repo"
      expect "$name: locked has exactly lastModified narHash owner repo rev type" \
        "$(jq -r "$n.locked | keys | join(\" \")" "$lock")" "lastModified narHash owner repo rev type"
      expect "$name: original matches the url" \
        "$(jq -cS "$n.original" "$lock")" \
        "$(jq -cSn --arg o "$owner" --arg r "$repo" --arg ref "$ref" \
          '{owner: $o} + (if $ref == "" then {} else {ref: $ref} end) + {repo: $r, type: "github"}')"
    else
      bad "$name: url '$url' is not github:OWNER/REPO[/REF]"
    fi

    # Nested inputs: exactly the `follows` flake.nix declares (crane has no
    # inputs at all, so its node must have no "inputs" key).
    want_follows=$(jq -cS --arg n "$name" '
      (.[$n].inputs // {}) | with_entries(.value |= (.follows | split("/")))
      | if . == {} then null else . end' <<<"$inputs_json")
    expect "$name: nested inputs follow flake.nix" "$(jq -cS "$n.inputs // null" "$lock")" "$want_follows"
  done

  expect "$lock has no nodes besides root and the inputs" \
    "$(jq -r '.nodes | keys[]' "$lock" | sort | tr '\n' ' ')" \
    "$(printf '%s\n' "${node_names[@]}" | sort -u | tr '\n' ' ')"
fi

# The alpine minirootfs tarballs the VM tests fetch (nix-facts.md, "Container
# images for tests").
declare -A want_tarball=(
  [https://dl-cdn.alpinelinux.org/alpine/v3.20/releases/x86_64/alpine-minirootfs-3.20.3-x86_64.tar.gz]=d4e6fd67dcf75e40c451560ac7265166c2b72a0f38ddc9aae756a7de3d1efa0c
  [https://dl-cdn.alpinelinux.org/alpine/v3.20/releases/aarch64/alpine-minirootfs-3.20.3-aarch64.tar.gz]=041fa34a81788242df9e78fa69b97ab45b8ec47ddbf88864755610414a7bf3de
)
for url in "${!want_tarball[@]}"; do
  # The url line and the sha256 line of one fetchurl, as written in images.nix.
  got=$(grep -A1 -F "url = \"$url\";" nix/images.nix | sed -n 's/.*sha256 = "\([0-9a-f]*\)";.*/\1/p')
  expect "nix/images.nix pins ${url##*/}" "$got" "${want_tarball[$url]}"
  sums=$root/../shared/images/SHA256SUMS
  if [ -f "$sums" ]; then
    expect "shared/images/SHA256SUMS agrees on ${url##*/}" \
      "$(awk -v f="${url##*/}" '$2 == f || $2 == "*" f { print $1 }' "$sums")" "${want_tarball[$url]}"
  fi
done

# ---------------------------------------------------------------------------
echo "== (c) nix/module.nix option -> CLI flag mapping"

module=nix/module.nix
# Whitespace-collapsed text of the module, to match expressions across lines.
flat=$(tr -s ' \n\t' ' ' <"$module")
while IFS='|' read -r option expr; do
  if [[ $flat == *"$expr"* ]]; then
    ok "$option -> $expr"
  else
    bad "$option is not passed as: $expr"
  fi
done <<'EOF'
container|"--id" m.container
mountPoint|"--mount" m.mountPoint
path|"--path" m.path
readOnly|lib.optional m.readOnly "--read-only"
allowOther|lib.optional m.allowOther "--allow-other"
transport|lib.optionals (m.transport != "auto") [ "--transport" m.transport ]
reconnect|lib.optional m.reconnect "--reconnect"
extraArgs|++ m.extraArgs;
EOF

mapfile -t flags < <(grep -oE '"--[a-z][a-z0-9-]*"' "$module" | tr -d '"' | sort -u)
if [ "${#flags[@]}" -eq 0 ]; then
  bad "no --flags found in $module"
fi

if [ -z "${DOCKERFUSE:-}" ]; then
  echo "skip: DOCKERFUSE is not set, so the ${#flags[@]} flags in $module" \
    "(${flags[*]}) are not checked against --help;" \
    "run with DOCKERFUSE=/path/to/dockerfuse to check them"
elif ! help=$("$DOCKERFUSE" --help 2>&1); then
  bad "\$DOCKERFUSE --help ($DOCKERFUSE) exits 0"
  printf '%s\n' "$help" | sed 's/^/       /'
else
  ok "\$DOCKERFUSE --help exits 0 ($DOCKERFUSE)"
  for flag in "${flags[@]}"; do
    if grep -qE -- "(^|[^[:alnum:]-])$flag([^[:alnum:]-]|$)" <<<"$help"; then
      ok "$flag is in dockerfuse --help"
    else
      bad "$module passes $flag, which dockerfuse --help does not list"
    fi
  done
fi

# The Nix package builds the satellites build.rs builds, with its pinned
# nightly.
triples_of() { grep -oE '"[a-z0-9_]+-unknown-linux-musl[a-z]*"' "$1" | tr -d '"' | sort -u | tr '\n' ' '; }
expect "nix/packages.nix builds the satellites crates/dockerfuse/build.rs builds" \
  "$(sed -n '/satelliteTargets = {/,/};/p' nix/packages.nix | triples_of /dev/stdin)" \
  "$(sed -n '/^const SATELLITES/,/^];/p' crates/dockerfuse/build.rs | triples_of /dev/stdin)"
expect "nix/packages.nix takes its nightly from crates/dockerfuse/satellite-toolchain.txt" \
  "$(grep -c 'readFile ../crates/dockerfuse/satellite-toolchain.txt' nix/packages.nix)" 1

# ---------------------------------------------------------------------------
echo "== (d) nix/vm-matrix.txt and integration/scenarios.txt: one list each, for the VM test and CI"

matrix_sh=nix/vm-matrix.sh
if out=$(bash "$matrix_sh" check 2>&1); then
  ok "nix/vm-matrix.txt and integration/scenarios.txt parse"
else
  bad "nix/vm-matrix.txt and integration/scenarios.txt parse"
  printf '%s\n' "$out" | sed 's/^/       /'
fi

if sh_json=$(bash "$matrix_sh" json 2>"$tmp/json.err") &&
  nix_json=$(nix-instantiate --eval --strict --json -E 'import ./nix/vm-matrix.nix { }' 2>"$tmp/json.err"); then
  expect "nix/vm-matrix.nix and nix/vm-matrix.sh read the same list" \
    "$(jq -cS . <<<"$nix_json")" "$(jq -cS . <<<"$sh_json")"
else
  bad "nix/vm-matrix.nix and nix/vm-matrix.sh read the list"
  sed 's/^/       /' "$tmp/json.err"
  sh_json='{"scenarios":[],"env":{},"tools":[],"modules":[],"wrapped":[]}'
fi

# Each scenario is a script, except busybox (core on the busybox images),
# and integration/README.md's table of files has its row.
while read -r s; do
  if [ "$s" = busybox ] || [ -f "integration/scenarios/$s.sh" ]; then
    ok "scenario $s exists"
  else
    bad "integration/scenarios.txt declares scenario $s: no integration/scenarios/$s.sh"
  fi
  if [ "$s" = busybox ] || grep -qE "^\| .*\`scenarios/$s\.sh\`" integration/README.md; then
    ok "integration/README.md describes scenario $s"
  else
    bad "integration/README.md has no row for scenarios/$s.sh"
  fi
done < <(jq -r '.scenarios[], .notInVm[]' <<<"$sh_json")
# No scenario list written out in run-matrix.sh (it reads scenarios.txt).
expect "run-matrix.sh names no scenario list itself" \
  "$(sed 's/#.*//' integration/run-matrix.sh | grep -cE '\b(real-podman|container-stop|list-unmount)\b' || true)" "0"

if out=$(bash "$matrix_sh" path "$tmp/vm-path" 2>&1); then
  ok "every binary nix/vm-matrix.txt names is on this host ($(find "$tmp/vm-path" -mindepth 1 | wc -l) linked)"
else
  bad "every binary nix/vm-matrix.txt names is on this host"
  printf '%s\n' "$out" | sed 's/^/       /'
fi

# vm-cli.nix, vm-fstab.nix and vm-module.nix against a stub nixpkgs: just
# the lib functions they call, store paths as plain strings, runNixOSTest
# returning its argument. Enough to produce the test scripts.
cat >"$tmp/stub.nix" <<'NIX'
{ matrixFile ? null, scenarioFile ? null }:
let
  lib = {
    concatStringsSep = builtins.concatStringsSep;
    concatMapStrings = f: l: builtins.concatStringsSep "" (map f l);
    concatMap = f: l: builtins.concatLists (map f l);
    mapAttrsToList = f: a: map (n: f n a.${n}) (builtins.attrNames a);
    escapeShellArg = s: "'" + builtins.replaceStrings [ "'" ] [ "'\\''" ] s + "'";
    getBin = p: p;
    getExe = p: "${p}/bin/dockerfuse";
    splitString = sep: s: builtins.filter builtins.isString (builtins.split (if sep == "." then "[.]" else sep) s);
    getAttrFromPath = path: set: builtins.foldl' (s: n: s.${n}) set path;
    assertMsg = c: m: c || throw m;
    optionalAttrs = c: a: if c then a else { };
  };
  store = name: "/nix/store/00000000000000000000000000000000-${name}";
  matrix = import ../nix/vm-matrix.nix ((if matrixFile == null then { } else { file = matrixFile; })
    // (if scenarioFile == null then { } else { inherit scenarioFile; }));
  pkgs = builtins.listToAttrs (map (t: { name = builtins.head (lib.splitString "." t.name); value = store t.name; }) matrix.tools);
  images = builtins.listToAttrs (map (n: { name = n; value = store "image-${n}"; })
    [ "alpine-amd64" "alpine-arm64" "busybox-amd64" "busybox-arm64" "busybox-386" ]);
  common = { testers.runNixOSTest = t: t; inherit images; };
  tests = {
    vm-cli = import ../nix/vm-cli.nix (common // {
      inherit lib pkgs;
      dockerfuse = store "dockerfuse";
      integration = store "integration";
      vmMatrix = matrix;
    });
    vm-fstab = import ../nix/vm-fstab.nix (common // { dockerfuse = store "dockerfuse"; });
    vm-module = import ../nix/vm-module.nix (common // { dockerfuseModule = { }; });
  };
  # Options nixpkgs' nixos/modules/virtualisation/qemu-vm.nix sets with
  # mkVMOverride in every test VM: a node's own value is dropped (the VM
  # reads virtualisation.fileSystems for fileSystems).
  vmOverridden = [
    [ "fileSystems" ]
    [ "swapDevices" ]
    [ "boot" "initrd" "luks" "devices" ]
    [ "boot" "loader" "grub" "device" ]
  ];
  # The options a node looks at, as an older nixpkgs declares them
  # (programs.fuse without `enable`).
  stubOptions = { programs.fuse = { userAllowOther = { }; mountMax = { }; }; };
  hasPath = path: set:
    path == [ ] || (builtins.isAttrs set && set ? ${builtins.head path}
      && hasPath (builtins.tail path) set.${builtins.head path});
  # A node module as written (a function gets stand-ins for its arguments;
  # only attribute names are looked at).
  nodeAttrs = m:
    if builtins.isFunction m then
      m (builtins.mapAttrs (n: _: if n == "lib" then lib else if n == "pkgs" then pkgs
        else if n == "options" then stubOptions
        else throw "stub: ${n}") (builtins.functionArgs m))
    else m;
  overridden = t: builtins.concatLists (builtins.attrValues (builtins.mapAttrs (node: m:
    map (p: "${node}: ${builtins.concatStringsSep "." p}")
      (builtins.filter (p: hasPath p (nodeAttrs m)) vmOverridden)) t.nodes));
in
{
  scripts = builtins.mapAttrs (_: t: t.testScript) tests;
  overridden = builtins.mapAttrs (_: overridden) tests;
  # vm-cli.nix's node: the users it declares and the engines for them.
  cliNode = let n = nodeAttrs tests.vm-cli.nodes.machine; in {
    users = builtins.mapAttrs (_: u: {
      groups = u.extraGroups or [ ];
      subids = (u.autoSubUidGidRange or false) || ((u.subUidRanges or [ ]) != [ ] && (u.subGidRanges or [ ]) != [ ]);
      normal = u.isNormalUser or false;
    }) (n.users.users or { });
    dockerRootless = n.virtualisation.docker.rootless.enable or false;
    podman = n.virtualisation.podman.enable or false;
    userAllowOther = n.programs.fuse.userAllowOther or false;
  };
  fstabDeclared = builtins.attrNames ((nodeAttrs tests.vm-fstab.nodes.machine).virtualisation.fileSystems or { });
}
NIX
mkdir -p "$tmp/nix"
cp nix/vm-matrix.nix nix/vm-cli.nix nix/vm-fstab.nix nix/vm-module.nix nix/vm-matrix.txt "$tmp/nix/"
mkdir -p "$tmp/integration"
cp integration/scenarios.txt "$tmp/integration/"
mkdir -p "$tmp/stub" && mv "$tmp/stub.nix" "$tmp/stub/default.nix"

# stub_eval [MATRIX_FILE SCENARIO_FILE]: the stub's whole answer as JSON.
stub_eval() {
  if [ -n "${1:-}" ]; then
    nix-instantiate --eval --strict --json "$tmp/stub" --arg matrixFile "$1" --arg scenarioFile "$2"
  else
    nix-instantiate --eval --strict --json "$tmp/stub" --arg matrixFile null
  fi
}
# scripts_for [MATRIX_FILE SCENARIO_FILE]: the three test scripts as JSON.
scripts_for() {
  stub_eval "$@" | jq -c .scripts
}
# run_line SCRIPT: the DOCKERFUSE_TEST_SCENARIOS and environment it passes.
run_line() {
  grep -oE "DOCKERFUSE_TEST_SCENARIOS='[^']*'|[A-Z_]+='[^']*'" <<<"$1" | sort | tr '\n' ' '
}
# want_line JSON: the same, from a parsed list.
want_line() {
  jq -r '(["DOCKERFUSE_TEST_SCENARIOS='"'"'" + (.scenarios | join(" ")) + "'"'"'"]
    + (.env | to_entries | map(.key + "='"'"'" + .value + "'"'"'"))) | .[]' <<<"$1" | sort | tr '\n' ' '
}

if scripts=$(scripts_for 2>"$tmp/stub.err"); then
  ok "vm-cli.nix, vm-fstab.nix, vm-module.nix evaluate against a stub nixpkgs"
  for t in vm-cli vm-fstab vm-module; do
    jq -r --arg t "$t" '.[$t]' <<<"$scripts" >"$tmp/$t.py"
    if out=$(python3 -c 'import ast, sys; ast.parse(open(sys.argv[1]).read())' "$tmp/$t.py" 2>&1); then
      ok "$t: the test script is valid Python"
    else
      bad "$t: the test script is valid Python"
      printf '%s\n' "$out" | sed 's/^/       /'
    fi
  done
  cli=$(jq -r '.["vm-cli"]' <<<"$scripts")
  expect "vm-cli.nix runs the scenarios of integration/scenarios.txt and the environment of nix/vm-matrix.txt" \
    "$(run_line "$cli")" "$(want_line "$sh_json")"
  n_bins=$(jq '[.tools[].bins[], .modules[].bins[]] | length' <<<"$sh_json")
  expect "vm-cli.nix checks every tool and module binary of the list" \
    "$(grep -cE 'machine.succeed\("(test -x |command -v )' <<<"$cli")" "$n_bins"

  # Changed copies of the lists: the script must follow them (read, not copied).
  {
    grep -vE '^env ' nix/vm-matrix.txt
    echo "env DFIT_PARITY_PROBE changed list"
  } >"$tmp/changed.txt"
  {
    grep -vE '^scenario ' integration/scenarios.txt
    echo "scenario errors once"
  } >"$tmp/changed-scenarios.txt"
  changed_json=$(DOCKERFUSE_VM_MATRIX="$tmp/changed.txt" DOCKERFUSE_SCENARIO_LIST="$tmp/changed-scenarios.txt" bash "$matrix_sh" json)
  if changed=$(scripts_for "$tmp/changed.txt" "$tmp/changed-scenarios.txt" 2>"$tmp/stub.err"); then
    expect "vm-cli.nix follows a changed nix/vm-matrix.txt" \
      "$(run_line "$(jq -r '.["vm-cli"]' <<<"$changed")")" "$(want_line "$changed_json")"
  else
    bad "vm-cli.nix evaluates with a changed list"
    sed 's/^/       /' "$tmp/stub.err"
  fi
else
  bad "vm-cli.nix, vm-fstab.nix, vm-module.nix evaluate against a stub nixpkgs"
  sed 's/^/       /' "$tmp/stub.err"
fi

# No node of a VM test sets an option qemu-vm.nix overrides (such as
# fileSystems, which a test VM takes from virtualisation.fileSystems).
if answer=$(stub_eval 2>"$tmp/stub.err"); then
  for t in vm-cli vm-fstab vm-module; do
    expect "$t: no node sets an option a test VM overrides" \
      "$(jq -r --arg t "$t" '.overridden[$t] | join(", ")' <<<"$answer")" ""
  done
  expect "vm-fstab.nix declares its mount in virtualisation.fileSystems" \
    "$(jq -r '.fstabDeclared | join(" ")' <<<"$answer")" "/mnt/web"
  # The check itself: a copy of vm-fstab.nix with the entry in
  # fileSystems, as a real host writes it, is caught.
  cp nix/vm-fstab.nix "$tmp/vm-fstab.orig"
  sed -i 's/virtualisation\.fileSystems\."/fileSystems."/' "$tmp/nix/vm-fstab.nix"
  if caught=$(stub_eval 2>"$tmp/stub.err"); then
    expect "a VM test that sets fileSystems is caught" \
      "$(jq -r '.overridden["vm-fstab"] | join(", ")' <<<"$caught")" "machine: fileSystems"
  else
    bad "the stub evaluates a VM test that sets fileSystems"
    sed 's/^/       /' "$tmp/stub.err"
  fi
  cp "$tmp/vm-fstab.orig" "$tmp/nix/vm-fstab.nix"
else
  bad "the VM tests' nodes evaluate against a stub nixpkgs"
  sed 's/^/       /' "$tmp/stub.err"
fi

# The scenarios run as other users (users-lib.sh) find in the VM the users
# they name, declared in vm-cli.nix's node as they need them: the docker
# group member in the group, the plain user not, the rootless user with
# subordinate ids; the rootless engines enabled; the setuid wrappers they
# call checked by the test script; NixOS's name of dockerd-rootless.sh
# looked up by the rootless-docker scenario.
user_scripts=(users rootless-podman rootless-docker)
in_vm_users=()
for s in "${user_scripts[@]}"; do
  if jq -e --arg s "$s" '.scenarios | index($s)' <<<"$sh_json" >/dev/null; then in_vm_users+=("$s"); fi
done
if [ "${#in_vm_users[@]}" -gt 0 ]; then
  role() { sed -n "s/^\(.*[[:space:]]\)\{0,1\}$2=\(dfu-[a-z0-9-]*\).*/\2/p" "integration/scenarios/$1.sh" | head -n 1; }
  member=$(role users M) plain=$(role users P) rootless=$(role rootless-podman U)
  expect "users.sh names its two users (M=, P=)" "$([ -n "$member" ] && [ -n "$plain" ] && echo yes)" yes
  expect "rootless-docker.sh uses rootless-podman.sh's user" "$(role rootless-docker U)" "$rootless"
  if node=$(stub_eval 2>"$tmp/stub.err" | jq -c .cliNode); then
    expect "vm-cli.nix declares exactly the scenarios' users" \
      "$(jq -r '.users | keys | join(" ")' <<<"$node")" "$(printf '%s\n' "$member" "$plain" "$rootless" | sort | tr '\n' ' ' | sed 's/ $//')"
    expect "vm-cli.nix: $member is a normal user in the docker group" \
      "$(jq -r --arg u "$member" '.users[$u] | [.normal, (.groups | index("docker") != null)] | map(tostring) | join(" ")' <<<"$node")" "true true"
    expect "vm-cli.nix: $plain is a normal user not in the docker group" \
      "$(jq -r --arg u "$plain" '.users[$u] | [.normal, (.groups | index("docker") != null)] | map(tostring) | join(" ")' <<<"$node")" "true false"
    expect "vm-cli.nix: $rootless is a normal user with subordinate uid and gid ranges" \
      "$(jq -r --arg u "$rootless" '.users[$u] | [.normal, .subids] | map(tostring) | join(" ")' <<<"$node")" "true true"
    expect "vm-cli.nix enables virtualisation.docker.rootless and virtualisation.podman" \
      "$(jq -r '[.dockerRootless, .podman] | map(tostring) | join(" ")' <<<"$node")" "true true"
    # The check itself: a copy of vm-cli.nix whose docker group member is
    # not in the group, and whose rootless user has no subordinate ids.
    cp "$tmp/nix/vm-cli.nix" "$tmp/vm-cli.orig"
    sed -i 's/extraGroups = \[ "docker" \];/extraGroups = [ ];/; s/autoSubUidGidRange = true;/autoSubUidGidRange = false;/' "$tmp/nix/vm-cli.nix"
    if broken=$(stub_eval 2>"$tmp/stub.err" | jq -c .cliNode); then
      expect "a VM whose $member is not in the docker group, nor $rootless given subordinate ids, is caught" \
        "$(jq -r --arg m "$member" --arg r "$rootless" '[(.users[$m].groups | index("docker") != null), .users[$r].subids] | map(tostring) | join(" ")' <<<"$broken")" "false false"
    else
      bad "the stub evaluates a changed vm-cli.nix"
      sed 's/^/       /' "$tmp/stub.err"
    fi
    cp "$tmp/vm-cli.orig" "$tmp/nix/vm-cli.nix"
  else
    bad "vm-cli.nix's node evaluates against a stub nixpkgs"
    sed 's/^/       /' "$tmp/stub.err"
  fi
  for w in fusermount3 mount umount newuidmap newgidmap; do
    expect "vm-cli.nix checks the setuid wrapper /run/wrappers/bin/$w" \
      "$(grep -c "test -u /run/wrappers/bin/$w -a -O /run/wrappers/bin/$w" <<<"${cli:-}")" 1
  done
  expect "rootless-docker.sh finds NixOS's dockerd-rootless" \
    "$(grep -cE 'command -v dockerd-rootless( |\))' integration/scenarios/rootless-docker.sh)" 1
fi

# No scenario list written out in vm-cli.nix itself (comments aside).
copied=$(sed 's/#.*//' nix/vm-cli.nix | grep -oE 'real-(user|readonly|noexec|distroless|caps|tls|podman)|engine-restart|container-stop|differential' | sort -u | tr '\n' ' ')
expect "vm-cli.nix names no scenario itself" "$copied" ""

# ---------------------------------------------------------------------------
echo "== (e) Nix version and shellcheck"

min=$(sed -n 's/.*minimumNixVersion = "\([0-9.]*\)";.*/\1/p' flake.nix)
if [ -z "$min" ]; then
  bad "flake.nix sets minimumNixVersion"
else
  ok "flake.nix sets minimumNixVersion = $min"
  for doc in README.md nix/README.md; do
    if grep -q "Nix $min" "$doc" || grep -q "Nix >= $min" "$doc"; then
      ok "$doc names Nix $min"
    else
      bad "$doc does not name Nix $min as the minimum"
    fi
  done
  have=$(nix-instantiate --eval -E builtins.nixVersion | tr -d '"')
  msg=$(nix-instantiate --eval -E \
    '(import ./flake.nix).outputs { self = { }; nixpkgs = { }; crane = { }; rust-overlay = { }; }' 2>&1 || true)
  if [ "$(printf '%s\n' "$have" "$min" | sort -V | head -n1)" = "$min" ]; then
    echo "note: this is Nix $have (>= $min): the version assertion cannot be seen failing here"
  else
    assert_msg="This flake needs Nix $min or newer (crane v0.23 requires it), but this is Nix $have. Upgrade Nix and try again."
    if grep -qF "$assert_msg" <<<"$msg"; then
      ok "on Nix $have the flake stops with: $assert_msg"
    else
      bad "on Nix $have the flake does not stop with the plain sentence"
      printf '%s\n' "$msg" | head -n 5 | sed 's/^/       /'
    fi
  fi
fi

for f in nix/check-offline.sh nix/vm-matrix.sh integration/run-matrix.sh integration/lib.sh \
  integration/test.sh integration/scenarios/engine-restart.sh; do
  if out=$(shellcheck -x "$f" 2>&1); then
    ok "shellcheck $f"
  else
    bad "shellcheck $f"
    printf '%s\n' "$out" | head -n 20 | sed 's/^/       /'
  fi
done

# ---------------------------------------------------------------------------
printf '%d passed, %d failed\n' "$pass" "$fail"
[ "$fail" -eq 0 ]
