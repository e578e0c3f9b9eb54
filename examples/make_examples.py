"""Build the example CloudTrail inputs under examples/inputs/ from the records below.

Run `python examples/make_examples.py` after editing a record; the output is
byte-for-byte reproducible (fixed gzip mtime, sorted keys).
"""

from __future__ import annotations

import gzip
import json
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
OURS = "111122223333"
ACME = "444455556666"
NIMBUS = "777788889999"
STRANGER = "999900001111"
ACME_ROLE = f"arn:aws:iam::{OURS}:role/AcmeAuditRole"
NIMBUS_ROLE = f"arn:aws:iam::{OURS}:role/NimbusBackupRole"
LEGACY_ROLE = f"arn:aws:iam::{OURS}:role/LegacyVendorRole"
VOLUME = f"arn:aws:ec2:us-east-1:{OURS}:volume/vol-0a1b2c3d4e5f60718"
# The plain external ID appears only in the trail, as CloudTrail logs it; the
# policy holds its SHA-256.
ACME_EXTERNAL_ID = "acme-7Qx2-Ld9p"
INPUTS = HERE / "inputs"
TRAIL_PREFIX = Path("trail/AWSLogs") / OURS

Record = dict[str, Any]


def _ids(label: str) -> dict[str, str]:
    event_id = uuid.uuid5(uuid.NAMESPACE_URL, f"trailwarden-example/{label}")
    request_id = uuid.uuid5(uuid.NAMESPACE_URL, f"trailwarden-request/{label}")
    return {"eventID": str(event_id), "requestID": str(request_id)}


def _call(
    label: str,
    time: str,
    source: str,
    name: str,
    identity: Record,
    ip: str,
    *,
    request: Record | None = None,
    response: Record | None = None,
    error: str | None = None,
    agent: str = "aws-cli/2.15.40 Python/3.11.8 Linux/6.1 botocore/2.4.5",
    read_only: bool = True,
    data_event: bool = False,
) -> Record:
    service = source.split(".")[0]
    record: Record = {
        "eventVersion": "1.09",
        "userIdentity": identity,
        "eventTime": time,
        "eventSource": source,
        "eventName": name,
        "awsRegion": "us-east-1",
        "sourceIPAddress": ip,
        "userAgent": agent,
        "requestParameters": request,
        "responseElements": response,
        **_ids(label),
        "readOnly": read_only,
        "eventType": "AwsApiCall",
        "managementEvent": not data_event,
        "recipientAccountId": OURS,
        "eventCategory": "Data" if data_event else "Management",
        "tlsDetails": {
            "tlsVersion": "TLSv1.3",
            "cipherSuite": "TLS_AES_128_GCM_SHA256",
            "clientProvidedHostHeader": f"{service}.us-east-1.amazonaws.com",
        },
    }
    if error is not None:
        record["errorCode"] = error
        record["errorMessage"] = f"User: {identity.get('arn')} is not authorized"
        record["responseElements"] = None
    return record


def _external_caller(account: str, principal: str) -> Record:
    # The role owner's copy of a cross-account AssumeRole names only the account.
    return {"type": "AWSAccount", "principalId": principal, "accountId": account}


def _assume_role(
    label: str,
    time: str,
    caller: Record,
    role: str,
    session: str,
    key: str,
    ip: str,
    *,
    external_id: str | None = None,
    mfa_serial: str | None = None,
) -> Record:
    request: Record = {"roleArn": role, "roleSessionName": session}
    if external_id is not None:
        request["externalId"] = external_id
    if mfa_serial is not None:
        request["serialNumber"] = mfa_serial
    role_name = role.rsplit("/", 1)[1]
    response = {
        "credentials": {
            "accessKeyId": key,
            "sessionToken": "<session token>",
            "expiration": "Jan 1, 2030, 12:00:00 AM",
        },
        "assumedRoleUser": {
            "assumedRoleId": f"AROA{role_name.upper()[:12]}EXAMPLE:{session}",
            "arn": f"arn:aws:sts::{OURS}:assumed-role/{role_name}/{session}",
        },
    }
    record = _call(
        label, time, "sts.amazonaws.com", "AssumeRole", caller, ip,
        request=request, response=response,
    )  # fmt: skip
    record["resources"] = [
        {"accountId": OURS, "type": "AWS::IAM::Role", "ARN": role},
    ]
    record["sharedEventID"] = str(uuid.uuid5(uuid.NAMESPACE_URL, label + "/shared"))
    return record


