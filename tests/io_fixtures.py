"""Shared fixtures for the io tests (kept out of conftest.py, which the lead owns)."""

from __future__ import annotations

from pathlib import Path

import pytest

IO_DATA = Path(__file__).parent / "data" / "io"
BAD = IO_DATA / "bad"
MINI_OBO = IO_DATA / "mini.obo"


@pytest.fixture(scope="module")
def mini_ontology(tmp_path_factory):
    from rd_interp.io.go import Ontology

    return Ontology.load(MINI_OBO)


@pytest.fixture(scope="module")
def shipped_ontology(tmp_path_factory):
    """The full shipped GO (a few seconds): loaded once per test module, cached by Ontology.load."""
    from rd_interp.io.go import Ontology

    return Ontology.load()
