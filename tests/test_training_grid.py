"""The training grid (a fine-tune entry's `grid:`): point names, the run names they give, parse-time
errors, and the real pipeline on a tiny encoder: each point its own cached fine-tune, the best point
chosen on validation loss (checked against the train logs directly), the exact rerun plan after
adding or removing a grid value."""

import re
from pathlib import Path

import pytest

import tiny
from finetune_study import grid_summary, keys, runs, training_grid


def entry(**grid):
    return {
        "method": "lora",
        "lora": {"r": 8, "alpha": 16},
        "training": {"seed": 0, "learning_rate": 0.01},
        "grid": grid,
    }


def test_points_are_named_and_set_like_hand_written_entries():
    points = training_grid.expand(entry(**{"lora.r": [4, 8, 16], "training.learning_rate": [1e-4, 1e-3]}))
    assert list(points) == ["r4_lr0.0001", "r4_lr0.001", "r8_lr0.0001", "r8_lr0.001", "r16_lr0.0001", "r16_lr0.001"]
    p = points["r16_lr0.0001"]
    assert p["lora"] == {"r": 16, "alpha": 16} and p["training"] == {"seed": 0, "learning_rate": 0.0001}
    assert "grid" not in p and p["point"] == "r16_lr0.0001"
    assert p["swept"] == {"lora.r": 16, "training.learning_rate": 0.0001}
    # the base entry is untouched (points are copies)
    assert training_grid.expand(entry(**{"lora.r": [4]}))["r4"]["lora"]["r"] == 4
    e = entry(**{"lora.r": [4]})
    training_grid.expand(e)
    assert e["lora"]["r"] == 8


def test_value_formatting():
    assert [training_grid.format_value(v) for v in (1.0, 0.5, 3, -1, True, "all", 1e-05)] == [
        "1",
        "0.5",
        "3",
        "m1",
        "true",
        "all",
        "1em05",
    ]
    assert list(training_grid.expand(entry(**{"lora.dropout": [0.0, 0.1], "lora.bias": ["none"]}))) == [
        "do0_biasnone",
        "do0.1_biasnone",
    ]


