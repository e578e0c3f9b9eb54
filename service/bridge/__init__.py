"""The bridge: feeds Kafka from where CloudTrail writes (S3 via SQS, EventBridge).

`trailwarden bridge s3` and `trailwarden bridge eventbridge`; see service/bridge/cli.py.
"""
