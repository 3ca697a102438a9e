"""What methods and metrics share, written once.

``scores`` (softmax, target scores, score and target checks), ``checks``
(argument checks with one error template), ``fills`` (what a hidden pixel
becomes, and the one blur), ``batching`` (index ranges, progress in images),
``prefetch`` (the next batch built while the model runs), ``superpixels`` and
``quickshift`` (LIME's segmentation and masking), ``compiled`` (their optional
numba loops). Private to seewhy: nothing here is public API, and nothing here
imports a framework.
"""
