"""Step 1 of curation (curate.py), one record at a time: the record becomes a `_Row` with
normalised texts (normalize.py), chat-template control tokens escaped or the row
quarantined (control.py), content ids, the row checks' verdict, and its response texts
moved to the spill (spill.py): what stays in memory per row is the prompt id, the
response ids as 10 bytes each (tables.ResponseIds) and the row's few small objects, not
the texts (in curate's own stream the raw excerpt is spilled too, and a JSON Lines
location is made again from the line number)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from paretoflow.data.control import escape_control_tokens, find_control_token
from paretoflow.data.importers import Record
from paretoflow.data.normalize import normalize_text, normalized_word_count
from paretoflow.data.spill import TextSpill
from paretoflow.data.tables import ResponseIds, _Row
from paretoflow.schema import prompt_id, response_id

if TYPE_CHECKING:
    from paretoflow.stages.curate import CurateConfig


def prompt_words(messages: list[dict[str, str]]) -> int:
    """Words of a prompt's turns together (the min_words / max_words unit)."""
    return sum(normalized_word_count(t["content"]) for t in messages)


def _check(row: _Row, config: CurateConfig, words_of_prompt: int) -> tuple[str, str] | None:
    """Row-level checks after normalisation: (reason, detail) of the first failing one.
    Worked out when the row is made (its texts are spilled right after) and applied in
    step 3 to the rows still active then. `words_of_prompt`: prompt_words of its turns,
    counted once per distinct prompt (RowMaker)."""
    for index, turn in enumerate(row.messages):
        if not turn["content"]:
            return "empty_text", f"messages[{index}] ({turn['role']}) is empty after normalisation"
    for index, text in enumerate(row.responses):
        if not text:
            return "empty_text", f"response {index} is empty after normalisation"
    for pair in row.record.pairs:
        if row.responses[pair.chosen_index] == row.responses[pair.rejected_index]:
            return "chosen_equals_rejected", f"{pair.objective}: chosen and rejected texts are identical"
    texts = [("prompt", words_of_prompt)] + [(f"response {i}", normalized_word_count(t)) for i, t in enumerate(row.responses)]
    for what, words in texts:
        if words < config.min_words:
            return "too_short", f"{what} has {words} words < min_words {config.min_words}"
        if words > config.max_words:
            return "too_long", f"{what} has {words} words > max_words {config.max_words}"
    return None


def _control_tokens(row: _Row, mode: str) -> None:
    """Escape chat-template control tokens in the row's texts, or quarantine the row
    (curate.control_tokens; control.py lists the tokens)."""
    texts = [(f"messages[{i}] ({t['role']})", t["content"]) for i, t in enumerate(row.messages)]
    texts += [(f"response {i}", text) for i, text in enumerate(row.responses)]
    for what, text in texts:
        token = find_control_token(text)
        if token is None:
            continue
        if mode == "quarantine":
            return row.reject("control_token", f"{what} holds the chat-template control token {token!r}")
        for turn in row.messages:
            turn["content"] = escape_control_tokens(turn["content"])
        row.responses = [escape_control_tokens(t) for t in row.responses]
        return None
    return None


_NO_METADATA: dict = {}  # shared by rows without metadata; only read (tables.metadata_json)


class RowMaker:
    """Step 1, one record at a time: normalised texts (control tokens escaped or the row
    quarantined), content ids (prompts hashed once), the row checks' verdict, and the
    response texts moved to the spill (spill.py), which the responses table reads back.

    `compact`: the record is curate's own (streamed from the importer), so its original
    texts are dropped and its prompt turns shared with every row of the same prompt:
    what stays in memory per row is ids and locations; the raw excerpt goes to the spill
    too, after the responses (read back by _Row.reject)."""

    def __init__(self, config: CurateConfig, texts: TextSpill, compact: bool):
        self.config, self.texts, self.compact = config, texts, compact
        self.ids = ResponseIds()  # the rows' response ids, by spill index
        # turns → (prompt id, normalised turns, their words): rows share prompts, hash, hold
        # and count each once
        self.prompts: dict[tuple[tuple[str, str], ...], tuple[str, list[dict[str, str]], int]] = {}

    def __call__(self, record: Record, role: str = "", file_index: int = -1) -> _Row:
        row = _Row(
            record, role, file_index,
            [{"role": t["role"], "content": normalize_text(t["content"])} for t in record.messages],
            [normalize_text(t) for t in record.responses],
        )
        _control_tokens(row, self.config.control_tokens)
        turns = tuple((t["role"], t["content"]) for t in row.messages)
        known = self.prompts.get(turns)
        if known is None:
            known = self.prompts[turns] = (prompt_id(row.messages), row.messages, prompt_words(row.messages))
        row.prompt_id, row.messages, words_of_prompt = known
        response_ids = [response_id(row.prompt_id, t) for t in row.responses]
        if row.rejected is None:
            row.failed_check = _check(row, self.config, words_of_prompt)
        if self.compact:
            # The raw excerpt (up to RAW_LIMIT characters; two bytes each once the "…" of a
            # cut makes it non-ASCII: ~1 KB a row) is read back only if the row is rejected.
            row.text_start = self.texts.put_all([*row.responses, record.raw])
            row.raw_from = self.texts
            # Shared empty values instead of an empty list or dict each (~55-65 bytes a row).
            record.messages, record.responses, record.raw = row.messages, (), ""
            record.tags, record.metadata = record.tags or (), record.metadata or _NO_METADATA
            record.ratings = record.ratings or ()
            if record.location == f"line {record.order}":  # JSON Lines: _Row.location makes it again
                record.location = None
        else:
            row.text_start = self.texts.put_all(row.responses)
        self.ids.put(row.text_start, response_ids)
        row.ids, row.n_responses, row.responses = self.ids, len(response_ids), ()
        return row
