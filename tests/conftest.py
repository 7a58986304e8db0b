"""Shared pytest setup: makes workflow_scripts importable and points at the shared data."""
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow_scripts"))
DATA_DIR = Path(os.environ.get("LORA_WF_DATA_DIR", REPO.parent / "shared" / "data")).resolve()
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
