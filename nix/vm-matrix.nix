# nix/vm-matrix.txt and integration/scenarios.txt, parsed: the environment
# and tools of the VM test (nix/vm-cli.nix), and which scenarios it runs.
# nix/vm-matrix.sh (and integration/run-matrix.sh) read the same files for
# CI; the formats are described at their tops. Builtins only, so
# nix/check-offline.sh can evaluate this file without nixpkgs and compare it
# with the shell parsers:
#
#   nix-instantiate --eval --strict --json -E 'import ./nix/vm-matrix.nix { }'
{
  file ? ./vm-matrix.txt,
  scenarioFile ? ../integration/scenarios.txt,
}:
let
  inherit (builtins)
    elem
    elemAt
    filter
    head
    isString
    length
    listToAttrs
    map
    split
    tail
    ;

  # "a  b # c" -> [ "a" "b" ]
  words = line: filter (w: isString w && w != "") (split "[ \t]+" (head (split "#" line)));
  linesOf = f: filter (ws: ws != [ ]) (map words (filter isString (split "\n" (builtins.readFile f))));
  lines = linesOf file;

  kinds = [
    "env"
    "tool"
    "module"
    "wrapped"
  ];
  modules = [
    "docker"
    "podman"
    "systemd"
  ];
  concatSep = sep: ws: builtins.concatStringsSep sep ws;
  bad = ws: msg: throw "nix/vm-matrix.txt: '${concatSep " " ws}': ${msg}";
  checked =
    ws:
    let
      kind = head ws;
      n = length ws;
    in
    if !(elem kind kinds) then
      bad ws "unknown kind '${kind}' (want one of: ${concatSep " " kinds})"
    else if n < 3 then
      bad ws "want: ${kind} NAME VALUE..."
    else if (kind == "module" || kind == "wrapped") && !(elem (elemAt ws 1) modules) then
      bad ws "unknown module '${elemAt ws 1}' (want one of: ${concatSep " " modules})"
    else
      ws;
  entries = map checked lines;

  # integration/scenarios.txt: "scenario|not-in-vm NAME SHAPE FLAG..."
  shapes = [
    "pairs"
    "busybox"
    "arches"
    "per-arch"
    "once"
    "own-per-arch"
    "own-once"
  ];
  flags = [
    "sat"
    "exec"
    "last"
  ];
  badScenario = ws: msg: throw "integration/scenarios.txt: '${concatSep " " ws}': ${msg}";
  checkedScenario =
    ws:
    let
      kind = head ws;
    in
    if !(elem kind [ "scenario" "not-in-vm" ]) then
      badScenario ws "want: scenario|not-in-vm NAME SHAPE FLAG..."
    else if length ws < 3 then
      badScenario ws "want: ${kind} NAME SHAPE FLAG..."
    else if !(elem (elemAt ws 2) shapes) then
      badScenario ws "unknown shape '${elemAt ws 2}' (want one of: ${concatSep " " shapes})"
    else if filter (f: !(elem f flags)) (tail (tail (tail ws))) != [ ] then
      badScenario ws "unknown flag (want any of: ${concatSep " " flags})"
    else
      ws;
  scenarioEntries = map checkedScenario (linesOf scenarioFile);
  scenariosOf = kind: map (ws: elemAt ws 1) (filter (ws: head ws == kind) scenarioEntries);
  of = kind: filter (ws: head ws == kind) entries;
  # "tool ATTR BIN..." -> { name = ATTR; bins = [ BIN... ]; }
  named = kind: map (ws: {
    name = elemAt ws 1;
    bins = tail (tail ws);
  }) (of kind);
in
{
  scenarios = scenariosOf "scenario";
  notInVm = scenariosOf "not-in-vm";
  env = listToAttrs (
    map (ws: {
      name = elemAt ws 1;
      value = concatSep " " (tail (tail ws));
    }) (of "env")
  );
  tools = named "tool";
  modules = named "module";
  wrapped = named "wrapped";
}
