"""The one normalised schema every reader produces and every later step consumes."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

ROLES = ("system", "user", "assistant")
SPLITS = ("train", "val", "test")
SPLIT_NAMES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "dev": "val", "test": "test"}
"""the names sources give their splits -> ours"""


def context_window(turns: list, end: int, size: int) -> list:
    """The at most ``size`` items before index ``end``, oldest first: the history a model sees."""
    return turns[max(0, end - size): end]


@dataclass
class Turn:
    role: str
    """system | user | assistant (seeker/client/Human -> user; supporter/therapist/Assistant -> assistant)"""
    content: str
    emotion: str | None = None
    """the speaker's emotion label where the source has one"""
    strategy: str | None = None
    """the supporter's strategy label where the source has one"""


@dataclass
class Dialogue:
    dialogue_id: str
    """unique id of this dialogue (or question-answer pair)"""
    turns: list[Turn]
    group_id: str = ""
    """records sharing a group_id always land in the same split (e.g. answers to one question)"""
    situation: str = ""
    problem_type: str = ""
    source: str = ""
    split: str | None = None
    """the source's own split (train/val/test) where it ships one; honoured by prepare"""
    meta: dict = field(default_factory=dict)
    """source-specific extras kept for later steps, e.g. {"upvotes": 3}"""

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, obj: dict) -> "Dialogue":
        return cls(**{**obj, "turns": [Turn(**t) for t in obj["turns"]]})


@dataclass
class PreferencePair:
    pair_id: str
    prompt: list[dict]
    """conversation up to the response: [{"role", "content"}, ...]"""
    chosen: str
    rejected: str
    group_id: str = ""
    source: str = ""
    split: str | None = None

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class Records:
    """What a reader returns: dialogues, and native preference pairs or bare prompts where the format has them."""

    dialogues: list[Dialogue] = field(default_factory=list)
    pairs: list[PreferencePair] = field(default_factory=list)
    prompts: list[list[dict]] = field(default_factory=list)
    dropped: dict[str, int] = field(default_factory=dict)
    """records skipped on purpose, by reason (e.g. {"too_short": 3}); never errors"""

    unknown_labels: dict[str, int] = field(default_factory=dict)
    """source labels outside our vocabulary, mapped to a catch-all (ESConv strategy -> "Others"), by label"""

    def drop(self, reason: str) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1
