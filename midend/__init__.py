"""npuc midend: the ordered pass pipeline between import and code generation.

One pass per module (``fold_constants``, ``fold_batchnorm``, ...); the order
and the reason for each lives in :mod:`npuc.midend.pipeline`.
"""
