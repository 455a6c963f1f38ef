"""benchmarks/core_time.py: how perf samples are classified (the perf run is a benchmark)."""

import importlib.util
from pathlib import Path

import pytest

PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "core_time.py"
spec = importlib.util.spec_from_file_location("core_time", PATH)
core_time = importlib.util.module_from_spec(spec)
spec.loader.exec_module(core_time)


@pytest.mark.parametrize(
    ("symbol", "library", "expected"),
    [
        ("ynn::dot_fp32_5x16x4_1x4x4_avx512", "/x/jaxlib/libjax_common.so", "matmul kernels"),
        ("Eigen::internal::gebp_kernel<float, float, long>::operator()", "libjax_common.so",
         "matmul kernels"),
        ("ynn::interleave4_x32_avx512", "libjax_common.so", "matmul data movement"),
        ("Eigen::internal::gemm_pack_colmajor_block<float>", "libjax_common.so",
         "matmul data movement"),
        ("(anonymous namespace)::forward_block", "/c/mql_gru_abc.so", "GRU kernels"),
        ("[unknown]", "/tmp/perf-123.map", "XLA-generated kernels"),
        ("[unknown]", "[unknown]", "XLA-generated kernels"),
        ("Eigen::ThreadPoolTempl<tsl::thread::EigenEnvironment>::GlobalSteal", "libjax_common.so",
         "thread pool, waiting"),
        ("finish_task_switch.isra.0", "[kernel.kallsyms]", "thread pool, waiting"),
        ("xla::cpu::ThunkExecutor::Execute<xla::cpu::ThunkExecutor::FifoReadyQueue>",
         "libjax_common.so", "runtime"),
        ("_int_malloc", "libc.so.6", "runtime"),
        ("__memmove_avx512_unaligned_erms", "libc.so.6", "copies"),
        ("_PyEval_EvalFrameDefault", "libpython3.11.so", "other"),
    ],
)  # fmt: skip
def test_classify(symbol, library, expected):
    assert core_time.classify(symbol, library) == expected
    assert expected in core_time.CLASSES


def test_parse_samples_counts_lines_of_perf_script():
    text = "\n".join(
        [
            "     7f75c683f078 [unknown] (/tmp/perf-11463.map)",
            "     7f7613b8bb20 __memmove_avx512_unaligned_erms (/usr/lib/libc.so.6)",
            "     7f7613b8bb20 ynn::dot_fp32_5x64x1_1x16x1_avx512 (/x/libjax_common.so)",
            "     7f7613b8bb21 ynn::dot_fp32_5x64x1_1x16x1_avx512 (/x/libjax_common.so)",
            "not a sample line",
        ]
    )
    counts = core_time.parse_samples(text)
    assert counts == {"XLA-generated kernels": 1, "copies": 1, "matmul kernels": 2}
