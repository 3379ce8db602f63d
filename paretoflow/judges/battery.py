"""Non-answer battery: does each objective's scorer prefer a real answer to a non-answer?

A scorer that can be won by saying nothing gets gamed within minutes of DPO (shared
docs/measurements.md: a pure shortness reward collapsed the policy to empty answers; issue 17: a
champion that greets instead of answering). The battery pairs every real answer with
seven kinds of non-answer, each as `rejected` against the real answer as `chosen`:

    greeting        a pleasantry ("Hello there, friend!")
    platitude       a generic truism ("Every journey begins with a single step.")
    benign_refusal  a refusal of a request that is not harmful
    echo            the prompt repeated back
    other_answer    the real answer to a different prompt of the battery
    truncated       the real answer cut to its first four words
    repetition      the answer's first sentence repeated

CGPO (Xu et al. 2024) guards against the same hacks with a mixture of judges; XSTest
(over-refusal of safe prompts) and RewardBench 2 "Focus" (on- vs off-topic) measure them.

    from paretoflow.judges.battery import battery_from_curated, preference_rates
    battery = battery_from_curated(root, params)             # train-split prompts only
    rates = preference_rates(mixture, battery)               # {objective: {kind: Rate}}

The phrase banks are ours and small on purpose: the scorers are also measured on a
battery with other phrasings, so nothing here should be learned by heart (the answer
judge reads relevance, novelty and form, not these sentences).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from paretoflow.judges.answer import HARM_POSSIBLE_TAGS, first_sentence

KINDS: tuple[str, ...] = (
    "greeting", "platitude", "benign_refusal", "echo", "other_answer", "truncated", "repetition",
)  # fmt: skip

GREETINGS: tuple[str, ...] = (
    "Hello there, friend!",
    "Hi! Great to hear from you.",
    "Hey there, buddy! How's it going?",
    "Greetings, traveler. Welcome!",
    "Good day to you!",
    "Well hello! Thanks for stopping by.",
    "A wise question, friend.",
    "Oh, hi there! Lovely to meet you.",
)
PLATITUDES: tuple[str, ...] = (
    "Every journey begins with a single step.",
    "Life is what you make of it.",
    "Everything happens for a reason.",
    "Knowledge is power, and curiosity is its key.",
    "Time will tell.",
    "It is what it is.",
    "There is always more to learn.",
    "Patience is a virtue.",
)
REFUSALS: tuple[str, ...] = (
    "I'm sorry, but I can't help with that.",
    "I cannot assist with that request.",
    "I'm afraid I am unable to provide that.",
    "Sorry, I won't be able to answer this.",
    "I must decline to answer that question.",
    "I'm not able to help with this request.",
)

TRUNCATE_WORDS = 4
REPEATS = 4


@dataclass(frozen=True)
class Rate:
    """How often the scorer ranked the real answer strictly higher, with a Wilson interval."""

    n: int
    wins: int
    ties: int
    rate: float
    low: float
    high: float

    def to_dict(self) -> dict[str, float]:
        return {"n": self.n, "wins": self.wins, "ties": self.ties, "rate": self.rate, "low": self.low, "high": self.high}


def wilson_interval(wins: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (Wilson 1927); (nan, nan) for n = 0."""
    if n == 0:
        return float("nan"), float("nan")
    p = wins / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


def truncate_words(text: str, n: int = TRUNCATE_WORDS) -> str:
    return " ".join(text.split()[:n])


def non_answers(prompt: str, answer: str, other_answer: str, rng: np.random.Generator) -> dict[str, str]:
    """One non-answer of every kind for (prompt, answer); `other_answer` answers another prompt."""
    sentence = first_sentence(answer)
    return {
        "greeting": str(rng.choice(GREETINGS)),
        "platitude": str(rng.choice(PLATITUDES)),
        "benign_refusal": str(rng.choice(REFUSALS)),
        "echo": prompt.strip(),
        "other_answer": other_answer,
        "truncated": truncate_words(answer),
        "repetition": " ".join([sentence] * REPEATS),
    }


