"""`trailwarden bridge s3`: long-poll SQS, bridge the files each message names.

A message is deleted only after Kafka acknowledged every record of every file it
names (or the file went to the dead letters), so a crash re-reads, never loses.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import structlog
from botocore.exceptions import BotoCoreError, ClientError

from service.bridge.metrics import FAILURES, FILES_SKIPPED, SQS_IN_FLIGHT
from service.bridge.notifications import NotificationError, parse_notification
from service.bridge.producer import KafkaUnavailable, RecordProducer
from service.bridge.s3_files import S3Unavailable
from service.bridge.settings import BridgeSettings
from service.bridge.transfer import bridge_file
from service.errors import ServiceError

__all__ = ["SqsBridge"]

_log = structlog.get_logger(__name__)

# Test-only: seconds to wait between the Kafka acks and the delete, so a test can
# kill the process in exactly that window.
_PAUSE_BEFORE_DELETE_ENV = "_TRAILWARDEN_BRIDGE_TEST_PAUSE_BEFORE_DELETE"


class SqsBridge:
    """Receives S3 notifications from one queue and bridges their files."""

    def __init__(
        self,
        settings: BridgeSettings,
        queue_url: str,
        *,
        sqs: Any,
        s3: Any,
        producer: RecordProducer,
    ) -> None:
        self._settings = settings
        self._queue_url = queue_url
        self._sqs = sqs
        self._s3 = s3
        self._producer = producer
        self._visibility = settings.bridge_visibility_timeout_seconds
        self._pause_before_delete = float(os.environ.get(_PAUSE_BEFORE_DELETE_ENV, 0))

    async def run(self, stop: asyncio.Event) -> None:
        """Poll until `stop` is set; the messages in hand are finished first."""
        # A wrong queue URL or missing permission fails here, at start.
        await self._call("get_queue_attributes", AttributeNames=["QueueArn"])
        _log.info("bridge.sqs_started", queue_url=self._queue_url)
        while not stop.is_set():
            messages = await self._receive()
            if stop.is_set():
                # Received while stopping: hand them straight back to the queue.
                await self._release(messages)
                break
            if messages:
                async with asyncio.TaskGroup() as group:
                    for message in messages:
                        group.create_task(self._handle(message))
        _log.info("bridge.sqs_stopped", queue_url=self._queue_url)

    async def _handle(self, message: dict[str, Any]) -> None:
        receipt = message["ReceiptHandle"]
        log = _log.bind(message_id=message.get("MessageId"))
        SQS_IN_FLIGHT.inc()
        try:
            async with asyncio.TaskGroup() as group:
                heartbeat = group.create_task(self._keep_invisible(receipt))
                try:
                    done = await self._process(message["Body"], log)
                finally:
                    heartbeat.cancel()
            if done:
                await self._pause_if_testing(log)
                await self._delete(receipt, log)
        finally:
            SQS_IN_FLIGHT.dec()

    async def _process(self, body: str, log: Any) -> bool:
        """Bridge every file the message names; False leaves it for a later try."""
        try:
            notification = parse_notification(body)
        except NotificationError as exc:
            FAILURES.labels("bad_notification").inc()
            log.warning("bridge.bad_notification", error=str(exc))
            await self._producer.send_dead_letter(
                source="sqs",
                reason="bad_notification",
                detail=str(exc),
                queue_url=self._queue_url,
                body=body[:4096],
            )
            return True
        if not notification.objects:
            reason = "test_event" if notification.form == "s3_test_event" else None
            FILES_SKIPPED.labels(reason or "not_created").inc()
            return True

        try:
            for obj in notification.objects:
                await bridge_file(self._s3, self._producer, obj, source="sqs")
        except (S3Unavailable, KafkaUnavailable) as exc:
            reason = "kafka_unavailable" if isinstance(exc, KafkaUnavailable) else None
            FAILURES.labels(reason or "s3_unavailable").inc()
            # SQS shows the message again after the visibility timeout; a queue
            # redrive policy moves it aside after maxReceiveCount attempts.
            log.warning("bridge.message_retry_later", error=str(exc))
            return False
        except Exception:
            # A bug on one message must not stop the others; SQS shows it again.
            FAILURES.labels("unexpected_error").inc()
            log.exception("bridge.message_failed")
            return False
        return True

    async def _delete(self, receipt: str, log: Any) -> None:
        try:
            await self._call("delete_message", ReceiptHandle=receipt)
        except ServiceError as exc:
            # The message shows again and its files are bridged twice; the
            # consumer drops the repeated records by eventID.
            log.warning("bridge.delete_failed", error=str(exc))
            return
        log.debug("bridge.message_deleted")

    async def _receive(self) -> list[dict[str, Any]]:
        try:
            response = await self._call(
                "receive_message",
                MaxNumberOfMessages=self._settings.bridge_max_messages,
                WaitTimeSeconds=self._settings.bridge_wait_seconds,
                VisibilityTimeout=self._visibility,
            )
        except ServiceError as exc:
            _log.warning("bridge.receive_failed", error=str(exc))
            await asyncio.sleep(1.0)
            return []
        messages: list[dict[str, Any]] = response.get("Messages", [])
        return messages

    async def _keep_invisible(self, receipt: str) -> None:
        """Extend the visibility timeout while a big file is in progress."""
        while True:
            await asyncio.sleep(self._visibility / 3)
            try:
                await self._call(
                    "change_message_visibility",
                    ReceiptHandle=receipt,
                    VisibilityTimeout=self._visibility,
                )
            except ServiceError as exc:
                _log.warning("bridge.visibility_extend_failed", error=str(exc))

    async def _release(self, messages: list[dict[str, Any]]) -> None:
        for message in messages:
            try:
                await self._call(
                    "change_message_visibility",
                    ReceiptHandle=message["ReceiptHandle"],
                    VisibilityTimeout=0,
                )
            except ServiceError as exc:
                _log.warning("bridge.release_failed", error=str(exc))

    async def _pause_if_testing(self, log: Any) -> None:
        if self._pause_before_delete > 0:
            log.warning("bridge.paused_before_delete")
            await asyncio.sleep(self._pause_before_delete)

    async def _call(self, operation: str, **kwargs: Any) -> Any:
        method = getattr(self._sqs, operation)
        try:
            return await asyncio.to_thread(method, QueueUrl=self._queue_url, **kwargs)
        except (ClientError, BotoCoreError) as exc:
            raise ServiceError(f"SQS {operation} failed: {exc}") from exc
