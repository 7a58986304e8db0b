"""Canonical strings and short hashes of settings: the same settings always give the same string
(and hash), so a rule's params never change without a real change. Standard library only."""

import hashlib
import json


def canonical(obj) -> str:
    """A deterministic string for rule params: same settings, same string, no spurious reruns."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def short_hash(obj) -> str:
    return hashlib.sha256(canonical(obj).encode()).hexdigest()[:12]
