"""The documentation can be trusted: every schema property says what it does, the configuration
reference (docs/reference/config.md) is the one generated from the schema today, the site's nav
and its pages agree, and every config in the docs is one the workflow accepts.

Configs in the docs are the ```yaml blocks of docs/**/*.md and README.md:
- a block with a top-level `tasks:` key is a complete --configfile overlay of config.yaml: all of
  them are planned by real `snakemake -n --configfile config.yaml <block>...` calls (blocks whose
  models or tasks clash go to separate calls), after each is validated alone in-process;
- any other block is a fragment, deep-merged into config.yaml and checked in-process by the
  parse-time validation (schema, defaults, cross-checks: finetune_study/config.py). A fragment
  whose first line is `# in: <dotted.path>` (e.g. `# in: tasks.emotion`) is merged at that path.
YAML that is not a workflow config goes in another fence (```text). `mkdocs build --strict`
itself runs in .ci/run, not here."""

import copy
import re
import subprocess
import sys

import pytest
import yaml
from snakemake.utils import update_config

import tiny
from conftest import DATA_DIR, REPO
from finetune_study import config as cfg

SCHEMA_PATH = REPO / "schemas" / "config.schema.yaml"
REFERENCE = REPO / "docs" / "reference" / "config.md"
# keywords a property's schema may hold; anything else is a typo, or a flow-style description
# whose unquoted comma split it into a second, empty key
KEYWORDS = {
    "type", "properties", "additionalProperties", "required", "default", "description", "enum", "const",
    "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "items", "minItems", "uniqueItems",
    "pattern", "$ref", "oneOf", "allOf", "anyOf", "if", "then", "else", "propertyNames", "minProperties",
    "minLength", "maxLength", "maxItems", "maxProperties", "title",
}  # fmt: skip


def _schema():
    return yaml.safe_load(SCHEMA_PATH.read_text(encoding="utf-8"))


def _properties(schema):
    """(where, name, property schema) of every entry of every `properties` mapping in the schema."""
    out = []

    def walk(node, where):
        if isinstance(node, dict):
            for name, sub in (node.get("properties") or {}).items():
                out.append((f"{where}.{name}" if where else name, name, sub))
                walk(sub, f"{where}.{name}" if where else name)
            for key in ("items", "additionalProperties", "then", "else"):  # an `if` only tests a value
                walk(node.get(key), f"{where}[{key}]")
            for key in ("oneOf", "allOf", "anyOf"):
                for i, sub in enumerate(node.get(key) or []):
                    walk(sub, f"{where}[{key}{i}]")

    walk(schema, "")
    for name, sub in schema["$defs"].items():
        walk(sub, f"$defs.{name}")
    return out


def test_every_schema_property_has_a_description():
    schema = _schema()
    missing = []
    for where, _, sub in _properties(schema):
        text = sub.get("description")
        if not text and "$ref" in sub:  # a property that is a $defs entry may take that entry's description
            text = schema["$defs"][sub["$ref"].rsplit("/", 1)[-1]].get("description")
        if not (isinstance(text, str) and text.strip()):
            missing.append(where)
    assert missing == [], f"schema properties without a description (add one in {SCHEMA_PATH.name}): {missing}"


def test_no_schema_property_holds_an_unknown_keyword():
    found = [(where, k) for where, _, sub in _properties(_schema()) for k in sub if k not in KEYWORDS]
    assert found == [], f"not JSON Schema keywords (quote a description that holds a comma): {found}"


def test_the_walk_sees_nested_and_defs_properties():
    # the description check can fail: it reaches properties under $defs, items and additionalProperties
    names = {where for where, _, _ in _properties(_schema())}
    for where in (
        "tokenizer_study.conversation[items].role",
        "$defs.training.learning_rate",
        "$defs.source_target_task.sample.test",
    ):
        assert where in names


def test_config_reference_is_current(tmp_path):
    fresh = tmp_path / "config.md"
    subprocess.run(
        [sys.executable, "-m", "finetune_study.config_reference", "--output", str(fresh)],
        check=True,
        capture_output=True,
        cwd=tmp_path,
    )
    assert REFERENCE.exists() and REFERENCE.read_text(encoding="utf-8") == fresh.read_text(encoding="utf-8"), (
        f"{REFERENCE.relative_to(REPO)} is stale (the schema changed); regenerate it: "
        "python -m finetune_study.config_reference"
    )


