"""Writes docs/reference/config.md, the configuration reference, from schemas/config.schema.yaml:
every key as a dotted path with its type, default, allowed values and description, in tables
grouped by section (top level, models, one section per task type, fine-tuning, training,
decoding, published rows). The page is generated, never edited by hand; a test fails when it is
stale. Run from the repository root:

    python -m finetune_study.config_reference            # rewrite docs/reference/config.md
    python -m finetune_study.config_reference --check    # exit 1 if it is stale

Standard library plus PyYAML.
"""

import argparse
import os
import sys
import tempfile
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
SCHEMA = REPO / "schemas" / "config.schema.yaml"
OUTPUT = REPO / "docs" / "reference" / "config.md"
COMMAND = "python -m finetune_study.config_reference"

# $defs documented once, in a section of their own, wherever they are used
SHARED = {
    "finetunes": ("Fine-tuning", "tasks.<task>.finetune.<model>"),
    "finetune": ("Fine-tuning", "tasks.<task>.finetune.<model>"),
    "training": ("Training", "tasks.<task>.finetune.<model>.training"),
    "decoding": ("Decoding", "<decoding>"),
    "published": ("Published rows", "tasks.<task>.published[]"),
}
SHARED_INTRO = {
    "Fine-tuning": "One fine-tune of a model in a task: `tasks.<task>.finetune.<model>` is one such mapping, "
    "or a list of them, one per method, each entry taking the keys below.",
    "Training": "The training settings of a fine-tune.",
    "Decoding": "Decoding settings. `<decoding>` stands for `tasks.<task>.decoding` (classification, token "
    "classification), `tasks.<task>.decodings.<name>` (generation, source to target) and "
    "`tasks.<task>.decoding_grid.base`.",
    "Published rows": "A published result shown next to the run's own rows, marked published, not reproduced.",
}
TASK_TITLES = {
    "classification": "Tasks: classification",
    "generation": "Tasks: generation",
    "token_classification": "Tasks: token classification",
    "source_target": "Tasks: source to target",
}


def _def_name(ref):
    return ref.rsplit("/", 1)[-1]


def _inline(value):
    """A default or allowed value as compact YAML."""
    text = yaml.safe_dump(value, default_flow_style=True, width=10**6, allow_unicode=True, sort_keys=False).strip()
    return text[: -len("...")].strip() if text.endswith("...") else text


def _cell(text):
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace("|", "\\|").replace("*", "\\*")


def _code(text):
    return "`" + str(text).replace("|", "\\|") + "`"


