"""A tuning-free CPU schedule for the TIR kernels that Relax lowers ONNX ops to.

Why: the CPU pipeline of ``tvm.compile`` (relax.backend.cpu_generic) legalizes
every op into a TIR kernel and schedules none of them. Each kernel then runs on
one thread, and a MatMul keeps its reduction loop innermost, reading the weight
a row's stride apart: minilm-l6 at smoke size took 2.1 s a batch of 4, 25 times
what this schedule takes. TVM's own answer is MetaSchedule tuning, hours per
model on a small host; dlight, its tuning-free rules, has CPU rules only for
GEMV and norm-like reductions. So every kernel here gets one fixed rule, per
block:

- a reduction whose innermost spatial axis walks every buffer it touches with
  unit stride (a MatMul's output column, a convolution's output width), or whose
  innermost reduction loop is short (a 3x3 kernel's width), has that axis moved
  inside the reduction loops and vectorized: the inner loop becomes a multiply-add
  along a row;
- any other reduction (a row sum, a softmax's max) keeps its loop order;
- in both, the other spatial loops are fused and run in parallel;
- an elementwise block's loops are fused, run in parallel and vectorized.

Only spatial loops move, so every output element is still summed in the same
order as without the schedule. A kernel the rule cannot schedule (a
ScheduleError) keeps TVM's default; the compile report counts both.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

SCHEDULES = ("loops", "none")
# A reduction loop this short (a 3x3 or 1x1 kernel's width) is no inner loop worth
# keeping: the output axis goes inside even where it strides (a stride-2 convolution).
_SHORT_REDUCTION = 16


@dataclass
class KernelCount:
    """Kernels (TIR functions) seen and scheduled by one build."""

    kernels: int = 0
    scheduled: int = 0


def relax_pipeline(target: Any, schedule: str, count: KernelCount) -> Any:
    """The CPU pipeline of ``tvm.compile``, with ``schedule`` applied to the TIR
    kernels once they are legalized and fused ("none": TVM's pipeline as is)."""
    import tvm
    from tvm.relax.backend.cpu_generic import pipeline as cpu

    @tvm.transform.module_pass(opt_level=0, name="XpuperfCpuPipeline")
    def _pipeline(mod: Any, _ctx: Any) -> Any:
        with target:
            return tvm.transform.Sequential(
                cpu.library_dispatch_passes(target) + cpu.legalize_passes(target) + [_schedule_pass(schedule, count)]
                + cpu.dataflow_lower_passes(target) + cpu.finalize_passes(target))(mod)

    return _pipeline


def _schedule_pass(schedule: str, count: KernelCount) -> Any:
    import tvm
    from tvm import tirx

    @tvm.transform.module_pass(opt_level=0, name="XpuperfLoopSchedule")
    def _pass(mod: Any, _ctx: Any) -> Any:
        target = tvm.target.Target.current(allow_none=False)
        lanes_bits = max(tvm.target.codegen.llvm_get_vector_width(target), 128)
        for gvar, func in list(mod.functions_items()):
            if not isinstance(func, tirx.PrimFunc):
                continue
            count.kernels += 1
            scheduled = None if schedule == "none" else _schedule(func, lanes_bits)
            if scheduled is not None:
                count.scheduled += 1
                mod[gvar] = scheduled.with_attr("tirx.is_scheduled", True)
        return mod

    return _pass


def _schedule(func: Any, lanes_bits: int) -> Any | None:
    """``func`` scheduled by the rule, or None where the rule does not apply."""
    from tvm import s_tir
    from tvm.s_tir.dlight.analysis import normalize_prim_func

    sch = s_tir.Schedule(func)
    blocks = normalize_prim_func(sch)
    if not blocks:
        return None
    try:
        for info in blocks:
            _schedule_block(sch, info, lanes_bits)
    except s_tir.ScheduleError:
        return None
    return sch.mod["main"]


def _schedule_block(sch: Any, info: Any, lanes_bits: int) -> None:
    block = info.block_rv
    loops = sch.get_loops(block)
    kind = info.dom_kind()  # one letter per block axis: S(patial), R(eduction), O(ther)
    if not kind or len(loops) != len(kind):
        return
    stmt = sch.get(block)
    dtype = stmt.writes[0].source.dtype
    # Vectors of bool or int64 are not worth it (and bool stores do not vectorize).
    lanes = lanes_bits // dtype.bits if str(dtype).startswith("float") else 0
    if info.is_injective():
        whole = sch.fuse(*loops)
        extent = _extent(sch, whole)
        if lanes and extent and extent % lanes == 0 and extent >= 2 * lanes:
            outer, inner = sch.split(whole, [None, lanes])
            sch.parallel(outer)
            sch.vectorize(inner)
        elif extent is None or extent > 1:
            sch.parallel(whole)
        return
    spatial = len(kind) - len(kind.lstrip("S"))
    if spatial == 0 or kind[spatial:].strip("R"):
        return  # not the S..SR..R form of a plain reduction
    space, reduce = loops[:spatial], loops[spatial:]
    innermost = stmt.iter_vars[spatial - 1].var
    strided = not all(_unit_stride(region, innermost) for region in [*stmt.reads, *stmt.writes])
    row = _extent(sch, reduce[-1])
    if strided and (row is None or row >= _SHORT_REDUCTION):
        # A long reduction along a row (a softmax's max): it stays the inner loop.
        sch.parallel(sch.fuse(*space) if spatial > 1 else space[0])
        return
    sch.reorder(*space[:-1], *reduce, space[-1])
    if spatial > 1:
        sch.parallel(sch.fuse(*space[:-1]))
    extent = _extent(sch, space[-1])
    if lanes and extent and extent % lanes == 0:
        _, inner = sch.split(space[-1], [None, lanes])
        sch.vectorize(inner)
    # Last: parallel and vectorize want the block whole; this splits off its init.
    sch.decompose_reduction(block, reduce[0])


def _extent(sch: Any, loop: Any) -> int | None:
    """A loop's extent, None when it is symbolic."""
    from tvm import tirx

    extent = sch.get(loop).extent
    return int(extent.value) if isinstance(extent, tirx.IntImm) else None


def _unit_stride(region: Any, var: Any) -> bool:
    """Whether stepping ``var`` moves along ``region``'s buffer with stride 1 (or
    not at all): ``var`` is absent from all but its last index, and has
    coefficient 1 there."""
    from tvm import tirx
    from tvm.sym.pattern import detect_linear_equation

    def uses(expr: Any) -> bool:
        return any(v.same_as(var) for v in tirx.analysis.undefined_vars(expr))

    index = [r.min for r in region.region]
    if not index:
        return True  # a scalar
    if any(uses(i) for i in index[:-1]):
        return False
    if not uses(index[-1]):
        return True
    coefficient = detect_linear_equation(index[-1], [var])
    return (len(coefficient) == 2 and isinstance(coefficient[0], tirx.IntImm)
            and coefficient[0].value == 1)
