# nix/vm-matrix.txt, parsed: the scenarios, environment and tools of the VM
# test (nix/vm-cli.nix). nix/vm-matrix.sh reads the same file for CI; the
# format is described at its top. Builtins only, so nix/check-offline.sh can
# evaluate this file without nixpkgs and compare it with the shell parser:
#
#   nix-instantiate --eval --strict --json -E 'import ./nix/vm-matrix.nix { }'
{
  file ? ./vm-matrix.txt,
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
  lines = filter (ws: ws != [ ]) (map words (filter isString (split "\n" (builtins.readFile file))));

  kinds = [
    "scenario"
    "not-in-vm"
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
    else if (kind == "scenario" || kind == "not-in-vm") && n != 2 then
      bad ws "want: ${kind} NAME"
    else if (kind != "scenario" && kind != "not-in-vm") && n < 3 then
      bad ws "want: ${kind} NAME VALUE..."
    else if (kind == "module" || kind == "wrapped") && !(elem (elemAt ws 1) modules) then
      bad ws "unknown module '${elemAt ws 1}' (want one of: ${concatSep " " modules})"
    else
      ws;
  entries = map checked lines;
  of = kind: filter (ws: head ws == kind) entries;
  # "tool ATTR BIN..." -> { name = ATTR; bins = [ BIN... ]; }
  named = kind: map (ws: {
    name = elemAt ws 1;
    bins = tail (tail ws);
  }) (of kind);
in
{
  scenarios = map (ws: elemAt ws 1) (of "scenario");
  notInVm = map (ws: elemAt ws 1) (of "not-in-vm");
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
