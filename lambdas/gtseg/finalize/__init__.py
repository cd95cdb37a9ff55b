"""Finalize a finished labeling job: its output manifest back in the built-in semantic-segmentation
form, a training dataset, a report and a summary, under ``<job>/gtseg/`` (docs/finalize.md).

Map and reduce over the manifest's lines, the same functions in the Step Functions Distributed Map
(``handlers.finalize``, ``infra/finalize.py``) and in ``gtseg finalize`` (``runner``):

* ``plan``: one streaming pass: the label attribute, the job's class map, which file names collide;
* ``batch``: the map step, per batch of lines: each line rewritten from its sidecar, the object's
  dataset files written, its records (manifest line, index row, COCO image and annotations,
  figures) in one part file;
* ``reduce``: the part files in line order -> ``output.manifest``, ``dataset/`` and the figures;
* ``report``: ``gtseg report`` over a bounded selection of objects;
* ``summary``: ``summary.json`` and the notification text.
"""
