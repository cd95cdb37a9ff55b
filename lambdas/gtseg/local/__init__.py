"""A local Ground Truth: everything ``gtseg simulate`` needs to run a labeling job with no AWS account.

- ``moto_server``: moto's S3 (and STS) on 127.0.0.1, with boto3 pointed at it for this process.
- ``lambda_runtime``: a Lambda Runtime API on 127.0.0.1 driving ``python -m awslambdaric``.
- ``sagemaker_standin``: CreateLabelingJob / DescribeLabelingJob over the AWS JSON 1.1 protocol.
- ``ground_truth``: the job driver (pre-annotation, worker template, workers, consolidation, output).

Development/test dependencies only (moto, awslambdaric, python-liquid): never imported by a handler.
"""