def _session(role: str, session: str, key: str, created: str, *, mfa: bool) -> Record:
    role_name = role.rsplit("/", 1)[1]
    role_id = f"AROA{role_name.upper()[:12]}EXAMPLE"
    return {
        "type": "AssumedRole",
        "principalId": f"{role_id}:{session}",
        "arn": f"arn:aws:sts::{OURS}:assumed-role/{role_name}/{session}",
        "accountId": OURS,
        "accessKeyId": key,
        "sessionContext": {
            "sessionIssuer": {
                "type": "Role",
                "principalId": role_id,
                "arn": role,
                "accountId": OURS,
                "userName": role_name,
            },
            "attributes": {
                "creationDate": created,
                "mfaAuthenticated": "true" if mfa else "false",
            },
        },
    }


ALICE = {
    "type": "IAMUser",
    "principalId": "AIDAALICEEXAMPLE00001",
    "arn": f"arn:aws:iam::{OURS}:user/alice",
    "accountId": OURS,
    "accessKeyId": "AKIAALICEEXAMPLE0001",
    "userName": "alice",
}
CONFIG_SERVICE = {"type": "AWSService", "invokedBy": "config.amazonaws.com"}
ACME_CALLER = _external_caller(ACME, "AIDAACMEPARTNEREXAMPLE")
NIMBUS_CALLER = _external_caller(NIMBUS, "AIDANIMBUSBACKUPEXAMPLE")
STRANGER_CALLER = _external_caller(STRANGER, "AIDAUNKNOWNVENDOREXAMPLE")
ACME_DAY = _session(
    ACME_ROLE,
    "acme-audit-0514",
    "ASIAACMEDAYEXAMPLE01",
    "2024-05-14T13:10:02Z",
    mfa=False,
)
ACME_NIGHT = _session(
    ACME_ROLE, "acme-sync", "ASIAACMENIGHTEXAMPL02", "2024-05-14T23:31:05Z", mfa=False
)
ACME_2025 = _session(
    ACME_ROLE,
    "acme-audit-0115",
    "ASIAACMEJANEXAMPLE03",
    "2025-01-15T15:04:09Z",
    mfa=False,
)
NIMBUS_MFA = _session(
    NIMBUS_ROLE,
    "nimbus-nightly",
    "ASIANIMBUSMFAEXAMP04",
    "2024-05-14T14:00:03Z",
    mfa=True,
)
NIMBUS_NO_MFA = _session(
    NIMBUS_ROLE,
    "nimbus-adhoc",
    "ASIANIMBUSNOMFAEXA05",
    "2024-05-14T16:20:19Z",
    mfa=False,
)


def morning_file() -> list[Record]:
    """09:10 in New York: our own work, AWS Config, and Acme's audit run, clean."""
    return [
        _call(
            "alice-describe", "2024-05-14T13:02:11Z", "ec2.amazonaws.com",
            "DescribeInstances", ALICE, "198.51.100.23",
            request={"instancesSet": {}, "filterSet": {}},
        ),
        _call(
            "config-describe", "2024-05-14T13:05:40Z", "s3.amazonaws.com",
            "GetBucketAcl", CONFIG_SERVICE, "config.amazonaws.com",
            request={"bucketName": "example-reports", "acl": ""},
            agent="config.amazonaws.com",
        ),
        _assume_role(
            "acme-assume-day", "2024-05-14T13:10:02Z", ACME_CALLER, ACME_ROLE,
            "acme-audit-0514", "ASIAACMEDAYEXAMPLE01", "203.0.113.10",
            external_id=ACME_EXTERNAL_ID,
        ),
        _call(
            "acme-list-buckets", "2024-05-14T13:10:15Z", "s3.amazonaws.com",
            "ListBuckets", ACME_DAY, "203.0.113.10",
            request={"Host": "s3.amazonaws.com"},
        ),
        _call(
            "acme-get-report", "2024-05-14T13:11:30Z", "s3.amazonaws.com",
            "GetObject", ACME_DAY, "2001:db8:1234::25",
            request={"bucketName": "example-reports", "key": "2024/05/usage.csv"},
            data_event=True,
        ),
    ]  # fmt: skip