@pytest.mark.parametrize(
    "grid, message",
    [
        ({"r": [4]}, "sweep a setting as block.setting"),
        ({"model.r": [4]}, "sweep a setting as block.setting"),
        ({"training.seeds": [[0, 1]]}, "seeds are their own axis"),
        ({"training.seed": [0, 1]}, "seeds are their own axis"),
        ({"lora.r": []}, "non-empty list"),
        ({"lora.target_modules": [["q_proj"]]}, "numbers, strings or booleans"),
        ({"lora.r": [4, 4.0]}, "both named 'r4'"),
    ],
)
def test_bad_grids_say_what_to_fix(grid, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        training_grid.expand(entry(**grid))


def test_run_names_round_trip_and_match_the_rule_pattern():
    task = {
        "models": ["m"],
        "finetune": {
            "m": [
                {
                    "method": "lora",
                    "training": {"seed": 0, "seeds": [0, 1]},
                    "lora": {"r": 8},
                    "grid": {"lora.r": [4, 8], "training.learning_rate": [0.001, 0.01]},
                },
                {
                    "method": "prompt_tuning",
                    "training": {"seed": 3},
                    "prompt": {"num_virtual_tokens": 8},
                    "grid": {"prompt.num_virtual_tokens": [4, 16]},
                },
                {"method": "full", "training": {"seed": 0}},
            ]
        },
    }
    names = [r for _, r in runs.methods(task)]
    # methods x points x seeds, in config order
    assert names == ["zeroshot"] + [
        f"lora-r{r}_lr{lr}-s{s}" for r in (4, 8) for lr in ("0.001", "0.01") for s in (0, 1)
    ] + ["prompt_tuning-vt4-s3", "prompt_tuning-vt16-s3", "full-s0"]
    for run in names[1:]:
        assert re.fullmatch(runs.FINETUNED_RUN, run), run
        method, point, seed = runs.parse_run_point(run)
        assert runs.run_name(method, seed, point) == run
        assert runs.run_group_of(run) == run.rpartition("-s")[0]
    assert runs.parse_run_point("lora-r4_lr0.01-s1") == ("lora", "r4_lr0.01", 1)
    assert runs.run_method("prompt_tuning-vt4") == "prompt_tuning" and runs.run_point("prompt_tuning-vt4-s3") == "vt4"
    assert runs.parse_run_point("zeroshot") is None and runs.parse_run_point("lora-r 4-s0") is None
    # each point's key holds its own values, and nothing else differs between two points
    config = {"models": {"m": {"type": "encoder", "trust_remote_code": False, "dtype": "float32"}}}
    task.update(type="classification", labels=["a", "b"])
    a = keys.finetune_settings(config, task, "m", "lora-r4_lr0.01-s0")
    b = keys.finetune_settings(config, task, "m", "lora-r8_lr0.01-s0")
    assert (a["finetune"]["lora"]["r"], b["finetune"]["lora"]["r"]) == (4, 8)
    b["finetune"]["lora"]["r"] = 4
    assert a == b


def test_best_point_is_the_lowest_mean_validation_loss_never_test():
    points = {"a": {"lora.r": 4}, "b": {"lora.r": 8}, "c": {"lora.r": 16}}
    val = {"a": [1.0, 1.2], "b": [0.9, 1.1], "c": [0.5, 1.7]}  # means 1.1, 1.0, 1.1: b
    test = {
        k: [{"accuracy": {"mean": acc, "low": 0, "high": 1}}] * 2 for k, acc in (("a", 0.9), ("b", 0.1), ("c", 0.95))
    }  # b is worst on test, and still chosen
    s = grid_summary.summarize(points, val, test, ["accuracy"])
    assert s["best"] == "b" and s["swept"] == ["lora.r"]
    row = {p["name"]: p for p in s["points"]}
    assert row["c"]["val_loss"]["mean"] == pytest.approx(1.1)
    assert row["c"]["val_loss"]["sd"] == pytest.approx(0.8485281374, rel=1e-9)  # sd of (0.5, 1.7), ddof 1
    assert row["a"]["test"]["accuracy"] == {"mean": pytest.approx(0.9), "sd": pytest.approx(0.0)}


def grid_config(models_dir, work, lrs=(0.01, 0.001)):
    c = tiny.tiny_config(models_dir, work)
    c["tokenizer_study"] = None
    e = c["tasks"]["emotion"]
    e.update(models=["tiny_bert"], raw_prompt_models=[])
    e["finetune"] = {
        "tiny_bert": [
            {
                "lora": {"r": 4, "alpha": 8, "target_modules": ["query", "value"]},
                "training": {
                    "max_steps": 4,
                    "batch_size": 8,
                    "learning_rate": 0.01,
                    "eval_every": 2,
                    "patience": 5,
                    "max_length": 64,
                },
                "grid": {"lora.r": [2, 4], "training.learning_rate": list(lrs)},
            },
            {"method": "ia3", "training": {"max_steps": 2, "max_length": 64}},
        ]
    }
    e["published"] = [
        {
            "run": "a paper's <b>LoRA</b>",
            "source": "Table 2",
            "values": {"accuracy": 0.5, "weighted_f1": 0.25},
            "n": 7600,
        }
    ]
    return c


@pytest.fixture(scope="module")
def grid_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("grid")
    tiny.make_tiny_bert(base / "models" / "bert")
    work = base / "work"
    config = grid_config(base / "models", work)
    tiny.write_config(work, config)
    tiny.snakemake(work, "results/report.html")
    return work, config


def test_each_point_is_its_own_fine_tune_and_the_best_is_chosen_on_validation(grid_run):
    work, _ = grid_run
    task = work / "results" / "emotion"
    points = ["r2_lr0.01", "r2_lr0.001", "r4_lr0.01", "r4_lr0.001"]
    logs = {p: tiny.read_json(task / "tiny_bert" / f"lora-{p}-s0" / "train_log.json") for p in points}
    # LoRA on query and value of 2 layers of width 32: r * (32 + 32) per module, 4 modules -> 256 r
    assert logs["r4_lr0.01"]["parameters"]["trainable"] - logs["r2_lr0.01"]["parameters"]["trainable"] == 256 * 2
    assert logs["r2_lr0.01"]["parameters"]["trainable"] == logs["r2_lr0.001"]["parameters"]["trainable"]
    summary = tiny.read_json(task / "training_grid.json")["grids"]
    assert [(g["model"], g["method"]) for g in summary] == [("tiny_bert", "lora")]  # ia3 has no grid
    g = summary[0]
    assert [p["name"] for p in g["points"]] == ["r2_lr0.01", "r2_lr0.001", "r4_lr0.01", "r4_lr0.001"]
    assert g["best"] == min(points, key=lambda p: logs[p]["best_val_loss"])
    for p in g["points"]:
        metrics = tiny.read_json(task / "tiny_bert" / f"lora-{p['name']}-s0" / "metrics.json")
        assert p["test"]["accuracy"]["mean"] == metrics["accuracy"]
    assert (task / "figures" / "training_grid.png").stat().st_size > 10_000
    html = (work / "results" / "report.html").read_text()
    assert "Training grid" in html and f"★ {g['best']}" in html
    # the published reference row: marked, escaped, its numbers as given, no interval
    row = html.split("published, not reproduced: a paper&#x27;s &lt;b&gt;LoRA&lt;/b&gt;")[1].split("</tr>")[0]
    # cells after the run: role, seeds, scoring, dtype ("-"), then accuracy, macro F1, weighted F1
    assert re.findall(r"<td[^>]*>([^<]*)</td>", row)[3:7] == ["-", "0.500", "-", "0.250"] and "7600" in row
    csv = (work / "results" / "metrics.csv").read_text().splitlines()
    assert csv[0].split(",")[3:5] == ["method", "grid_point"]
    assert sum(",lora,r4_lr0.001,0," in line for line in csv) == 1 and sum(",ia3,,0," in line for line in csv) == 1


def test_adding_a_value_runs_only_the_new_points_and_removing_one_only_the_summaries(grid_run, tmp_path):
    work, config = grid_run
    models = Path(config["models"]["tiny_bert"]["source"]["path"]).parent
    assert tiny.planned_jobs(work, "results/report.html") == {}
    tiny.write_config(work, grid_config(models, work, lrs=(0.01, 0.001, 0.1)))
    assert tiny.planned_jobs(work, "results/report.html") == {
        "finetune": 2,
        "predict": 2,
        "score": 2,
        "compare": 1,
        "figures": 1,
        "training_grid": 1,
        "report": 1,
    }
    tiny.write_config(work, grid_config(models, work, lrs=(0.01,)))
    assert tiny.planned_jobs(work, "results/report.html") == {
        "compare": 1,
        "figures": 1,
        "training_grid": 1,
        "report": 1,
    }
    tiny.write_config(work, config)
    assert tiny.planned_jobs(work, "results/report.html") == {}


@pytest.mark.parametrize(
    "edit, message",
    [
        (
            lambda ft: ft.update(grid={"lora.r": [4, 0]}),
            "config.yaml: tasks.emotion.finetune.tiny_bert[0].grid: point r0: lora.r: 0 is less than the minimum of 1",
        ),
        (
            lambda ft: ft.update(method="full", grid={"lora.r": [4, 8]}),
            "config.yaml: tasks.emotion.finetune.tiny_bert[0].grid: ['lora.r'] not read by method full; sweep training.* settings",
        ),
        (
            lambda ft: ft.update(grid={"lora.rank": [4]}),
            "config.yaml: tasks.emotion.finetune.tiny_bert[0].grid: point rank4: lora: Additional properties are not allowed "
            "('rank' was unexpected)",
        ),
    ],
)
def test_a_bad_grid_is_one_line_at_parse_time(tmp_path, edit, message):
    work = tmp_path / "work"
    config = grid_config(tmp_path / "models", work)
    edit(config["tasks"]["emotion"]["finetune"]["tiny_bert"][0])
    tiny.write_config(work, config)
    proc = tiny.snakemake(work, "-n", "results/report.html", check=False)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "Error: " + message in out, out[-2000:]
    assert not (work / "results").exists()
