"""Test tooling shared by the suite: reference runners and inputs.

One module per concern (``reference.py`` for onnxruntime, ``images.py`` for
real inputs, ...). What tools and demos also use lives in ``tools/``
(``tools/real_models.py`` for the models shipped in wheels, ``tools/photos.py``).
"""