def evening_file() -> list[Record]:
    """19:31 in New York: Acme's role is used from an unknown network, without
    the external ID, and the session tries to delete a bucket and read IAM."""
    return [
        _assume_role(
            "acme-assume-night", "2024-05-14T23:31:05Z", ACME_CALLER, ACME_ROLE,
            "acme-sync", "ASIAACMENIGHTEXAMPL02", "198.51.100.77",
        ),
        _call(
            "acme-delete-bucket", "2024-05-14T23:33:48Z", "s3.amazonaws.com",
            "DeleteBucket", ACME_NIGHT, "198.51.100.77",
            request={"bucketName": "example-reports"}, error="AccessDenied",
            read_only=False,
        ),
        _call(
            "acme-list-users", "2024-05-14T23:34:02Z", "iam.amazonaws.com",
            "ListUsers", ACME_NIGHT, "198.51.100.77", request={"maxItems": 100},
        ),
        _call(
            "alice-stop-instances", "2024-05-14T23:40:10Z", "ec2.amazonaws.com",
            "StopInstances", ALICE, "198.51.100.23",
            request={"instancesSet": {"items": [{"instanceId": "i-0abc1234def56789"}]}},
            read_only=False,
        ),
    ]  # fmt: skip


def january_file() -> list[Record]:
    """2025: Acme's contract ended with 2024, yet its role is still in use."""
    return [
        _assume_role(
            "acme-assume-2025", "2025-01-15T15:04:09Z", ACME_CALLER, ACME_ROLE,
            "acme-audit-0115", "ASIAACMEJANEXAMPLE03", "203.0.113.10",
            external_id=ACME_EXTERNAL_ID,
        ),
        _call(
            "acme-get-2025", "2025-01-15T15:05:51Z", "s3.amazonaws.com",
            "GetObject", ACME_2025, "203.0.113.10",
            request={"bucketName": "example-reports", "key": "2024/12/usage.csv"},
            data_event=True,
        ),
    ]  # fmt: skip


def eventbridge_events() -> list[Record]:
    """EventBridge copies: Nimbus with and without MFA, an unknown account, and
    our own console sign-in."""
    records = [
        _assume_role(
            "nimbus-assume-mfa", "2024-05-14T14:00:03Z", NIMBUS_CALLER, NIMBUS_ROLE,
            "nimbus-nightly", "ASIANIMBUSMFAEXAMP04", "192.0.2.44",
            mfa_serial=f"arn:aws:iam::{NIMBUS}:mfa/backup-operator",
        ),
        _call(
            "nimbus-backup-job", "2024-05-14T14:00:41Z", "backup.amazonaws.com",
            "StartBackupJob", NIMBUS_MFA, "192.0.2.44",
            request={"backupVaultName": "nightly", "resourceArn": VOLUME},
            read_only=False,
        ),
        _assume_role(
            "stranger-assume", "2024-05-14T15:02:27Z", STRANGER_CALLER, LEGACY_ROLE,
            "vendor", "ASIASTRANGEREXAMPL06", "192.0.2.200",
        ),
        _assume_role(
            "nimbus-assume-no-mfa", "2024-05-14T16:20:19Z", NIMBUS_CALLER, NIMBUS_ROLE,
            "nimbus-adhoc", "ASIANIMBUSNOMFAEXA05", "192.0.2.45",
        ),
        _call(
            "nimbus-list-vaults", "2024-05-14T16:21:02Z", "backup.amazonaws.com",
            "ListBackupVaults", NIMBUS_NO_MFA, "192.0.2.45", request=None,
        ),
    ]  # fmt: skip
    events = [_eventbridge(record) for record in records]
    sign_in = _call(
        "alice-console", "2024-05-14T12:58:00Z", "signin.amazonaws.com",
        "ConsoleLogin", ALICE, "198.51.100.23",
        response={"ConsoleLogin": "Success"}, read_only=False,
    )  # fmt: skip
    sign_in["eventType"] = "AwsConsoleSignIn"
    sign_in["additionalEventData"] = {"MFAUsed": "Yes", "MobileVersion": "No"}
    events.append(_eventbridge(sign_in, "AWS Console Sign In via CloudTrail"))
    return events


