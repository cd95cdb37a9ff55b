"""The consolidation benchmark (``make bench``): scenes, worker error models, reference methods.

Nothing here ships or is imported by the ``gtseg`` package; gtseg itself is reached only through
``bench.gtseg_adapter``. The error models and the street generator are numpy + Pillow only (the unit
tests import them); scikit-image, SimpleITK and crowd-kit (``bench/requirements.txt``) are imported
lazily where they are needed.
"""
