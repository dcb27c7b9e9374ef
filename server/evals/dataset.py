"""Eval datasets: the labelled cases of a JSONL file, and the pages each case expects."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from pydantic import BaseModel, Field, ValidationError


class EvalDatasetError(ValueError):
    """A dataset file that cannot be read as eval cases."""


def page_of(source: str) -> str:
    """A document path without its `#anchor`."""
    return source.split("#", 1)[0]


class EvalCase(BaseModel):
    id: str
    question: str = Field(min_length=1)
    expected_sources: list[str] = Field(default_factory=list)
    answerable: bool
    must_mention: list[str] = Field(default_factory=list)
    version: str | None = None
    notes: str = ""

    @property
    def expected_pages(self) -> set[str]:
        return {page_of(source) for source in self.expected_sources}


def case_version(case: EvalCase, default: str | None) -> str | None:
    """The version label a case reads: its own, else the run's."""
    return case.version if case.version is not None else default


def load_cases(path: Path) -> list[EvalCase]:
    """The cases of a JSONL dataset; a malformed line fails with its line number."""
    cases: list[EvalCase] = []
    seen: set[str] = set()
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            case = EvalCase.model_validate(json.loads(line))
        except (json.JSONDecodeError, ValidationError) as error:
            first = str(error).splitlines()[0]
            raise EvalDatasetError(f"{path}:{number}: not an eval case ({first})") from error
        if case.id in seen:
            raise EvalDatasetError(f"{path}:{number}: duplicate case id {case.id!r}")
        seen.add(case.id)
        cases.append(case)
    if not cases:
        raise EvalDatasetError(f"{path} holds no eval cases")
    return cases


def dataset_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