def _reference_rows():
    rows = {}
    for line in REFERENCE.read_text(encoding="utf-8").splitlines():
        m = re.match(r"^\| `([^`]+)` \| (.*) \|$", line)
        if m:
            rows[m.group(1)] = [c.strip() for c in re.split(r"(?<!\\)\|", m.group(2))]
    return rows


def test_config_reference_rows_say_what_the_schema_says():
    rows = _reference_rows()
    # hand-read from schemas/config.schema.yaml: type, default, allowed values
    assert rows["tasks.<task>.finetune.<model>.training.learning_rate"][:3] == ["number", "`0.0002`", "> 0"]
    assert rows["models.<model>.dtype"][1:3] == ["`auto`", "`auto`, `float32`, `bfloat16`, `float16`"]
    assert rows["tasks.<task>.finetune.<model>.method"][1] == "`lora`"
    assert rows["<decoding>.num_beams"][:3] == ["integer", "`1`", ">= 1"]
    assert rows["tasks.<task>.likelihood_normalization"][1:3] == ["`mean`", "`sum`, `mean`, `chars`"]
    assert rows["tasks.<task>.field"][2] == "`summarization`, `translation`"
    assert rows["models.<model>.resources.mem_mb"][:3] == ["integer", "`8000`", ">= 100"]
    assert rows["tokenizer_study.conversation[].role"][2] == "`system`, `user`, `assistant`"
    # every top-level key has a row
    assert set(_schema()["properties"]) <= set(rows)


# ---------------------------------------------------------------- the site's pages


def _nav_pages(nav):
    for entry in nav:
        if isinstance(entry, str):
            yield entry
        else:
            for value in entry.values():
                yield from ([value] if isinstance(value, str) else _nav_pages(value))


def test_every_nav_page_exists_and_every_page_is_in_the_nav():
    site = yaml.safe_load((REPO / "mkdocs.yml").read_text(encoding="utf-8"))
    docs = REPO / site["docs_dir"]
    nav = list(_nav_pages(site["nav"]))
    assert len(nav) == len(set(nav)), "a page is twice in the nav"
    assert [p for p in nav if not (docs / p).is_file()] == [], "pages in mkdocs.yml's nav that do not exist"
    pages = sorted(str(p.relative_to(docs)) for p in docs.rglob("*.md"))
    assert [p for p in pages if p not in nav] == [], "pages under docs/ missing from mkdocs.yml's nav"
    assert not (REPO / site["site_dir"]).resolve().is_relative_to(docs.resolve())


# ---------------------------------------------------------------- configs in the docs


def yaml_blocks():
    """(page:line, text) of every ```yaml block in README.md and docs/**/*.md."""
    blocks = []
    for page in [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]:
        lines = page.read_text(encoding="utf-8").splitlines()
        start = None
        for i, line in enumerate(lines):
            fence = line.strip()
            if start is None and re.fullmatch(r"```\s*yaml\b.*", fence):
                start = i + 1
            elif start is not None and fence.startswith("```"):
                blocks.append((f"{page.relative_to(REPO)}:{start}", "\n".join(lines[start:i])))
                start = None
    return blocks


BLOCKS = yaml_blocks()
COMPLETE = [(w, t) for w, t in BLOCKS if "tasks" in (yaml.safe_load(t) or {})]
FRAGMENTS = [(w, t) for w, t in BLOCKS if (w, t) not in COMPLETE]


def _default_config():
    config = yaml.safe_load((REPO / "config.yaml").read_text(encoding="utf-8"))
    config["data_dir"] = str(DATA_DIR)
    return config


def _fragment_overlay(text):
    """The block as an overlay of config.yaml: nested under `# in: <dotted.path>` when it starts so."""
    value = yaml.safe_load(text)
    m = re.match(r"\s*#\s*in:\s*(\S+)", text)
    if m:
        for part in reversed(m.group(1).split(".")):
            value = {part: value}
    return value


