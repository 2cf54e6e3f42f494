"""What a chat answer is generated with (ctrl+t in the chat pane): temperature, top_p, max new tokens, system prompt,
and whether the earlier turns are sent."""
from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass
class ChatSettings:
    temperature: float = 0.0  # greedy, as the tutorial's `swift infer --temperature 0`
    top_p: float | None = None  # None: the model's generation_config
    max_new_tokens: int = 512
    system: str | None = None  # None: the checkpoint's own (args.json), as `swift infer --adapters` does
    history: bool = True  # send the earlier turns (a model trained single-turn may answer better without)

    def describe(self) -> str:
        parts = [f"temp {self.temperature:g}"]
        if self.top_p is not None:
            parts.append(f"top_p {self.top_p:g}")
        parts.append(f"max {self.max_new_tokens}")
        parts.append("system: custom" if self.system is not None else "system: from the checkpoint")
        parts.append("history on" if self.history else "history off")
        return " · ".join(parts)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def parse(cls, temperature: str, top_p: str, max_new_tokens: str, system: str, history: bool) -> ChatSettings:
        """From the settings form's text; ValueError with one line on bad input."""
        def number(text: str, name: str, lo: float, hi: float) -> float:
            try:
                value = float(text)
            except ValueError:
                raise ValueError(f"{name}: '{text}' is not a number") from None
            if not lo <= value <= hi:
                raise ValueError(f"{name}: {value:g} is outside {lo:g}..{hi:g}")
            return value

        temp = number(temperature.strip() or "0", "temperature", 0, 2)
        top = number(top_p, "top_p", 0.01, 1) if top_p.strip() else None
        text = max_new_tokens.strip() or "512"
        if not text.isdigit() or not 1 <= int(text) <= 32768:
            raise ValueError(f"max new tokens: '{text}' is not a whole number in 1..32768")
        return cls(temp, top, int(text), system if system.strip() else None, history)
