#!/usr/bin/env bash
# The prepared DSB2018 split cut into parts small enough to travel, one part per call, to a lent GPU
# machine whose calls each carry at most LIMIT bytes with the working tree (the machine keeps what
# earlier calls carried while it stays warm), and put back together there.
#   gpu_data.sh pack DATASET_DIR PARTS_DIR PART_BYTES   DATASET_DIR/.. -> PARTS_DIR/<name>.tar.xz.NN + <name>.sha256
#   gpu_data.sh unpack PARTS_DIR DEST                   checks every part is there and whole, then DEST/<name>/
set -euo pipefail
fail() { echo "error: $*" >&2; exit 2; }

case "${1:-}" in
pack)
  [ $# = 4 ] || fail "usage: gpu_data.sh pack DATASET_DIR PARTS_DIR PART_BYTES"
  src=${2%/} parts=$3 part_bytes=$4
  [ -d "$src" ] || fail "$src: no such folder"
  [[ "$part_bytes" =~ ^[0-9]+$ ]] && [ "$part_bytes" -gt 0 ] || fail "PART_BYTES must be a positive number, not $part_bytes"
  name=$(basename "$src")
  rm -rf "$parts" && mkdir -p "$parts"
  # PNGs are already compressed: xz gains on the annotations' JSON.
  tar -cf - -C "$(dirname "$src")" "$name" | xz -T0 -6 | split -d -a 2 -b "$part_bytes" - "$parts/$name.tar.xz."
  (cd "$parts" && cat "$name".tar.xz.?? | sha256sum | sed "s/-\$/$name.tar.xz/" > "$name.sha256"
   echo "$(ls "$name".tar.xz.?? | wc -l) parts" >> "$name.sha256")
  ;;
unpack)
  [ $# = 3 ] || fail "usage: gpu_data.sh unpack PARTS_DIR DEST"
  parts=${2%/} dest=$3
  sums=("$parts"/*.sha256)
  [ ${#sums[@]} = 1 ] && [ -f "${sums[0]}" ] || fail "$parts: expected one <name>.sha256 beside the parts (gpu_data.sh pack)"
  name=$(basename "${sums[0]}" .sha256)
  expected=$(sed -n 2p "${sums[0]}" | cut -d' ' -f1)
  found=$(ls "$parts/$name".tar.xz.?? 2> /dev/null | wc -l)
  [ "$found" = "$expected" ] || fail "$parts: $found of $expected parts of $name are here; carry the others first"
  whole=$(cat "$parts/$name".tar.xz.?? | sha256sum | cut -d' ' -f1)
  [ "$whole" = "$(head -1 "${sums[0]}" | cut -d' ' -f1)" ] || fail "$parts: the parts of $name do not match ${sums[0]}"
  mkdir -p "$dest"
  cat "$parts/$name".tar.xz.?? | xz -d | tar -xf - -C "$dest"
  ;;
*)
  fail "usage: gpu_data.sh pack DATASET_DIR PARTS_DIR PART_BYTES | unpack PARTS_DIR DEST"
  ;;
esac
