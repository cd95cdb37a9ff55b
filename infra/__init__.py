"""gtseg infrastructure (AWS CDK): one construct per concern, composed by ``infra.stack``."""
