"""Test tooling shared by the suite: reference runners, model locators, inputs.

One module per concern (``reference.py`` for onnxruntime, ``real_models.py``
for models shipped in wheels, ``images.py`` for real inputs, ...).
"""
