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
    assert fsdp.fsdp_config["fsdp_use_orig_params"] is True
    assert fsdp.fsdp_config["fsdp_transformer_layer_cls_to_wrap"] == "LlamaDecoderLayer"
    assert fsdp.fsdp_config["fsdp_state_dict_type"] == "FULL_STATE_DICT"   # the main process saves whole adapters
    cpu = load_config_from_file(str(CONFIGS / "cpu-2proc.yaml"))
    assert cpu.num_processes == 2 and cpu.mixed_precision == "no"