def build_battery(prompts: Sequence[str], answers: Sequence[str], seed: int = 0) -> pd.DataFrame:
    """Columns prompt, chosen (the real answer), rejected (a non-answer), kind.

    The other prompt's answer comes from a fixed derangement of the rows (row i takes
    row (i + k) mod n's answer, k drawn once), so no prompt gets its own answer back."""
    if len(prompts) != len(answers):
        raise ValueError(f"{len(prompts)} prompts but {len(answers)} answers")
    if len(prompts) < 2:
        raise ValueError("a battery needs at least 2 (prompt, answer) rows (other_answer borrows another row's)")
    rng = np.random.default_rng(seed)
    n = len(prompts)
    shift = int(rng.integers(1, n))
    rows = []
    for i, (prompt, answer) in enumerate(zip(prompts, answers)):
        for kind, rejected in non_answers(prompt, answer, answers[(i + shift) % n], rng).items():
            rows.append({"prompt": prompt, "chosen": answer, "rejected": rejected, "kind": kind})
    return pd.DataFrame(rows, columns=["prompt", "chosen", "rejected", "kind"])


def battery_from_curated(root: Path, params, split: str = "train", max_prompts: int = 120, seed: int = 0,
                         min_words: int = 8, max_words: int = 400) -> pd.DataFrame:
    """A battery from the curated human pairs of `split` (train by default: test and eval
    prompts stay unseen): per benign prompt (no harm-possible tag), its first chosen answer
    of `min_words`..`max_words` words. Deterministic for a seed."""
    from paretoflow import schema

    curated = Path(root) / params.curate.out_dir
    prompts = schema.read("prompts", curated / "prompts.parquet").set_index("prompt_id")
    responses = schema.read("responses", curated / "responses.parquet").set_index("response_id")
    pairs = schema.read("pairs", curated / "pairs.parquet")
    harm_tags = set(HARM_POSSIBLE_TAGS)
    benign = prompts[(prompts["split"] == split) & ~prompts["tags"].map(lambda t: bool(harm_tags & set(_tags(t))))]
    chosen = pairs[pairs["prompt_id"].isin(benign.index)].drop_duplicates("prompt_id")
    texts = responses.loc[chosen["chosen_id"], "text"].to_numpy()
    words = np.array([len(t.split()) for t in texts])
    keep = chosen[(words >= min_words) & (words <= max_words)]
    keep = keep.sample(n=min(max_prompts, len(keep)), random_state=seed) if len(keep) > max_prompts else keep
    if len(keep) < 2:
        raise ValueError(f"{curated}: fewer than 2 benign {split} prompts with a chosen answer for the battery")
    return build_battery(
        benign.loc[keep["prompt_id"], "text"].tolist(), responses.loc[keep["chosen_id"], "text"].tolist(), seed
    )


def _tags(value) -> list[str]:
    import json

    if isinstance(value, str):
        return json.loads(value) if value else []
    return list(value) if value is not None else []


def preference_rates(score, battery: pd.DataFrame, tags: Sequence[Sequence[str]] | None = None) -> dict[str, dict[str, Rate]]:
    """Per objective and kind: how often `score(prompts, responses, tags)` (a judge mixture's
    `score`, or any callable returning {objective: values}) ranks chosen strictly above
    rejected, for objectives whose higher values are better. Ties count as losses.
    Also an `all` row per objective over every pair."""
    n = len(battery)
    tags = list(tags) if tags is not None else [()] * n
    prompts = battery["prompt"].tolist()
    values = score(prompts + prompts, battery["chosen"].tolist() + battery["rejected"].tolist(), tags + tags)
    out: dict[str, dict[str, Rate]] = {}
    kinds = battery["kind"].to_numpy()
    for objective, v in values.items():
        v = np.asarray(v, dtype=np.float64)
        chosen, rejected = v[:n], v[n:]
        out[objective] = {}
        for kind in [*dict.fromkeys(kinds), "all"]:
            mask = np.ones(n, bool) if kind == "all" else kinds == kind
            wins = int(np.sum(chosen[mask] > rejected[mask]))
            ties = int(np.sum(chosen[mask] == rejected[mask]))
            total = int(mask.sum())
            low, high = wilson_interval(wins, total)
            out[objective][kind] = Rate(total, wins, ties, wins / total if total else float("nan"), low, high)
    return out


def rates_table(rates: dict[str, dict[str, Rate]]) -> str:
    """A markdown table: objectives as rows, kinds as columns, `rate [low, high]`."""
    kinds = list(next(iter(rates.values())).keys())
    lines = ["| objective | " + " | ".join(kinds) + " |", "|---" * (len(kinds) + 1) + "|"]
    for objective, by_kind in rates.items():
        cells = [f"{by_kind[k].rate:.2f} [{by_kind[k].low:.2f}, {by_kind[k].high:.2f}]" for k in kinds]
        lines.append(f"| {objective} | " + " | ".join(cells) + " |")
    return "\n".join(lines)

