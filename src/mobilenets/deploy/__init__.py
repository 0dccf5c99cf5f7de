"""Deployment: BN folding, ONNX export with parity checks, int8 quantization (`export`), and the
side-by-side CPU benchmark (`bench`)."""
