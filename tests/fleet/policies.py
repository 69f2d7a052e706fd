"""Policies that fail the rollout for real reasons (no fault injected into the runner)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_opset23_policy(out: Path, rate_hz: float = 100.0, seed: int = 5) -> Path:
    """An MLP with an RMSNormalization layer (ONNX opset 23).

    The controller's ONNX Runtime runs it, so it validates and gets reference outputs; the
    xavier sim robots run Python 3.9, whose newest onnxruntime wheel (1.19) has no opset-23
    kernels, so the runner fails to load it at start: the classic "works on my machine" model
    that crashes on the robot.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from jetpolicy.common.manifest import PolicyManifest, TensorSpec, sha256_file

    rng = np.random.default_rng(seed)  # another seed, another release
    w1 = numpy_helper.from_array((rng.standard_normal((48, 64)) * 0.1).astype(np.float32), "w1")
    b1 = numpy_helper.from_array(np.zeros(64, np.float32), "b1")
    scale = numpy_helper.from_array(np.ones(64, np.float32), "scale")
    w2 = numpy_helper.from_array((rng.standard_normal((64, 12)) * 0.1).astype(np.float32), "w2")
    b2 = numpy_helper.from_array(np.zeros(12, np.float32), "b2")
    nodes = [
        helper.make_node("Gemm", ["obs", "w1", "b1"], ["h"]),
        helper.make_node("RMSNormalization", ["h", "scale"], ["hn"], axis=-1),
        helper.make_node("Gemm", ["hn", "w2", "b2"], ["actions"]),
    ]
    graph = helper.make_graph(
        nodes,
        "rmsnorm-policy",
        [helper.make_tensor_value_info("obs", TensorProto.FLOAT, [1, 48])],
        [helper.make_tensor_value_info("actions", TensorProto.FLOAT, [1, 12])],
        [w1, b1, scale, w2, b2],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 23)], ir_version=10)
    onnx.checker.check_model(model, full_check=True)
    out.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(out / "policy.onnx"))
    PolicyManifest(
        name="rmsnorm-opset23",
        sha256=sha256_file(out / "policy.onnx"),
        control_rate_hz=rate_hz,
        inputs=[TensorSpec("obs", [1, 48], "float32", "observation")],
        outputs=[TensorSpec("actions", [1, 12], "float32", "action")],
        created_by="tests/fleet/policies.py",
    ).save(out / "policy.json")
    return out
