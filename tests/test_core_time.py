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


def test_without_perf_the_error_is_one_line(monkeypatch):
    monkeypatch.setattr(core_time.shutil, "which", lambda name: None)
    with pytest.raises(SystemExit, match="core_time: needs Linux perf on PATH"):
        core_time.main([])


def test_report_bounds_from_counts():
    """2 cores, 1,000 samples/s per class scale: the numbers follow from the counts by hand."""
    counts = {c: 0 for c in core_time.CLASSES}
    counts.update({"matmul kernels": 700, "GRU kernels": 100, "thread pool, waiting": 100,
                   "XLA-generated kernels": 200})  # fmt: skip
    r = {"updates": 100, "updates_per_s": 100.0, "flops": 1e9, "peak": 200.0, "cores": 2}
    r["counts"] = counts
    text = "\n".join(core_time.report(r, 1000, "env", "auto"))
    # 10 ms per update; 7, 1, 1, 2 core-ms per update; utilisation 1e9 * 100 / 200e9 = 50%
    assert "utilisation 50%" in text
    assert "| matmul kernels | 7.00 | 63.6% |" in text
    assert "cores working: 1.00 of 2" in text  # (7 + 1 + 2) core-ms / 10 ms
    # kernels 8 core-ms on 2 cores = 4 ms per update: 1e9 / 4e-3 / 200e9 = 125%
    assert "on all cores: 125%" in text
    # 60% allows 1e9 / 120e9 = 8.33 ms: 8.33 x 1.00 - 8 = 0.33; x 2 - 8 = 8.67; now 2.00
    assert "1.00 cores working, 0.33 core-ms" in text
    assert "(now 2.00); with all 2 cores always working, 8.67" in text
