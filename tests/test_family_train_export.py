"""Every family in the README's table trains with `harness train` and exports a merged model that reproduces base +
adapter (issue #23's "trains" and "merged export verified" columns), on bench/family_models' tiny random models."""
from __future__ import annotations

import json

import pytest

from bench.family_models import FAMILIES, build
from harness.cli import main as cli
from tests.toy_task import write_toy_task


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return write_toy_task(tmp_path_factory.mktemp("toy"), n_train=16, n_val=4, n_eval=4)


@pytest.mark.parametrize("family", FAMILIES)
def test_family_trains_and_its_merged_export_reproduces_base_plus_adapter(family, toy, tmp_path):
    model = build(family, tmp_path / family)
    run = tmp_path / "run"
    rc = cli(["train", "model=hf", f"model.path={model}", f"task.path={toy}", f"run_dir={run}",
              "tracking.wandb=disabled", "train.batch_size=8", "train.max_steps=2", "train.eval_every=2",
              "train.precision=fp32", "lora.r=4", "train.lr=5e-3"])
    assert rc == 0 and json.loads((run / "status.json").read_text())["status"] == "complete"
    assert (run / "adapter" / "adapter_model.safetensors").is_file()
    out = tmp_path / "merged"
    assert cli(["export", str(run), "--format", "merged", "--out", str(out)]) == 0
    merge = json.loads((out / "export_manifest.json").read_text())["merge"]
    assert merge["verified_max_abs_logit_diff"] < 1e-4
    assert _max_logit_change(model, out) > 1e-3  # and the merged weights are not the base's: training did something


def _max_logit_change(base_dir, merged_dir) -> float:
    import torch
    from transformers import AutoModelForCausalLM

    ids = torch.tensor([[1, 9690, 198, 2683, 359, 253, 5356, 30]])
    with torch.no_grad():
        a, b = (AutoModelForCausalLM.from_pretrained(str(d), dtype=torch.float32)(input_ids=ids).logits
                for d in (base_dir, merged_dir))
    return float((a - b).abs().max())
