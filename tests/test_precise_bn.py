"""benchmarks/precise_bn.py: weight files averaged tensor by tensor, and batch norm measured over every batch."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch

from bcnn.models import build_model

_spec = importlib.util.spec_from_file_location(
    "precise_bn", Path(__file__).parent.parent / "benchmarks" / "precise_bn.py")
precise_bn = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(precise_bn)


def test_an_average_is_each_float_tensor_s_mean_and_the_last_file_s_counts(tmp_path: Path) -> None:
    torch.manual_seed(0)
    states = [build_model("tiny").state_dict() for _ in range(3)]
    for i, state in enumerate(states):
        for key in state:
            if key.endswith("num_batches_tracked"):
                state[key] = torch.tensor(10 * (i + 1))
        torch.save({"model": state, "arch": "tiny"}, tmp_path / f"e{i}.pt")
    average = precise_bn.averaged_weights([tmp_path / f"e{i}.pt" for i in range(3)])
    assert average.keys() == states[-1].keys()
    for key, value in average.items():
        if value.is_floating_point():
            assert torch.allclose(value, sum(s[key] for s in states) / 3, atol=1e-6), key
        else:
            assert torch.equal(value, states[-1][key]), key


def test_precise_bn_holds_the_mean_of_every_batch_not_the_last_few() -> None:
    model = build_model("tiny")
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (1000, 8, 8, 3), dtype=np.uint8)  # tiny: 8x8 inputs
    images[:500] //= 4  # the order is shuffled: an exponential average would lean to whichever came last
    precise_bn.measure_batch_norm(model, images, plain=True)
    first = next(m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm))
    captured = []
    handle = first.register_forward_hook(lambda _m, inputs, _o: captured.append(inputs[0]))
    with torch.no_grad():
        model(precise_bn.to_float(torch.from_numpy(images)))
    handle.remove()
    x = captured[0].transpose(0, 1).flatten(1)  # channels first: (C, everything else)
    assert not model.training
    assert torch.allclose(first.running_mean, x.mean(1), atol=1e-4)
