"""Training with bit-exact resume (`train`), evaluation and prediction of checkpoints (`evaluate`),
and the MobileNetV1-against-its-full-convolution-twin experiment (`compare`)."""