def _eventbridge(
    record: Record, detail_type: str = "AWS API Call via CloudTrail"
) -> Record:
    return {
        "version": "0",
        "id": str(uuid.uuid5(uuid.NAMESPACE_URL, record["eventID"])),
        "detail-type": detail_type,
        "source": "aws." + record["eventSource"].split(".")[0],
        "account": OURS,
        "time": record["eventTime"],
        "region": "us-east-1",
        "resources": [],
        "detail": record,
    }


def digest() -> Record:
    """A CloudTrail digest file, which replay recognises and skips."""
    return {
        "awsAccountId": OURS,
        "digestStartTime": "2024-05-14T13:00:00Z",
        "digestEndTime": "2024-05-14T14:00:00Z",
        "digestS3Bucket": "example-trail-bucket",
        "digestS3Object": f"AWSLogs/{OURS}/CloudTrail-Digest/us-east-1/2024/05/14/"
        f"{OURS}_CloudTrail-Digest_us-east-1_main_us-east-1_20240514T140000Z.json.gz",
        "digestPublicKeyFingerprint": "0123456789abcdef0123456789abcdef",
        "digestSignatureAlgorithm": "SHA256withRSA",
        "newestEventTime": "2024-05-14T13:11:30Z",
        "oldestEventTime": "2024-05-14T13:02:11Z",
        "previousDigestS3Bucket": None,
        "previousDigestS3Object": None,
        "previousDigestHashValue": None,
        "previousDigestHashAlgorithm": None,
        "previousDigestSignature": None,
        "logFiles": [
            {
                "s3Bucket": "example-trail-bucket",
                "s3Object": f"AWSLogs/{OURS}/CloudTrail/us-east-1/2024/05/14/"
                f"{OURS}_CloudTrail_us-east-1_20240514T1315Z_a1b2c3d4e5f6a7b8.json.gz",
                "hashValue": "0" * 64,
                "hashAlgorithm": "SHA-256",
                "newestEventTime": "2024-05-14T13:11:30Z",
                "oldestEventTime": "2024-05-14T13:02:11Z",
            }
        ],
    }


def _trail_file(day: str, stamp: str, suffix: str) -> Path:
    year, month, date = day.split("-")
    name = f"{OURS}_CloudTrail_us-east-1_{stamp}_{suffix}.json.gz"
    return TRAIL_PREFIX / "CloudTrail/us-east-1" / year / month / date / name


def _write_gzip(path: Path, document: object) -> None:
    target = INPUTS / path
    target.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(document)
    target.write_bytes(gzip.compress(text.encode(), mtime=0))


def main() -> None:
    _write_gzip(
        _trail_file("2024-05-14", "20240514T1315Z", "a1b2c3d4e5f6a7b8"),
        {"Records": morning_file()},
    )
    _write_gzip(
        _trail_file("2024-05-14", "20240514T2335Z", "c9d8e7f6a5b4c3d2"),
        {"Records": evening_file()},
    )
    _write_gzip(
        _trail_file("2025-01-15", "20250115T1505Z", "0f1e2d3c4b5a6978"),
        {"Records": january_file()},
    )
    _write_gzip(
        TRAIL_PREFIX / "CloudTrail-Digest/us-east-1/2024/05/14"
        / f"{OURS}_CloudTrail-Digest_us-east-1_main_us-east-1_20240514T140000Z.json.gz",
        digest(),
    )  # fmt: skip
    lines = [json.dumps(event) for event in eventbridge_events()]
    eventbridge = INPUTS / "eventbridge" / "cloudtrail-events-2024-05-14.jsonl"
    eventbridge.parent.mkdir(parents=True, exist_ok=True)
    eventbridge.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
