"""devices.py: the hardware choices, each made in one place, checked without the hardware by
patching what JAX reports (the backend, the device kind)."""
import jax
import pytest

import devices


@pytest.mark.parametrize('backend, cpu_bf16, dtype', [
    ('gpu', False, 'bfloat16'), ('tpu', False, 'bfloat16'),  # the backend decides, not the host's CPU
    ('tpu', True, 'bfloat16'), ('cpu', True, 'bfloat16'), ('cpu', False, 'float32'),
])
def test_auto_compute_dtype_follows_the_backend_then_the_cpus_instructions(monkeypatch, backend, cpu_bf16, dtype):
    monkeypatch.setattr(jax, 'default_backend', lambda: backend)
    monkeypatch.setattr(devices, 'cpu_has_bf16', lambda: cpu_bf16)
    chosen, why = devices.compute_dtype('auto')
    assert chosen == dtype and why.startswith('auto: ')
    assert devices.compute_dtype('float16') == ('float16', 'set')


@pytest.mark.parametrize('kind, backend, tflops', [
    ('NVIDIA A100-SXM4-80GB', 'gpu', 312), ('NVIDIA A100 80GB PCIe', 'gpu', 312),
    ('NVIDIA H100 80GB HBM3', 'gpu', 989), ('NVIDIA H100 PCIe', 'gpu', 756), ('NVIDIA H100 NVL', 'gpu', 835),
    ('NVIDIA H200', 'gpu', 989), ('NVIDIA H200 NVL', 'gpu', 835), ('NVIDIA B200', 'gpu', 2250),
    ('NVIDIA L4', 'gpu', 121), ('NVIDIA GeForce RTX 4090', 'gpu', 165.2), ('NVIDIA GeForce RTX 5090', 'gpu', 209.5),
    ('TPU v4', 'tpu', 275), ('TPU v5 lite', 'tpu', 197), ('TPU v5e', 'tpu', 197), ('TPU v5', 'tpu', 459),
    ('TPU v5p', 'tpu', 459), ('TPU v6 lite', 'tpu', 918), ('TPU v6e', 'tpu', 918),
])
def test_peak_flops_of_known_devices_come_from_the_data_sheets(kind, backend, tflops):
    measured = lambda dtype: pytest.fail('a known device is not measured')
    peak, source = devices.peak_flops('bfloat16', 0, kind, backend, n_devices=8, measure=measured)
    assert peak == pytest.approx(8 * tflops * 1e12) and 'data sheet' in source and kind in source


def test_l4_is_not_an_l40():
    peak, _ = devices.peak_flops('bfloat16', 0, 'NVIDIA L40S', 'gpu', n_devices=1, measure=lambda d: 1e14)
    assert peak == 1e14  # not in the table: measured


def test_unknown_devices_say_that_mfu_is_measured_and_how_and_a_setting_wins():
    peak, source = devices.peak_flops('bfloat16', 0, 'Some New Accelerator', 'gpu', n_devices=2, measure=lambda d: 5e14)
    assert peak == 1e15 and 'measured 4096x4096 bfloat16 matmul' in source and '--peak_tflops' in source
    assert devices.peak_flops('bfloat16', 100, 'NVIDIA H100', 'gpu', n_devices=2)[0] == 2e14


def test_a_cpu_has_no_peak_unless_one_is_set():
    assert devices.peak_flops('bfloat16', 0, 'cpu', 'cpu', n_devices=1) == (None, None)
    peak, source = devices.peak_flops('bfloat16', 2.5, 'cpu', 'cpu', n_devices=1)
    assert peak == 2.5e12 and 'peak_tflops=2.5' in source


def test_a_measured_matmul_peak_is_a_positive_rate():
    assert devices.matmul_flops(jax.numpy.float32, n=256) > 1e8  # a real measurement on this machine's CPU
