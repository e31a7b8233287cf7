#!/usr/bin/env python3
"""Stages the template for an emulator that runs the functions on its host (make deploy-local).

Usage: stage-local.py <binaries dir> <out dir>

`sam build` builds arm64 zips with cargo-lambda; an emulator that runs `provided.al2023` functions
as host processes needs the host's binaries instead. This copies each function's binary (named by
its `BuildProperties.Binary`) to `<out dir>/<binary>/bootstrap` and writes
`<out dir>/template.yaml` with each function's `CodeUri` pointing there, for `sam deploy` to zip
and upload, and the other relative paths made absolute. Every other line is kept as it is.
"""

import os
import re
import shutil
import sys

ROOT = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", ".."))
TEMPLATE = os.path.join(ROOT, "infra", "template.yaml")

# A function's build metadata and, in its properties, its CodeUri (the workspace root).
FUNCTION = re.compile(
    r"(      BuildProperties:\n        Binary: (?P<binary>[a-z-]+)\n    Properties:\n"
    r"(?:      #.*\n)*      CodeUri: )\.\.\n"
)


def stage(binaries: str, out: str) -> list:
    with open(TEMPLATE, encoding="utf-8") as file:
        template = file.read()
    staged = []

    def code_uri(match: re.Match) -> str:
        binary = match["binary"]
        source = os.path.join(binaries, binary)
        if not os.access(source, os.X_OK):
            sys.exit(f"stage-local: {source} is missing: build the functions first")
        directory = os.path.join(out, binary)
        os.makedirs(directory, exist_ok=True)
        shutil.copy2(source, os.path.join(directory, "bootstrap"))
        staged.append(binary)
        return f"{match[1]}{directory}\n"

    template = FUNCTION.sub(code_uri, template)
    # Other paths are relative to the template's folder, which the staged template is not in.
    template = template.replace(" ../", f" {ROOT}/")
    if len(staged) != template.count("Type: AWS::Serverless::Function"):
        sys.exit(f"stage-local: staged {staged}, not every function of {TEMPLATE}")
    with open(os.path.join(out, "template.yaml"), "w", encoding="utf-8") as file:
        file.write(template)
    return staged


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    out_dir = os.path.abspath(sys.argv[2])
    os.makedirs(out_dir, exist_ok=True)
    names = stage(os.path.abspath(sys.argv[1]), out_dir)
    print(f"stage-local: {', '.join(names)} staged in {out_dir}")
