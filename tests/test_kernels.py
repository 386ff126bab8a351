"""score_topk: the torch reference's rules, the dispatcher, and the Triton kernel against the
reference under TRITON_INTERPRET=1 on the CPU.

triton.jit reads TRITON_INTERPRET when a function is decorated, triton's own library included,
so the variable must be set before triton is first imported in a process. The Triton cases
therefore run in one spawned worker process started with it set (this process may already
have imported triton through torch); the parent compares with the reference. The interpreter
executes every tile op in numpy, so shapes stay small; they still cross tiles (64 keys), N
chunks, D blocks and both code paths (broadcast for B <= 4, tl.dot above).
"""

from __future__ import annotations

import importlib.util
import multiprocessing
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np
import pytest
import torch

from kernels import score_topk
from kernels.dispatch import ENV, choose
from kernels.reference import score_topk_reference, unit_rows

Result = tuple[torch.Tensor, torch.Tensor]


def _run_triton(*args: Any, **kwargs: Any) -> Result:
    """Runs in the interpreter worker."""
    from kernels.triton_topk import INTERPRETED, score_topk_triton  # noqa: PLC0415 - worker only

    assert INTERPRETED, "the worker imported triton without TRITON_INTERPRET=1"
    return score_topk_triton(*args, **kwargs)


def _run_dispatch(*args: Any, **kwargs: Any) -> Result:
    return score_topk(*args, **kwargs)


@pytest.fixture(scope="module")
def interp() -> Iterator[Callable[..., Result]]:
    if importlib.util.find_spec("triton") is None:
        pytest.skip("the optional 'triton' extra is not installed (scripts/setup.sh installs it)")
    saved = os.environ.get("TRITON_INTERPRET")
    os.environ["TRITON_INTERPRET"] = "1"  # inherited by the spawned worker, then restored here
    try:
        pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
        pool.submit(int).result()  # start it now, while the variable is set
    finally:
        if saved is None:
            os.environ.pop("TRITON_INTERPRET", None)
        else:
            os.environ["TRITON_INTERPRET"] = saved
    with pool:
        yield lambda *a, fn=_run_triton, **kw: pool.submit(fn, *a, **kw).result()


def _case(b: int, d: int, n: int, dtype: torch.dtype = torch.float32, seed: int = 0, cost: bool = True) -> dict[str, Any]:
    g = torch.Generator().manual_seed(seed)
    out = {"queries": torch.randn(b, d, generator=g).to(dtype),
           "keys": unit_rows(torch.randn(n, d, generator=g)).to(dtype)}
    if cost:
        out |= {"key_bias": torch.rand(n, generator=g), "query_weight": torch.rand(b, generator=g)}
    return out


def _assert_match(got: Result, want: Result, atol: float = 1e-5) -> None:
    assert got[0].shape == want[0].shape and got[1].shape == want[1].shape
    assert got[0].dtype == torch.float32 and got[1].dtype == torch.int64
    torch.testing.assert_close(got[0], want[0], atol=atol, rtol=1e-5)
    assert torch.equal(got[1], want[1])


# -- the Triton kernel against the reference ----------------------------------------------

@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize(("b", "d", "n", "k", "chunks"), [
    (3, 385, 150, 5, None),  # broadcast path, D not a power of two, N not a multiple of 64
    (20, 40, 130, 8, None),  # tl.dot path, two query blocks of 16
    (2, 16, 300, 10, 3),  # three N chunks: partial top-k, then the merge kernel
])
def test_triton_matches_reference(interp: Callable[..., Result], dtype: torch.dtype, b: int, d: int, n: int, k: int,
                                  chunks: int | None) -> None:
    case = _case(b, d, n, dtype, seed=b + n)
    got = interp(**case, k=k, keys_normalized=True, chunks=chunks)
    _assert_match(got, score_topk_reference(**case, k=k, keys_normalized=True))


@pytest.mark.parametrize(("b", "n", "k"), [(2, 5, 9), (1, 1, 1), (3, 1, 4), (0, 10, 3), (17, 70, 64), (5, 70, 1)])
def test_triton_edge_shapes(interp: Callable[..., Result], b: int, n: int, k: int) -> None:
    """k > N returns N columns; N = 1; B = 0; k = 64 and k = 1 on the dot path."""
    case = _case(b, 24, n, seed=n)
    got = interp(**case, k=k)  # raw keys: normalized by the wrapper
    want = score_topk_reference(**case, k=k)
    assert got[0].shape == (b, min(k, n))
    _assert_match(got, want)


def test_triton_ties_go_to_the_lower_index(interp: Callable[..., Result]) -> None:
    """Exactly equal scores across tiles and chunks: one-hot keys repeated, integer queries."""
    d, n = 8, 200
    keys = torch.eye(d)[torch.arange(n) % d]  # key n is e_(n mod d): 25 copies of each
    queries = torch.tensor([[3.0, 1, 1, 0, 0, 0, 0, 0], [0.0, 0, 2, 2, 0, 0, 0, 0]])
    want = score_topk_reference(queries, keys, 30, keys_normalized=True)
    assert want[1][0, :25].tolist() == list(range(0, n, d))  # the reference's own rule
    for chunks in (None, 4):
        _assert_match(interp(queries, keys, 30, keys_normalized=True, chunks=chunks), want)
    # the cost term ties too: equal bias on equal keys keeps the order
    bias = (torch.arange(n) % d).float() * 0.01
    _assert_match(interp(queries, keys, 30, key_bias=bias, keys_normalized=True),
                  score_topk_reference(queries, keys, 30, key_bias=bias, keys_normalized=True))


