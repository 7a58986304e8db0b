"""Instruction-generation data: records of {"id", "instruction", "input", "output"}; a record
without an instruction or an output is an error naming it. Standard library only."""

from ..common import PipelineError
from ..data import require_columns


def normalize(rows, task, source):
    """Map raw records to {"id", "instruction", "input", "output"}."""
    ins, inp, outc = task["instruction_column"], task["input_column"], task["output_column"]
    require_columns(rows, (ins, outc), source, "records", "field", "instruction_column/output_column")
    out = []
    for i, row in enumerate(rows):
        instruction, output = str(row.get(ins) or "").strip(), str(row.get(outc) or "").strip()
        if not instruction or not output:
            missing = "instruction" if not instruction else "output"
            raise PipelineError(f"{source}: record {i + 1} has no {missing}; fix or remove it")
        out.append({"id": i, "instruction": instruction, "input": str(row.get(inp) or "").strip(), "output": output})
    return out


def stratify_labels(task):
    return None  # plain random subsamples


def hub_rows(rows, features, task):
    return rows


def derived_settings(task, splits, sources):
    return {}  # nothing is taken from the files


def split_summary(rows, task, duplicates_removed=0):
    return {
        "rows": len(rows),
        "with_input": sum(bool(r["input"]) for r in rows),
        "duplicates_removed": duplicates_removed,
    }
