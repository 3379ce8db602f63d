"""One training process of tests/test_multiprocess_training.py, started by `accelerate launch`
(or plain python for one process): `python tests/multiprocess_job.py job.json`.

job.json: {"mode": "train" | "generate", "policy", "pairs", "output", "budget": {...},
"stop_at_step", "selection": bool, "adapter", "result"}. Each process writes
`<result>-<rank>.json`:
- train: `train_adapter` on the helpfulness pairs (with a small deterministic selection
  when asked), and how many micro-batches this session computed (a resumed run computes
  only the steps after its checkpoint);
- generate: the session the trainer builds, `adapter` loaded into it, then logits of the
  unwrapped peft model and greedy token ids under `full_weights` (what selection runs).
Not collected by pytest (no test_ prefix).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from paretoflow.align import trainer  # noqa: E402
from paretoflow.align.data import load_pair_tables, select_pairs  # noqa: E402
from paretoflow.align.selection import Selection, SelectionPrompt  # noqa: E402
from paretoflow.config import AlignBudget, Objective  # noqa: E402

OBJECTIVES = [Objective(name=n) for n in ("helpfulness", "conciseness", "harmlessness")]
PROMPT_IDS = [[5, 6, 7, 8, 9, 10, 11, 12], [13, 14, 15, 16, 17, 18, 19, 20]]


def selection() -> Selection:
    prompts = [SelectionPrompt(f"p_{i}", [{"role": "user", "content": f"Question {i}: a poem about the sea?"}],
                               f"Question {i}") for i in range(3)]

    def score(texts, responses, tags):  # deterministic, depends on the answers only
        return {"helpfulness": np.array([len(r) / 100 for r in responses])}

    return Selection(prompts, score, {"helpfulness": 1.0}, max_new_tokens=8, batch_size=3, scorer_name="length")


def train(job: dict, rank_file) -> None:
    tables = load_pair_tables(Path(job["pairs"]))
    train_pairs, _ = select_pairs(tables, "helpfulness", "train", OBJECTIVES)
    val_pairs, _ = select_pairs(tables, "helpfulness", "val", OBJECTIVES)
    calls = []
    original = trainer._batch_loss
    trainer._batch_loss = lambda *a, **k: calls.append(1) or original(*a, **k)
    result = trainer.train_adapter(AlignBudget(**job["budget"]), job["policy"], train_pairs, val_pairs,
                                   job["output"], progress=False, stop_at_step=job.get("stop_at_step"),
                                   selection=selection() if job.get("selection") else None)
    rank_file({"steps": result.steps, "completed": result.completed, "micro_batches": len(calls)})


def generate(job: dict, rank_file) -> None:
    from safetensors.torch import load_file

    from paretoflow.align.checkpoint import adapter_tensors, load_adapter_tensors
    from paretoflow.align.fsdp import full_weights, is_sharded
    from paretoflow.align.session import build_session
    from paretoflow.generation import _eos_ids, _greedy_until_eos

    session = build_session(AlignBudget(**job["budget"]), job["policy"], seed=0, profile="cpu")
    load_adapter_tensors(session.peft_model, load_file(job["adapter"]), session.scorer)
    reloaded = adapter_tensors(session.peft_model, session.scorer)       # gathered again
    model = session.peft_model.eval()
    ids = torch.tensor(PROMPT_IDS)
    with torch.no_grad(), full_weights(session.scorer):
        logits = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
        tokens = _greedy_until_eos(model, ids, torch.ones_like(ids), 8, _eos_ids(model, session.tokenizer))
    rank_file({"sharded": is_sharded(session.scorer), "logits": logits.tolist(), "tokens": tokens,
               "adapter_keys": sorted(reloaded),
               "adapter_max_abs_diff": max((reloaded[k] - v).abs().max().item()
                                           for k, v in load_file(job["adapter"]).items())})


def main() -> None:
    from accelerate import PartialState

    job = json.loads(Path(sys.argv[1]).read_text())
    torch.set_num_threads(1)

    def rank_file(payload: dict) -> None:
        rank = PartialState().process_index
        Path(f"{job['result']}-{rank}.json").write_text(json.dumps(payload))

    {"train": train, "generate": generate}[job["mode"]](job, rank_file)


if __name__ == "__main__":
    main()
