"""Publishing a run: the sanitized TRAINING_LOG.md (``sanitize``, ``export``), the
passport/signoff gate (``gate``), the public package (``package``, ``modelcard``) and the
``## HuggingFace`` record with the optional upload (``record``)."""
