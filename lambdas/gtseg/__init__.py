"""gtseg: SageMaker Ground Truth semantic segmentation with your own pre-annotation and consolidation."""

__version__ = "0.1.0"
