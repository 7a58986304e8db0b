"""Tiny assets for the tests: randomly initialized LLaMA-style, BERT-style and encoder-decoder (T5,
BART) models with a real tokenizer from ../shared/data/tokenizers/, a tiny config, and a snakemake
runner."""

import copy
import json
import os
import re
from pathlib import Path

import yaml

import forked
from conftest import DATA_DIR, REPO

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


class ScriptJob:
    """Attribute and item access, .get: what a workflow script reads from snakemake.input, params,
    output and wildcards, for tests that run a script in-process."""

    def __init__(self, **kw):
        self.__dict__.update(kw)

    def __getitem__(self, key):
        return self.__dict__[key]

    def get(self, key, default=None):
        return self.__dict__.get(key, default)


def make_tiny_llama(folder, chat=True, seed=0):
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(DATA_DIR / "tokenizers" / "gpt2")
    tok.pad_token = tok.eos_token
    if chat:
        tok.chat_template = CHAT_TEMPLATE
    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.eos_token_id,
    )
    LlamaForCausalLM(cfg).save_pretrained(folder, safe_serialization=True)
    tok.save_pretrained(folder)
    return folder


def make_tiny_bert(folder, seed=0):
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    tok = AutoTokenizer.from_pretrained(DATA_DIR / "tokenizers" / "gpt2")
    tok.pad_token = tok.eos_token
    torch.manual_seed(seed)
    cfg = BertConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=512,
        pad_token_id=tok.eos_token_id,
    )
    BertModel(cfg).save_pretrained(folder, safe_serialization=True)
    tok.save_pretrained(folder)
    return folder


def seq2seq_tokenizer():
    """The gpt2 tokenizer made to behave like T5's and BART's: a pad token of its own (<pad>, the
    last id) and an EOS (<|endoftext|>) appended to every text encoded with special tokens."""
    from tokenizers.processors import TemplateProcessing
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(DATA_DIR / "tokenizers" / "gpt2")
    tok.add_special_tokens({"pad_token": "<pad>"})
    eos = tok.eos_token
    tok._tokenizer.post_processor = TemplateProcessing(
        single=f"$A {eos}", pair=f"$A {eos} $B {eos}", special_tokens=[(eos, tok.eos_token_id)]
    )
    return tok


def make_tiny_t5(folder, seed=0):
    """A 2+2-layer T5 (d_model 32); its decoder starts from the pad token, as T5's does."""
    import torch
    from transformers import T5Config, T5ForConditionalGeneration

    tok = seq2seq_tokenizer()
    torch.manual_seed(seed)
    cfg = T5Config(
        vocab_size=len(tok),
        d_model=32,
        d_kv=8,
        d_ff=64,
        num_layers=2,
        num_decoder_layers=2,
        num_heads=4,
        relative_attention_num_buckets=8,
        relative_attention_max_distance=32,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
        decoder_start_token_id=tok.pad_token_id,
    )
    T5ForConditionalGeneration(cfg).save_pretrained(folder, safe_serialization=True)
    tok.save_pretrained(folder)
    return folder


def make_tiny_bart(folder, seed=0):
    """A 2+2-layer BART (d_model 32); its decoder starts from the EOS token, as BART's does."""
    import torch
    from transformers import BartConfig, BartForConditionalGeneration

    tok = seq2seq_tokenizer()
    torch.manual_seed(seed)
    cfg = BartConfig(
        vocab_size=len(tok),
        d_model=32,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        max_position_embeddings=128,
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.eos_token_id,
        eos_token_id=tok.eos_token_id,
        decoder_start_token_id=tok.eos_token_id,
        forced_eos_token_id=None,
        init_std=0.2,
    )
    BartForConditionalGeneration(cfg).save_pretrained(folder, safe_serialization=True)
    tok.save_pretrained(folder)
    return folder


