"""FLOPs and bytes counted from ONNX graphs (xpuperf.measure.flops) against hand counts.

Conventions under test (see xpuperf.measure.flops): a multiply-add is 2 FLOPs, a bias
add 1 per output element, elementwise arithmetic 1 per output element, Softmax 5,
LayerNormalization 7. Cross-check: on the smoke ResNet and Wide&Deep graphs,
MatMul counts equal onnx-tool 1.0.1's 2 x MACs, and Conv/Gemm differ only by
onnx-tool counting a bias add as a MAC.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from xpuperf.measure import flops  # noqa: E402

F, I64 = TensorProto.FLOAT, TensorProto.INT64


def model(nodes, inputs, outputs, inits=()):
    graph = helper.make_graph(nodes, "t", inputs, outputs, list(inits))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def vi(name, shape, dtype=F):
    return helper.make_tensor_value_info(name, dtype, shape)


def weight(name, shape, dtype=np.float32):
    return numpy_helper.from_array(np.ones(shape, dtype=dtype), name)


def test_matmul_is_two_flops_per_multiply_add_and_scales_with_batch():
    m = model([helper.make_node("MatMul", ["x", "w"], ["y"])],
              [vi("x", ["batch", 3, 4])], [vi("y", ["batch", 3, 5])], [weight("w", (4, 5))])
    one, four = flops.graph_cost(m, 1), flops.graph_cost(m, 4)
    assert one.flops == 2 * 3 * 5 * 4 == one.flops_by_op["MatMul"]
    assert four.flops == 4 * one.flops and four.flops_per_sample == one.flops_per_sample
    # fp32 bytes: read x (12) and w (20), write y (15) floats; w is amortised over the batch.
    assert one.bytes == 4 * (12 + 20 + 15)
    assert four.bytes == 4 * (48 + 20 + 60)
    assert flops.graph_cost(m, 1, float_bytes=1).bytes == 12 + 20 + 15


def test_gemm_counts_k_with_transposes_and_the_bias():
    plain = model([helper.make_node("Gemm", ["a", "b", "c"], ["y"])],
                  [vi("a", ["batch", 4])], [vi("y", ["batch", 5])],
                  [weight("b", (4, 5)), weight("c", (5,))])
    assert flops.graph_cost(plain, 3).flops == 3 * (2 * 5 * 4 + 5)
    trans = model([helper.make_node("Gemm", ["a", "b"], ["y"], transB=1)],
                  [vi("a", ["batch", 4])], [vi("y", ["batch", 5])], [weight("b", (5, 4))])
    assert flops.graph_cost(trans, 1).flops == 2 * 5 * 4


@pytest.mark.parametrize("group,w_shape,expected", [
    (1, (6, 4, 3, 3), 2 * 6 * 64 * 4 * 9 + 6 * 64),  # dense: Cin x k x k per output
    (2, (6, 2, 3, 3), 2 * 6 * 64 * 2 * 9 + 6 * 64),  # grouped: Cin / groups
    (4, (4, 1, 3, 3), 2 * 4 * 64 * 1 * 9 + 4 * 64),  # depthwise
])
def test_conv_counts_input_channels_per_group_and_the_bias(group, w_shape, expected):
    cout = w_shape[0]
    m = model([helper.make_node("Conv", ["x", "w", "b"], ["y"], group=group, pads=[1, 1, 1, 1],
                                kernel_shape=[3, 3])],
              [vi("x", ["batch", 4, 8, 8])], [vi("y", ["batch", cout, 8, 8])],
              [weight("w", w_shape), weight("b", (cout,))])
    assert flops.graph_cost(m, 1).flops == expected


def test_conv_transpose_counts_per_input_element():
    # W is (C_in, C_out / groups, k, k): each input element feeds 3 x 3 x 3 outputs.
    m = model([helper.make_node("ConvTranspose", ["x", "w"], ["y"])],
              [vi("x", ["batch", 2, 4, 4])], [vi("y", ["batch", 3, 6, 6])],
              [weight("w", (2, 3, 3, 3))])
    assert flops.graph_cost(m, 1).flops == 2 * 32 * 3 * 9


def test_attention_shaped_matmuls_and_softmax():
    """Q K^T and scores V are batched MatMuls over (batch, heads)."""
    heads, seq, dim = 2, 8, 4
    nodes = [helper.make_node("Transpose", ["k"], ["kt"], perm=[0, 1, 3, 2]),
             helper.make_node("MatMul", ["q", "kt"], ["scores"]),
             helper.make_node("Softmax", ["scores"], ["p"], axis=-1),
             helper.make_node("MatMul", ["p", "v"], ["o"])]
    shape = ["batch", heads, seq, dim]
    m = model(nodes, [vi("q", shape), vi("k", shape), vi("v", shape)], [vi("o", shape)])
    cost = flops.graph_cost(m, 3)
    qk = 2 * heads * seq * seq * dim  # per sample
    pv = 2 * heads * seq * dim * seq
    softmax = 5 * heads * seq * seq
    assert cost.flops_by_op == {"MatMul": 3 * (qk + pv), "Softmax": 3 * softmax}
    assert cost.flops_per_sample == qk + pv + softmax


@pytest.mark.parametrize("op,gates,directions", [("GRU", 3, 1), ("LSTM", 4, 2), ("RNN", 1, 1)])
def test_recurrent_layers_count_both_projections_per_step(op, gates, directions):
    """As exported from a batch-first torch layer: (batch, seq, input) transposed
    to ONNX's (seq, batch, input)."""
    seq, inp, hidden = 5, 6, 8
    m = model([helper.make_node("Transpose", ["x"], ["xt"], perm=[1, 0, 2]),
               helper.make_node(op, ["xt", "w", "r"], ["y"], hidden_size=hidden,
                                direction="bidirectional" if directions == 2 else "forward")],
              [vi("x", ["batch", seq, inp])], [vi("y", None)],
              [weight("w", (directions, gates * hidden, inp)),
               weight("r", (directions, gates * hidden, hidden))])
    per_step = 2 * gates * hidden * (inp + hidden) + 3 * gates * hidden
    assert flops.graph_cost(m, 3).flops_by_op == {op: 3 * directions * seq * per_step}


