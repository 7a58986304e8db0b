"""Snakemake's own report of a finished run (`snakemake --report report.zip`, rules' report() flags,
captions under report/): every figure of the run, byte for byte the figures results/report.html
embeds, with metrics.csv and the study report, each under its task's category and stage with its
caption rendered; building it runs no job. check_report() is shared with the
generation, token-classification and source -> target pipeline tests, on their finished runs."""

import base64
import hashlib
import json
import re
import zipfile

import forked
import tiny

# the stage (report subcategory) of each figure, by file name; every other figure of a task is "evaluation"
STAGES = {
    "training.png": "fine-tuning",
    "gen_training.png": "fine-tuning",
    "ner_training.png": "fine-tuning",
    "target_training.png": "fine-tuning",
    "training_grid.png": "training grid",
}


def sha(data):
    return hashlib.sha256(data).hexdigest()


def stamps(work):
    """Every file under results/ and benchmarks/ with its modification time: a job that ran changes them."""
    return {p: p.stat().st_mtime_ns for d in ("results", "benchmarks") for p in (work / d).rglob("*") if p.is_file()}


def build_report(work, dest, snakefile=None):
    """`snakemake --report dest` in a finished run's folder, as a user types it (no --cores)."""
    args, env = tiny.snakemake_call(work, "--report", str(dest), snakefile=snakefile)
    at = args.index("--cores")
    del args[at : at + 2]
    proc = forked.run(args, env, timeout=600)
    assert proc.returncode == 0, f"snakemake --report failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    return proc


def report_data(index_html):
    """(results, categories, workflow description) that Snakemake's report page holds as JSON."""

    def var(script_id, name):
        m = re.search(rf'<script id="{script_id}">\s*var {name} = (.*?);\s*</script>', index_html, re.S)
        assert m, f"no {name} in the report page"
        return json.loads(m.group(1))

    return var("results", "results"), var("categories", "categories"), var("workflow-desc", "workflow_desc")


def check_report(work, tmp_path, snakefile=None):
    """Build report.zip of the finished run in work and check it against the run's own files:
    every PNG under results/ (found by globbing, independently of the rules) is in it byte for
    byte, and these are exactly the figures results/report.html embeds; metrics.csv and
    results/report.html are in it; each figure sits under its task's category and stage with a
    caption that names its task; no job runs (no file under results/ or benchmarks/ changes).
    Returns (results, categories)."""
    figures = sorted((work / "results").glob("**/*.png"))
    assert figures, f"no figure under {work / 'results'}"
    before = stamps(work)

    dest = tmp_path / "report.zip"
    build_report(work, dest, snakefile)
    with zipfile.ZipFile(dest) as z:
        members = {name: z.read(name) for name in z.namelist()}
    index = members.pop("report/report.html").decode()
    stored = {sha(data) for data in members.values()}
    stored_png = {sha(data) for name, data in members.items() if name.endswith(".png")}

    missing = [str(p.relative_to(work)) for p in figures if sha(p.read_bytes()) not in stored]
    assert not missing, f"figures missing from report.zip: {missing}"
    own = (work / "results" / "report.html").read_text()
    embedded = {sha(base64.b64decode(b)) for b in re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", own)}
    # every figure of the run is in the zip, and every figure the study report shows is one of them
    # (a section may leave a figure out, e.g. a task's training curves when it has no cost table)
    assert embedded and stored_png == {sha(p.read_bytes()) for p in figures} and embedded <= stored_png
    for table in ("metrics.csv", "report.html"):
        assert sha((work / "results" / table).read_bytes()) in stored, f"results/{table} missing from report.zip"

    results, categories, description = report_data(index)
    assert "Fine-tuning study" in description
    assert set(categories["all tasks"]["results"]) == {"results/metrics.csv", "results/report.html"}
    for p in figures:
        rel = p.relative_to(work).as_posix()
        caption = results[rel]["caption"]
        parts = rel.split("/")
        if parts[1] == "tokenizers":
            assert rel in categories["tokenizer study"]["tokenizers"]
            assert "tokenizer" in caption
            continue
        task, stage = parts[1], STAGES.get(p.name, "evaluation")
        assert parts[2] == "figures" and rel in categories[task][stage], (rel, categories.get(task))
        assert f"Task <strong>{task}</strong>" in caption, (rel, caption)  # the template's task, as RST bold

    assert stamps(work) == before, "snakemake --report ran a job: results changed"
    return results, categories


def test_report_zip_of_the_tiny_run(tiny_run, tmp_path):
    """Classification task and tokenizer study: figures, the comparison table and the tokenizer
    table under their categories; the one-file report.html holds every figure inline."""
    _, work, _ = tiny_run
    results, categories = check_report(work, tmp_path)
    assert categories["emotion"] == {
        "evaluation": [
            "results/emotion/comparison.json",
            "results/emotion/figures/confusion.png",
            "results/emotion/figures/scores.png",
        ],
        "fine-tuning": ["results/emotion/figures/training.png"],
    }
    assert "McNemar" in results["results/emotion/comparison.json"]["caption"]
    assert "results/tokenizers/table.json" in categories["tokenizer study"]["tokenizers"]

    page = tmp_path / "report.html"
    build_report(work, page)
    html = page.read_text()
    for p in sorted((work / "results").glob("**/*.png")):
        assert base64.b64encode(p.read_bytes()).decode() in html, p


def test_report_of_an_unfinished_run_names_the_missing_file(tiny_run, tmp_path):
    """The tiny config in an empty folder: no result yet, so the report stops on a missing file."""
    _, _, config = tiny_run
    work = tmp_path / "work"
    tiny.write_config(work, config)
    args, env = tiny.snakemake_call(work, "--report", str(tmp_path / "report.zip"))
    proc = forked.run(args, env, timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and re.search(r"File results/\S+ marked for report but does not exist", out), out
    assert not (tmp_path / "report.zip").exists() and not (work / "results").exists()