def tiny_config(models_dir, workdir):
    """Emotion task from the shared data, subsampled to a few dozen rows, two tiny models."""
    return {
        "data_dir": str(DATA_DIR),
        "report_title": "tiny <test> report",
        "notes": ["note with <b>markup</b> & ampersand"],
        "models": {
            "tiny_llama": {
                "type": "causal_lm",
                "role": "instruct",
                "source": {"path": str(Path(models_dir) / "llama")},
                "chat_template": True,
            },
            "tiny_bert": {"type": "encoder", "role": "encoder", "source": {"path": str(Path(models_dir) / "bert")}},
        },
        "tokenizer_study": {
            "tokenizers": {"gpt2": "tokenizers/gpt2", "llama3": "tokenizers/llama3"},
            "models": ["tiny_llama"],
            "task_texts": {"emotion": 10},
            "sentences": {"persian": "من می‌خواهم کتاب‌ها را بخوانم."},
        },
        "tasks": {
            "emotion": {
                "type": "classification",
                "files": {"train": "emotion/train.txt", "validation": "emotion/val.txt", "test": "emotion/test.txt"},
                "format": "semicolon",
                "label_column": "label_name",
                "labels": ["sadness", "joy", "love", "anger", "fear", "surprise"],
                "sample": {"train": 32, "validation": 8, "test": 16},
                "prompt": {"template": "Emotion of: {text}\nOne of {labels}.\nAnswer:"},
                "decoding": {"max_new_tokens": 3, "batch_size": 8},
                "models": ["tiny_llama", "tiny_bert"],
                "raw_prompt_models": ["tiny_llama"],
                "finetune": {
                    "tiny_llama": {
                        "lora": {"r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]},
                        "training": {
                            "epochs": 1,
                            "batch_size": 8,
                            "learning_rate": 0.01,
                            "eval_every": 2,
                            "checkpoint_every": 1,
                            "patience": 5,
                            "max_length": 96,
                        },
                    },
                    "tiny_bert": {
                        "lora": {"r": 4, "alpha": 8, "target_modules": ["query", "value"]},
                        "training": {
                            "epochs": 2,
                            "batch_size": 8,
                            "learning_rate": 0.01,
                            "eval_every": 2,
                            "patience": 5,
                            "max_length": 96,
                        },
                    },
                },
            }
        },
    }


def write_config(workdir, config):
    Path(workdir).mkdir(parents=True, exist_ok=True)
    (Path(workdir) / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))


def copy_workflow(dest):
    """A private copy of the workflow (Snakefile, rules, report captions, schemas, scripts), for tests
    that edit its code."""
    import shutil

    Path(dest).mkdir(parents=True, exist_ok=True)
    for part in ("Snakefile", "rules", "report", "schemas", "workflow_scripts", "envs", "resources", "profiles"):
        src = REPO / part
        (
            shutil.copytree(src, Path(dest) / part, ignore=shutil.ignore_patterns("__pycache__"))
            if src.is_dir()
            else shutil.copy2(src, Path(dest) / part)
        )
    return Path(dest) / "Snakefile"


# Two jobs at a time on the 2-core CI machine (each model job then takes one thread,
# common.cpu_threads): the tiny models' jobs are mostly Python start-up, which runs side by side.
CORES = os.environ.get("LORA_WF_TEST_CORES", "2")


def snakemake_call(workdir, *args, env=None, snakefile=None):
    """(arguments after `python -m snakemake`, environment) of a call on workdir."""
    args = ["-s", str(snakefile or REPO / "Snakefile"), "--directory", str(workdir), "--cores", CORES, *args]
    full_env = dict(os.environ, **(env or {}))
    # no PYTHONPATH: the workflow itself makes its parse and its jobs import the finetune_study
    # beside its Snakefile (a private copy's, which tests edit), not the installed one (checkout.py)
    full_env.pop("PYTHONPATH", None)
    return args, full_env


def snakemake(workdir, *args, env=None, check=True, snakefile=None):
    """`python -m snakemake` on workdir (a fork of an interpreter that has imported Snakemake: forked.py)."""
    proc = forked.run(*snakemake_call(workdir, *args, env=env, snakefile=snakefile), timeout=1800)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}")
    return proc


def finished_run(base, snakefile=None):
    """The tiny config run to a finished report: models under base/models, the run in base/work."""
    make_tiny_llama(Path(base) / "models" / "llama")
    make_tiny_bert(Path(base) / "models" / "bert")
    work = Path(base) / "work"
    config = tiny_config(Path(base) / "models", work)
    write_config(work, config)
    snakemake(work, "results/report.html", snakefile=snakefile)
    return work, config


def copy_run(run, dest):
    """A private copy of a finished run's working directory (results, logs, checkpoints, .snakemake):
    (work, config). Its models stay where the original's config points."""
    import shutil

    _, work, config = run
    target = Path(dest) / "work"
    shutil.copytree(work, target, symlinks=True)
    return target, copy.deepcopy(config)


def planned_jobs(workdir, *targets, snakefile=None, env=None):
    """Rule -> job count of a dry run (empty dict when nothing is planned)."""
    return job_counts(snakemake(workdir, "-n", *targets, snakefile=snakefile, env=env))


def job_counts(proc):
    """Rule -> job count from a dry run's output (empty dict when nothing is planned)."""
    out = proc.stdout + proc.stderr
    if "Nothing to be done" in out:
        return {}
    stats = out.split("Job stats:")[1].split("total")[0]
    jobs = {}
    for line in stats.splitlines():
        m = re.match(r"^(\w+)\s+(\d+)\s*$", line.strip())
        if m:
            jobs[m.group(1)] = int(m.group(2))
    jobs.pop("all", None)
    return jobs


def edited(config, fn):
    c = copy.deepcopy(config)
    fn(c)
    return c


def read_json(path):
    return json.loads(Path(path).read_text())