class Reference:
    def __init__(self, schema):
        self.schema = schema
        self.defs = schema["$defs"]
        self.sections = {}  # title -> (intro, rows)

    def section(self, title, intro=""):
        return self.sections.setdefault(title, (intro, []))[1]

    def describe_type(self, node):
        if "$ref" in node:
            name = _def_name(node["$ref"])
            if name in SHARED:
                title = SHARED[name][0]
                kind = "list or mapping" if name == "finetunes" else "mapping"
                return f"{kind} (see [{title}](#{title.lower().replace(' ', '-')}))"
            target = self.defs[name]
            return self.describe_type(target) if "type" in target or "oneOf" in target else "mapping"
        if "const" in node:
            return "string"
        if "oneOf" in node:
            return " or ".join(self.describe_type(n) for n in node["oneOf"])
        if "if" in node and "then" in node and "else" in node:
            return "list or mapping"
        kinds = node.get("type", "enum" if "enum" in node else "")
        kinds = kinds if isinstance(kinds, list) else [kinds]
        out = []
        for k in kinds:
            if k == "array":
                items = node.get("items", {})
                inner = self.describe_type(items) if items else ""
                out.append(f"list of {inner}" if inner else "list")
            elif k == "object":
                extra = node.get("additionalProperties")
                out.append(f"mapping of name to {self.describe_type(extra)}" if isinstance(extra, dict) else "mapping")
            elif k == "enum":
                values = node["enum"]
                out.append("string" if all(isinstance(v, str) for v in values) else "one of the allowed values")
            else:
                out.append({"number": "number", "integer": "integer", "boolean": "boolean", "null": "null"}.get(k, k))
        return " or ".join(out)

    def allowed(self, node):
        if "enum" in node:
            return ", ".join(_code(_inline(v)) for v in node["enum"])
        if "const" in node:
            return _code(node["const"])
        if node.get("type") == "array" and "enum" in node.get("items", {}):
            return "each of " + ", ".join(_code(_inline(v)) for v in node["items"]["enum"])
        bounds = []
        for key, sign in (("minimum", ">="), ("exclusiveMinimum", ">"), ("maximum", "<="), ("exclusiveMaximum", "<")):
            if key in node:
                bounds.append(f"{sign} {node[key]}")
        if "pattern" in node:
            bounds.append(f"matches {_code(node['pattern'])}")
        return ", ".join(bounds)

    def description(self, node):
        text = node.get("description")
        if not text and "$ref" in node:
            text = self.defs[_def_name(node["$ref"])].get("description", "")
        return " ".join(str(text or "").split())

    def row(self, rows, path, node):
        default = _code(_inline(node["default"])) if "default" in node else ""
        rows.append(
            (_code(path), _cell(self.describe_type(node)), default, self.allowed(node), _cell(self.description(node)))
        )

    def walk(self, rows, prefix, props):
        """One row per property; nested mappings (inline $defs, objects with properties) expand in place."""
        for key, node in props.items():
            path = f"{prefix}.{key}" if prefix else key
            self.row(rows, path, node)
            self.expand(rows, path, node)

    def expand(self, rows, path, node):
        if "$ref" in node:
            name = _def_name(node["$ref"])
            if name in SHARED:
                self.shared(name)
                return
            self.expand(rows, path, self.defs[name])
            return
        for alt in node.get("oneOf", []):
            self.expand(rows, path, alt)
        if "properties" in node:
            self.walk(rows, path, node["properties"])
        extra = node.get("additionalProperties")
        if isinstance(extra, dict) and ("$ref" in extra or "properties" in extra):
            self.expand(rows, f"{path}.<name>", extra)
        items = node.get("items")
        if isinstance(items, dict) and ("properties" in items or "$ref" in items):
            self.expand(rows, f"{path}[]", items)

    def shared(self, name):
        title, prefix = SHARED[name]
        if title in self.sections:
            return
        rows = self.section(title, SHARED_INTRO[title])
        node = self.defs[name]
        if "then" in node:  # finetunes: a list of fine-tunes or one
            node = self.defs[_def_name(node["else"]["$ref"])]
        self.walk(rows, prefix, node["properties"])

    def build(self):
        props = self.schema["properties"]
        top = self.section("Top level", "Keys at the top of a config file.")
        nested = []
        for key, node in props.items():
            self.row(top, key, node)  # models and tasks: their sections follow
            if key not in ("models", "tasks") and ("properties" in node or "$ref" in node):
                nested.append(key)
        for key in nested:
            self.walk(self.section(f"{key}", props[key].get("description", "")), key, props[key].get("properties", {}))
        models = self.section("Models", "`models.<model>`: one entry per model a task may use.")
        self.expand(models, "models.<model>", props["models"]["additionalProperties"])
        task = self.defs["task"]
        for case in task["allOf"]:
            kind = case["if"]["properties"]["type"]["const"]
            rows = self.section(TASK_TITLES[kind], f"`tasks.<task>` with `type: {kind}`.")
            self.walk(rows, "tasks.<task>", self.defs[_def_name(case["then"]["$ref"])]["properties"])
        return self

    def markdown(self):
        out = [
            "# Configuration reference",
            "",
            f"Generated from `schemas/config.schema.yaml` by `{COMMAND}`; do not edit by hand (a test fails "
            "when this page is stale). Every key of a config file: its type, its default (filled in when the key "
            "is left out), its allowed values and what it does. `<task>`, `<model>` and `<name>` stand for names "
            "you choose.",
            "",
            " ".join(str(self.schema.get("description", "")).split()),
            "",
        ]
        last = ["Fine-tuning", "Training", "Decoding", "Published rows"]
        order = [t for t in self.sections if t not in last] + [t for t in last if t in self.sections]
        for title in order:
            intro, rows = self.sections[title]
            out += [f"## {title}", ""]
            if intro:
                out += [" ".join(intro.split()), ""]
            out += ["| key | type | default | allowed | description |", "| --- | --- | --- | --- | --- |"]
            out += ["| " + " | ".join(r) + " |" for r in rows]
            out.append("")
        return "\n".join(out)


def render(schema_path=SCHEMA):
    schema = yaml.safe_load(Path(schema_path).read_text(encoding="utf-8"))
    return Reference(schema).build().markdown()


def write(path, text):
    """Atomically: a temporary file beside path, then os.replace."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--schema", default=str(SCHEMA))
    ap.add_argument("--output", default=str(OUTPUT))
    ap.add_argument("--check", action="store_true", help="exit 1 if the output is stale, write nothing")
    args = ap.parse_args(argv)
    text = render(args.schema)
    out = Path(args.output)
    if args.check:
        if not out.exists() or out.read_text(encoding="utf-8") != text:
            print(f"{out} is stale; regenerate it: {COMMAND}", file=sys.stderr)
            return 1
        return 0
    write(out, text)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
