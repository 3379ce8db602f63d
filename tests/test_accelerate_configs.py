"""Every accelerate config shipped in configs/accelerate/ loads with accelerate's own reader
and says what its comment promises (torchtune: every shipped config is validated)."""

from __future__ import annotations

from pathlib import Path

import pytest

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "accelerate"


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_config_loads_with_accelerate(path):
    from accelerate.commands.config.config_args import load_config_from_file

    config = load_config_from_file(str(path))
    assert config.num_machines == 1 and config.num_processes >= 2
    assert not config.use_cpu   # multi-process goes through torchrun; see cpu-2proc.yaml's comment


def test_gpu_configs_train_in_bf16_and_fsdp_keeps_lora_trainable_beside_frozen_weights():
    from accelerate.commands.config.config_args import load_config_from_file

    ddp = load_config_from_file(str(CONFIGS / "ddp.yaml"))
    fsdp = load_config_from_file(str(CONFIGS / "fsdp.yaml"))
    assert str(ddp.distributed_type).endswith("MULTI_GPU") and ddp.mixed_precision == "bf16"
    assert str(fsdp.distributed_type).endswith("FSDP") and fsdp.mixed_precision == "bf16"
    # FSDP2: original parameters (LoRA beside frozen weights), and what fsdp.py handles
    assert fsdp.fsdp_config["fsdp_version"] == 2
    assert fsdp.fsdp_config["fsdp_auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP"
    assert "fsdp_transformer_layer_cls_to_wrap" not in fsdp.fsdp_config   # taken from the model
    assert fsdp.fsdp_config["fsdp_state_dict_type"] == "FULL_STATE_DICT"
    cpu = load_config_from_file(str(CONFIGS / "cpu-2proc.yaml"))
    assert cpu.num_processes == 2 and cpu.mixed_precision == "no"
    cpu_fsdp = load_config_from_file(str(CONFIGS / "cpu-fsdp-2proc.yaml"))
    assert str(cpu_fsdp.distributed_type).endswith("FSDP") and cpu_fsdp.fsdp_config["fsdp_version"] == 2
    assert cpu_fsdp.num_processes == 2 and cpu_fsdp.mixed_precision == "no"


def test_fsdp_wraps_the_decoder_layer_class_of_whatever_model_it_is_given(monkeypatch):
    """The wrap policy accelerate builds from fsdp.yaml (no class named) on the module the
    trainer prepares picks the LM's own decoder layer: GPT-2's block here, not Llama's."""
    from accelerate.utils import FullyShardedDataParallelPlugin
    from accelerate.utils.fsdp_utils import fsdp2_prepare_auto_wrap_policy
    from transformers import GPT2Config, GPT2LMHeadModel
    from transformers.models.gpt2.modeling_gpt2 import GPT2Block

    from paretoflow.align.logps import ResponseLogps

    monkeypatch.delenv("FSDP_TRANSFORMER_CLS_TO_WRAP", raising=False)
    model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=32, n_positions=16))
    scorer = ResponseLogps(model)
    plugin = FullyShardedDataParallelPlugin(auto_wrap_policy="TRANSFORMER_BASED_WRAP", fsdp_version=2)
    plugin.set_auto_wrap_policy(scorer)
    assert plugin.auto_wrap_policy.keywords["transformer_layer_cls"] == {GPT2Block}
    wraps = fsdp2_prepare_auto_wrap_policy(plugin, scorer)          # what accelerate's FSDP2 prepare applies
    assert [type(m) for m in scorer.modules() if wraps(m)] == [GPT2Block]
