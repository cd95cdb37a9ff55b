#!/usr/bin/env python3
"""CDK entry point: settings from context, the gtseg stack, cdk-nag AwsSolutions on every synth."""

from __future__ import annotations

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks

from infra.settings import GtsegSettings, read_lambda_platform
from infra.stack import GtsegStack


def build_app(app: cdk.App | None = None) -> tuple[cdk.App, GtsegStack]:
    app = app or cdk.App()
    settings = GtsegSettings.from_context(app.node.get_all_context())
    stack = GtsegStack(
        app,
        settings.stack_name,
        settings=settings,
        platform=read_lambda_platform(),
        description="gtseg: SageMaker Ground Truth semantic segmentation with custom Lambdas",
    )
    # Environment-agnostic on purpose (no env=): synth needs no credentials and makes no AWS call.
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app, verbose=True))
    return app, stack


if __name__ == "__main__":
    built, _ = build_app()
    built.synth()
