"""A diagnosis: a stable kind, a one-line summary, concrete remedies, the evidence and details."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Diagnosis:
    kind: str
    summary: str
    remedies: list[str] = field(default_factory=list)
    evidence: str = ""
    details: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"kind": self.kind, "summary": self.summary, "remedies": list(self.remedies),
                "evidence": self.evidence, "details": dict(self.details)}

    def to_event(self):
        """The engine event for this diagnosis (engine.events.Failed)."""
        from engine.events import Failed

        return Failed(kind=self.kind, summary=self.summary, evidence=self.evidence)

    def format(self) -> str:
        """Plain text for a terminal: summary, numbered remedies, evidence."""
        out = [f"{self.kind}: {self.summary}"]
        out += [f"  {i}. {r}" for i, r in enumerate(self.remedies, 1)]
        if self.evidence:
            out += ["", "evidence:", *("  " + ln for ln in self.evidence.splitlines())]
        return "\n".join(out)