def test_elementwise_normalisations_reductions_and_pools():
    nodes = [helper.make_node("Add", ["x", "c"], ["a"]),
             helper.make_node("Relu", ["a"], ["r"]),
             helper.make_node("LayerNormalization", ["r", "g"], ["n"], axis=-1),
             helper.make_node("ReduceMean", ["n"], ["m"], axes=[2], keepdims=0),
             helper.make_node("Sum", ["m", "m", "m"], ["s"]),
             helper.make_node("Reshape", ["n", "shape"], ["img"]),
             helper.make_node("MaxPool", ["img"], ["pooled"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("GlobalAveragePool", ["img"], ["g2"])]
    m = model(nodes, [vi("x", ["batch", 4, 8])],
              [vi("s", ["batch", 4]), vi("pooled", ["batch", 2, 2, 2]), vi("g2", ["batch", 2, 1, 1])],
              [weight("c", (8,)), weight("g", (8,)),
               numpy_helper.from_array(np.array([-1, 2, 4, 4], dtype=np.int64), "shape")])
    by_op = flops.graph_cost(m, 1).flops_by_op
    assert by_op == {"Add": 32, "Relu": 32, "LayerNormalization": 7 * 32, "ReduceMean": 32,
                     "Sum": 2 * 4, "MaxPool": 8 * 4, "GlobalAveragePool": 32}


def test_integer_arithmetic_and_data_movement_cost_nothing():
    nodes = [helper.make_node("Add", ["ids", "one"], ["ids1"]),
             helper.make_node("Gather", ["table", "ids1"], ["emb"]),
             helper.make_node("Transpose", ["emb"], ["t"], perm=[0, 2, 1])]
    m = model(nodes, [vi("ids", ["batch", 6], I64)], [vi("t", ["batch", 4, 6])],
              [numpy_helper.from_array(np.array(1, dtype=np.int64), "one"),
               weight("table", (1000, 4))])
    cost = flops.graph_cost(m, 1)
    assert cost.flops == 0 and not cost.uncounted
    # The Gather reads the 6 rows it gathers, not the 1000-row table.
    gather = 2 * 6 * 4 * 4 + 6 * 8
    add = 2 * 6 * 8 + 8  # int64 ids in and out, and the scalar one
    assert cost.bytes == add + gather + 2 * 6 * 4 * 4


def test_shapes_computed_at_run_time_are_folded():
    """As exported transformers do: a position table sliced to the input's
    length, found through Shape -> Gather -> Unsqueeze -> Slice."""
    nodes = [helper.make_node("Shape", ["ids"], ["shape"]),
             helper.make_node("Gather", ["shape", "one"], ["length"], axis=0),
             helper.make_node("Unsqueeze", ["length", "zero"], ["end"]),
             helper.make_node("Slice", ["positions", "zero", "end", "one"], ["pos"]),
             helper.make_node("Gather", ["table", "pos"], ["emb"]),
             helper.make_node("MatMul", ["emb", "w"], ["y"])]
    m = model(nodes, [vi("ids", ["batch", "seq"], I64)], [vi("y", None)],
              [numpy_helper.from_array(np.arange(16, dtype=np.int64)[None], "positions"),
               numpy_helper.from_array(np.array([1], dtype=np.int64), "one"),
               numpy_helper.from_array(np.array([0], dtype=np.int64), "zero"),
               weight("table", (16, 4)), weight("w", (4, 5))])
    m.graph.input[0].type.tensor_type.shape.dim[1].Clear()
    m.graph.input[0].type.tensor_type.shape.dim[1].dim_value = 6
    cost = flops.graph_cost(m, 2)
    assert cost.unknown == 0
    assert cost.flops_by_op == {"MatMul": 2 * 6 * 5 * 4}  # one (1, 6, 4) x (4, 5) for the batch


def test_ops_without_a_formula_are_named():
    m = model([helper.make_node("Einsum", ["x", "w"], ["y"], equation="bi,ij->bj")],
              [vi("x", ["batch", 4])], [vi("y", ["batch", 5])], [weight("w", (4, 5))])
    cost = flops.graph_cost(m, 1)
    assert cost.uncounted == ("Einsum",) and cost.flops == 0


def test_peak_gemm_model_and_mfu():
    n = 16
    cost = flops.graph_cost(flops.gemm_model(n), batch_size=n)
    assert cost.flops == flops.gemm_flops(n) == 2 * n ** 3
    assert flops.mfu(1e9, 100.0, 1e12) == pytest.approx(0.1)
    assert flops.mfu(None, 100.0, 1e12) is None and flops.mfu(1e9, 100.0, None) is None


def test_count_file_skips_external_weights(tmp_path):
    m = flops.gemm_model(8)
    path = tmp_path / "g.onnx"
    onnx.save(m, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
              location="w.bin", size_threshold=0)
    assert flops.count_file(path, 8).flops == 2 * 8 ** 3


def sequence_model():
    """x [batch, seq, 16] @ w [16, 8]: the sequence axis free, as an exporter
    with a dynamic length leaves it."""
    return model([helper.make_node("MatMul", ["x", "w"], ["y"])],
                 [vi("x", ["batch", "seq", 16])], [vi("y", ["batch", "seq", 8])],
                 [weight("w", (16, 8))])


def test_declared_sizes_bind_free_axes_and_a_free_one_is_named():
    free = flops.graph_cost(sequence_model(), 4)
    assert (free.flops, free.unknown, free.free_axes) == (0, 1, ("x[1]",))
    bound = flops.graph_cost(sequence_model(), 4, input_shapes={"x": (4, 10, 16)})
    assert (bound.flops, bound.unknown, bound.free_axes) == (2 * 4 * 10 * 16 * 8, 0, ())


def test_a_model_file_is_counted_at_the_zoo_s_sequence_length(tmp_path):
    """The session counts a file with a free sequence axis at the length the zoo
    declares, at every batch size (the MFU's numerator)."""
    from backends.cpu import CpuBackend
    from xpuperf.session import BenchSession
    from xpuperf.zoo import load_zoo

    onnx.save(sequence_model(), str(tmp_path / "seq.onnx"))
    (tmp_path / "mine.yaml").write_text(
        "models:\n  seq:\n    model: seq.onnx\n    precisions: [fp32]\n"
        "    inputs: [{name: x, shape: [batch, 10, 16], dtype: float32}]\n")
    zoo = load_zoo(tmp_path / "mine.yaml", "smoke")
    session = BenchSession(zoo, "CPU", CpuBackend(), {}, tmp_path / "cache", tmp_path / "data")
    (combo,) = zoo.combinations()
    for batch in (1, 4):
        figures = session.graph_figures(combo, batch)
        assert figures["flops_per_sample"] == 2 * 10 * 16 * 8 and "flops_note" not in figures
    # An axis no declaration binds costs its nodes, and says so.
    undeclared = dataclasses.replace(combo, model=dataclasses.replace(combo.model, inputs=()))
    with pytest.warns(UserWarning, match=r"seq: FLOPs and MFU leave out the 1 nodes that depend on "
                                         r"the graph's free input axes x\[1\]: declare their sizes"):
        figures = session.graph_figures(undeclared, 2)
    assert figures["flops_per_sample"] == 0 and "free input axes: x[1]" in figures["flops_note"]
