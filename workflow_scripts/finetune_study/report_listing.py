"""The report's run listing: per task, its type, its runs as [model, run, role] in report order,
whether it has a training grid, its published reference numbers, and what its task type's section
needs (tasks/<type>.py report_entry). The report rule passes it as params, so a change to a role or
a published number rebuilds the report and nothing else. Standard library only."""

from . import published, runs, tasks


def report_listing(config, selected):
    """{task: entry} for the selected tasks ({name: task config})."""
    models = config["models"]
    out = {}
    for name, task in selected.items():
        spec = tasks.spec(task["type"])
        entry = {
            "type": task["type"],
            "runs": [[m, r, "baseline" if r == "baseline" else models[m]["role"]] for m, r in spec.report_runs(task)],
            "grid": bool(runs.grid_points(task)),
            "published": [published.load(p, config["data_dir"]) for p in task["published"]],
        }
        entry.update(spec.report_entry(name, task, config))
        out[name] = entry
    return out
