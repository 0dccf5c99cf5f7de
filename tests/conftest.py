import os

# Keras is the peer in parity tests; it must run on our torch, never try TensorFlow or JAX.
os.environ.setdefault("KERAS_BACKEND", "torch")
