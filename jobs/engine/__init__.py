"""The separation engine: audio in, stems out. Never imports Django (tests/test_layout.py checks).

audio (probe and decode with ffmpeg), separation (load models, apply them, encode stems),
execution and openvino_runtime (which engine and arithmetic run a model), peaks (waveforms),
testmodel (random-weight Demucs models for tests and demos). The worker, the tests and bench/
share it as it is.
"""
