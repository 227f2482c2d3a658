"""poster-genres: the inference service."""

import os

# TensorFlow's C++ start-up chatter (oneDNN notices, CPU feature lists) is noise in service logs.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
