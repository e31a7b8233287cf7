#!/usr/bin/env bash
# Lints the state machine definition with statelint, as CloudFormation will deliver it: each
# ${Name} placeholder (a DefinitionSubstitutions key in infra/template.yaml) is replaced with a
# well-formed Lambda ARN first, since statelint requires a Task's Resource to be a URI.
# Also fails if the definition uses a placeholder that the template does not substitute.
# Usage: infra/scripts/lint-asl.sh [definition.json] [template.yaml]
set -euo pipefail

asl=${1:-state-machine/tasks.asl.json}
template=${2:-infra/template.yaml}

python3 - "$asl" "$template" <<'PY'
import re, sys
asl, template = sys.argv[1], sys.argv[2]
used = set(re.findall(r"\$\{([A-Za-z0-9_]+)\}", open(asl).read()))
provided, indent = set(), None
for line in open(template):
    stripped = line.lstrip(" ")
    depth = len(line) - len(stripped)
    if indent is None:
        if stripped.startswith("DefinitionSubstitutions:"):
            indent = depth
        continue
    if stripped.strip() and depth <= indent:
        break
    m = re.match(r"([A-Za-z0-9_]+):", stripped)
    if m and depth > indent:
        provided.add(m.group(1))
missing = sorted(used - provided)
if missing:
    sys.exit(f"lint-asl: {asl} uses placeholders that {template} does not substitute: {', '.join(missing)}")
PY

tmp=$(mktemp --suffix=.asl.json)
trap 'rm -f "$tmp"' EXIT
sed -E 's/\$\{([A-Za-z0-9_]+)\}/arn:aws:lambda:us-east-1:123456789012:function:lint-\1/g' "$asl" > "$tmp"
statelint "$tmp"
echo "lint-asl: $asl is valid ASL; its placeholders are all substituted by $template"