@pytest.mark.parametrize(("dtype", "scale"), [(torch.float32, 1e30), (torch.float16, 3e4), (torch.bfloat16, 1e35)])
def test_triton_large_magnitudes(interp: Callable[..., Result], dtype: torch.dtype, scale: float) -> None:
    """Squares of these overflow the dtype (float32 for 1e30): the cosine must not change."""
    case = _case(4, 48, 90, seed=7)
    small = score_topk_reference(**case, k=6, keys_normalized=True)
    big = dict(case, queries=(case["queries"] / case["queries"].abs().max() * scale).to(dtype))
    got = interp(**big, k=6, keys_normalized=True)
    _assert_match(got, score_topk_reference(**big, k=6, keys_normalized=True))
    assert torch.equal(got[1], small[1]) or dtype != torch.float32  # 16-bit rounding may reorder near ties


@pytest.mark.parametrize(("field", "where", "value", "message"), [
    ("queries", (1, 3), float("nan"), "queries contains NaN or inf"),
    ("queries", (0, 0), float("inf"), "queries contains NaN or inf"),
    ("keys", (77, 5), float("-inf"), "keys contains NaN or inf"),
    ("key_bias", (12,), float("nan"), "key_bias contains NaN or inf"),
    ("query_weight", (2,), float("inf"), "query_weight contains NaN or inf"),
])
def test_nonfinite_inputs_raise(interp: Callable[..., Result], field: str, where: tuple[int, ...], value: float,
                                message: str) -> None:
    case = _case(5, 16, 100, seed=3)
    case[field][where] = value
    for run in (interp, score_topk_reference):
        with pytest.raises(ValueError, match=message):
            run(**case, k=4, keys_normalized=True)


def test_score_overflow_raises(interp: Callable[..., Result]) -> None:
    case = _case(2, 8, 10, seed=1)
    case["key_bias"][4], case["query_weight"][1] = 1e30, 1e30
    for run in (interp, score_topk_reference):
        with pytest.raises(ValueError, match="a score overflowed"):
            run(**case, k=3)


def test_dispatcher_runs_triton_when_named(interp: Callable[..., Result]) -> None:
    """impl='triton' goes to the kernel (here interpreted), numpy inputs included."""
    case = {k: v.numpy() for k, v in _case(6, 20, 80, seed=5).items()}
    got = interp(**case, k=7, impl="triton", fn=_run_dispatch)
    _assert_match(got, score_topk(**case, k=7, impl="reference"))


# -- the reference, the dispatcher, the launch plan ---------------------------------------

def test_reference_rules() -> None:
    q = torch.tensor([[1.0, 0.0]])
    keys = torch.tensor([[0.0, 1.0], [1.0, 0.0], [2.0, 0.0], [-1.0, 0.0]])
    v, i = score_topk_reference(q, keys, 10)  # k > N: all N, best first; the tie 1 vs 2 to the lower index
    assert i.tolist() == [[1, 2, 0, 3]] and v.tolist() == [[1.0, 1.0, 0.0, -1.0]]
    v, i = score_topk_reference(q, keys, 2, key_bias=torch.tensor([0.0, 0.5, 0.0, 0.0]))  # weight defaults to 1
    assert i.tolist() == [[2, 1]] and v.tolist() == [[1.0, 0.5]]
    assert score_topk_reference(torch.zeros(0, 2), keys, 3)[0].shape == (0, 3)
    assert score_topk_reference(torch.zeros(1, 2), keys, 2)[1].tolist() == [[0, 1]]  # zero query: all 0, index order
    for bad_k in (0, 2.0, True):
        with pytest.raises(ValueError, match="k must be an integer"):
            score_topk_reference(q, keys, bad_k)
    assert score_topk_reference(q, keys, np.int64(1))[1].tolist() == [[1]]
    with pytest.raises(ValueError, match="do not match"):
        score_topk_reference(q, torch.ones(3, 5), 1)


def test_dispatcher_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    q = torch.ones(1, 4)
    assert choose(q, 5) == "reference"  # CPU tensors
    monkeypatch.setenv(ENV, "triton")
    assert choose(q, 5) == "triton"
    assert choose(q, 5, impl="reference") == "reference"  # the argument wins over the variable
    monkeypatch.setenv(ENV, "fast")
    with pytest.raises(ValueError, match="unknown implementation 'fast'"):
        score_topk(q, torch.ones(3, 4), 1)


def test_launch_plan() -> None:
    """One launch at B=32, N=1000; N = 1e6 splits into chunks whose partials are B x chunks x k."""
    pytest.importorskip("triton", reason="the optional 'triton' extra is not installed")
    from kernels.triton_topk import plan_launch  # noqa: PLC0415 - compiled mode is fine: nothing runs

    small = plan_launch(32, 384, 1000, 16, 2, programs=528)  # 4 per SM on an H200
    assert small.launches == 1 and small.use_dot and small.chunks == 1
    big = plan_launch(1, 384, 10**6, 16, 4, programs=528)
    assert big.launches == 2 and not big.use_dot and big.chunks > 1
    assert big.chunks * big.chunk_len >= 10**6 > (big.chunks - 1) * big.chunk_len
    assert 264 <= big.chunks <= 528  # fills the device; partials 1 x chunks x 16
