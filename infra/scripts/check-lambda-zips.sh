#!/usr/bin/env bash
# Checks the zips `make build` produced: each holds a `bootstrap` that is a 64-bit aarch64 ELF
# (read from the ELF header, so `file` is not needed), and prints each zip's size.
# Usage: infra/scripts/check-lambda-zips.sh LAMBDA_DIR BIN...
set -euo pipefail
lambda_dir=$1
shift
python3 - "$lambda_dir" "$@" <<'PY'
import os, sys, zipfile
lambda_dir, bins = sys.argv[1], sys.argv[2:]
EM_AARCH64, GOAL = 0xB7, 8 * 1024 * 1024
failed = False
for name in bins:
    path = os.path.join(lambda_dir, name, "bootstrap.zip")
    if not os.path.isfile(path):
        print(f"  {name:22} MISSING {path}")
        failed = True
        continue
    with zipfile.ZipFile(path) as archive:
        try:
            info = archive.getinfo("bootstrap")
        except KeyError:
            print(f"  {name:22} no `bootstrap` in {path}")
            failed = True
            continue
        header = archive.open(info).read(20)
    is_elf = header[:4] == b"\x7fELF"
    elf64 = is_elf and header[4] == 2
    little = is_elf and header[5] == 1
    machine = int.from_bytes(header[18:20], "little" if little else "big") if is_elf else None
    executable = (info.external_attr >> 16) & 0o111
    size = os.path.getsize(path)
    ok = is_elf and elf64 and machine == EM_AARCH64
    note = "" if size < GOAL else f"  (over the {GOAL // 2**20} MB goal)"
    kind = "aarch64 ELF64" if ok else f"NOT aarch64 (ELF={is_elf}, 64-bit={elf64}, e_machine={machine})"
    mode = "" if executable or info.external_attr == 0 else ", not executable"
    print(f"  {name:22} {size / 2**20:6.2f} MB  {kind}{mode}{note}  {path}")
    failed |= not ok
sys.exit(1 if failed else 0)
PY