def _validate(overlay, tmp_path, where):
    """The parse-time validation of config.yaml with overlay merged over it, as a --configfile."""
    path = tmp_path / (re.sub(r"[^A-Za-z0-9]+", "_", where) + ".yaml")
    path.write_text(yaml.safe_dump(overlay, sort_keys=False), encoding="utf-8")
    merged = _default_config()
    update_config(merged, copy.deepcopy(overlay))
    cfg.validate(merged, SCHEMA_PATH, files=[str(REPO / "config.yaml"), str(path)])
    return path


def test_the_docs_have_configs():
    # the per-type pages each hold a complete config
    pages = {w.split(":")[0] for w, _ in COMPLETE}
    for kind in ("classification", "generation", "token_classification", "source_target"):
        assert f"docs/task_types/{kind}.md" in pages, f"docs/task_types/{kind}.md has no complete ```yaml config"


@pytest.mark.parametrize("where,text", FRAGMENTS, ids=[w for w, _ in FRAGMENTS])
def test_config_fragment_in_the_docs_validates(where, text, tmp_path):
    try:
        _validate(_fragment_overlay(text), tmp_path, where)
    except cfg.ConfigError as e:
        pytest.fail(f"{where}: the ```yaml block, merged into config.yaml, fails validation: {e}")


def _groups(blocks):
    """Blocks in as few groups as possible where no two define one model or task differently."""
    groups = []
    for where, text in blocks:
        overlay = yaml.safe_load(text)
        for group in groups:
            defined = group["defined"]
            if all(
                defined.get((key, name), value) == value
                for key in ("models", "tasks")
                for name, value in (overlay.get(key) or {}).items()
            ):
                break
        else:
            group = {"defined": {}, "blocks": []}
            groups.append(group)
        group["blocks"].append((where, overlay))
        for key in ("models", "tasks"):
            for name, value in (overlay.get(key) or {}).items():
                group["defined"][(key, name)] = value
    return groups


def test_complete_configs_in_the_docs_plan(tmp_path):
    """Each complete block validates alone, then all of them are planned with snakemake -n."""
    assert COMPLETE, "no complete ```yaml config (top-level tasks:) in the docs"
    for i, group in enumerate(_groups(COMPLETE)):
        files, selected = [], set()
        for where, overlay in group["blocks"]:
            try:
                files.append(_validate(overlay, tmp_path, where))
            except cfg.ConfigError as e:
                pytest.fail(f"{where}: the ```yaml config fails validation: {e}")
            merged = _default_config()
            update_config(merged, copy.deepcopy(overlay))
            selected |= set(merged.get("run_tasks") or merged["tasks"])
        select = tmp_path / f"run_tasks_{i}.yaml"  # every block's tasks, not only the last block's
        select.write_text(yaml.safe_dump({"run_tasks": sorted(selected)}))
        work = tmp_path / f"work{i}"
        work.mkdir()
        proc = tiny.snakemake(
            work,
            "-n",
            "results/report.html",
            "--configfile",
            str(REPO / "config.yaml"),
            *map(str, files),
            str(select),
            "--config",
            f"data_dir={DATA_DIR}",
            env={"LORA_WF_HUB_CHECK": "0"},  # hub models are planned, not looked up in the cache
            check=False,
        )
        out = proc.stdout + proc.stderr
        names = ", ".join(w for w, _ in group["blocks"])
        assert proc.returncode == 0, f"snakemake -n of the docs' configs ({names}) failed:\n{out[-3000:]}"
        for task in selected:
            assert f"results/{task}/" in out, f"{task} (from {names}) planned no job"


def test_a_bad_config_block_fails_validation_naming_its_file(tmp_path):
    """The check can fail: a block whose task runs an undefined model, and clashing blocks are split."""
    bad = {"tasks": {"emotion": {"models": ["gpt5"]}}}
    with pytest.raises(cfg.ConfigError, match=r"a_bad_block_md_1\.yaml: tasks\.emotion\.models: model 'gpt5'"):
        _validate(bad, tmp_path, "a bad block.md:1")
    one, other = "tasks: {emotion: {seed: 1}}", "tasks: {emotion: {seed: 2}}"
    assert [len(g["blocks"]) for g in _groups([("a", one), ("b", other), ("c", one)])] == [2, 1]
