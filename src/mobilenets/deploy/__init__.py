"""Deployment: a model as files that inference runtimes run, and what they measure. `base` holds
what the backends share; the backends (`export` for ONNX, `openvino`, `executorch`, `tflite`, `web`)
sit over it; `runtimes` is their registry; `bench`, `profile` and `choose` measure
(docs/architecture.md)."""
