"""One shape for every scorer: a `Score` (value, explanation, sub-scores by name) from a `Scorer` class.

A scorer's options are the keyword arguments of its constructor, as a backend's are (harness.backends.registry).
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Mapping


@dataclass(frozen=True)
class Score:
    """A float in [0, 1], or None when the scorer does not apply (or could not score: then `explanation` says why).

    `parts` are sub-scores by name: a name starting with "." is a part of this value and is reported under the
    spec's name ("field_accuracy.severity"), any other name is a value of its own ("code_fence")."""

    value: float | None
    explanation: str = ""
    parts: Mapping[str, Score] = field(default_factory=dict)

    def flatten(self, key: str) -> tuple[dict[str, float | None], dict[str, str]]:
        """({value name: value}, {value name: explanation}) under the spec's name `key`, in the order score rows
        have always had: this value's own ".parts", the value itself, then the values of their own."""
        own = [(key + n, s) for n, s in self.parts.items() if n.startswith(".")]
        siblings = [(n, s) for n, s in self.parts.items() if not n.startswith(".")]
        named = own + [(key, self)] + siblings
        return ({n: s.value for n, s in named}, {n: s.explanation for n, s in named if s.explanation})


class Scorer:
    """Base of task metrics and probe checks: construct with the options, then `score` outputs."""

    name: ClassVar[str]
    description: ClassVar[str] = ""
    option_types: ClassVar[dict[str, type | tuple]] = {}  # task metrics: allowed option -> accepted type(s)
    needs_schema: ClassVar[bool] = False

    def __init__(self, **opts: Any) -> None:
        self.opts = opts

    @classmethod
    def check(cls, opts: dict) -> None:
        """Raise ValueError('<option>: <message>') on option values no type check catches."""

    @classmethod
    def outputs(cls, key: str, opts: dict) -> list[str]:
        """Every value name a spec named `key` produces."""
        return [key]

    def score(self, output: str, reference: str = "", schema: dict | None = None) -> Score:
        raise NotImplementedError


class Check(Scorer):
    """A probe check: 1.0 when the answer follows one instruction, else 0.0 (IFEval "strict"). Its options are
    the keyword arguments of `rule`, a pure function (output, **options) -> bool."""

    rule: ClassVar[Callable[..., bool]]

    @classmethod
    def parameters(cls) -> Mapping[str, inspect.Parameter]:
        return inspect.signature(cls.rule).parameters

    def score(self, output: str, reference: str = "", schema: dict | None = None) -> Score:
        ok = bool(type(self).rule(output, **self.opts))
        doc = (type(self).rule.__doc__ or self.name).strip().split("\n")[0]
        return Score(float(ok), "" if ok else f"{self.name} not met: {doc}")
