"""DashScope's temporary upload, emulated: ``GET /api/v1/uploads?action=getPolicy`` and the OSS form POST.

The policy names this emulator as ``upload_host`` (``http://127.0.0.1:<port>/oss``), or
its second, upload-only server (``Emulator(separate_upload_host=True)``), which is how the
real service looks: the API host and the OSS host differ, and only the first may see a key.
The form endpoint checks what OSS would (a signed, unexpired policy; the key inside its
``upload_dir``; no overwrite of an existing object; a size cap) and, more strictly than
OSS, what the official SDK sends: exactly its fields in its order, and no
``Authorization`` header — a key sent to OSS is a leak. Files live in memory in
:attr:`Emulator.oss` for 48 h and are readable only by the generation endpoint, only with
``X-DashScope-OssResourceResolve: enable``.

Errors use the documented shapes: DashScope JSON for getPolicy, OSS XML for the form.
"""

from __future__ import annotations

import base64
import datetime as _dt
import hashlib
import hmac
import json
import re
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from html import escape

from .faults import Fault
from .server import RecordedRequest, Reply

__all__ = ["FORM_FIELDS", "OSS_PATH", "POLICY_PATH", "OssStore", "PolicyRoute", "UploadRoute"]

POLICY_PATH = "/api/v1/uploads"
OSS_PATH = "/oss"
FORM_FIELDS = (
    "OSSAccessKeyId",
    "Signature",
    "policy",
    "key",
    "x-oss-object-acl",
    "x-oss-forbid-overwrite",
    "success_action_status",
    "x-oss-content-type",
    "file",
)
POLICY_SECONDS = 300  # what the service is seen to grant
FILE_SECONDS = 48 * 3600
MAX_FILE_MB = 100
ACCESS_KEY_ID = "LTAI-emulator-oss"


@dataclass
class _Issued:
    policy: str
    upload_dir: str
    model: str
    expires: float


@dataclass
class StoredFile:
    data: bytes
    model: str
    content_type: str
    expires: float


class OssStore:
    """Issued policies and uploaded files; ``files`` is the emulator's ``oss`` dict."""

    def __init__(self, files: dict[str, bytes], clock: Callable[[], float] = time.time) -> None:
        self.files = files  # oss:// URL -> bytes (tests read it)
        self.meta: dict[str, StoredFile] = {}
        self.clock = clock
        self._secret = secrets.token_bytes(32)
        self._issued: dict[str, _Issued] = {}
        self._lock = threading.Lock()

    def sign(self, policy: str) -> str:
        return base64.b64encode(
            hmac.new(self._secret, policy.encode(), hashlib.sha1).digest()
        ).decode()

    def issue(self, model: str) -> dict[str, object]:
        now = self.clock()
        day = _dt.datetime.fromtimestamp(now, _dt.timezone.utc).strftime("%Y-%m-%d")
        upload_dir = f"dashscope-instant/emulator/{day}/{uuid.uuid4()}"
        expiry = _dt.datetime.fromtimestamp(now + POLICY_SECONDS, _dt.timezone.utc)
        document = {
            "expiration": expiry.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
            "conditions": [
                ["content-length-range", 0, MAX_FILE_MB * 1024 * 1024],
                ["starts-with", "$key", upload_dir],
                {"bucket": "dashscope-file-emulator"},
            ],
        }
        policy = base64.b64encode(json.dumps(document).encode()).decode()
        signature = self.sign(policy)
        with self._lock:
            self._issued[signature] = _Issued(policy, upload_dir, model, now + POLICY_SECONDS)
        return {
            "policy": policy,
            "signature": signature,
            "upload_dir": upload_dir,
            "expire_in_seconds": POLICY_SECONDS,
            "max_file_size_mb": MAX_FILE_MB,
            "capacity_limit_mb": 999_999_999,
            "oss_access_key_id": ACCESS_KEY_ID,
            "x_oss_object_acl": "private",
            "x_oss_forbid_overwrite": "true",
        }

    def issued(self, signature: str) -> _Issued | None:
        with self._lock:
            return self._issued.get(signature)

    def put(self, key: str, data: bytes, model: str, content_type: str) -> bool:
        """Store a file; False when the key is taken (forbid-overwrite)."""
        url = f"oss://{key}"
        with self._lock:
            if url in self.files and self.meta[url].expires > self.clock():
                return False
            self.files[url] = data
            self.meta[url] = StoredFile(data, model, content_type, self.clock() + FILE_SECONDS)
        return True

    def get(self, url: str) -> bytes | None:
        """A file's bytes while it lives (what the generation endpoint resolves).

        Files a test put straight into ``Emulator.oss`` have no upload record and never expire.
        """
        with self._lock:
            meta = self.meta.get(url)
            if meta is None:
                return self.files.get(url)
            return meta.data if meta.expires > self.clock() else None


class PolicyRoute:
    """``GET /api/v1/uploads?action=getPolicy&model=...``."""

    def __init__(
        self,
        check_key: Callable[[str | None], bool],
        store: OssStore,
        upload_host: Callable[[], str | None] = lambda: None,
    ) -> None:
        self._check_key = check_key
        self._store = store
        self._upload_host = upload_host  # a separate OSS host, when the emulator runs one

    def __call__(self, request: RecordedRequest, fault: Fault) -> Reply:
        rid = str(uuid.uuid4())
        auth = request.headers.get("authorization", "")
        key = auth[7:] if auth.startswith("Bearer ") else None
        if not self._check_key(key):
            return _json_error(401, "InvalidApiKey", "Invalid API-key provided.", rid)
        action = (request.query.get("action") or [""])[0]
        if action != "getPolicy":
            return _json_error(400, "InvalidParameter", f"Unsupported action: {action!r}.", rid)
        model = (request.query.get("model") or [""])[0]
        if not model:
            return _json_error(400, "InvalidParameter", 'Required parameter "model" missing.', rid)
        data = self._store.issue(model)
        data["upload_host"] = (self._upload_host() or _host_of(request)) + OSS_PATH
        return Reply(200, {"request_id": rid, "data": data})


class UploadRoute:
    """``POST /oss``: the OSS PostObject form, checked field by field."""

    def __init__(self, store: OssStore) -> None:
        self._store = store

    def __call__(self, request: RecordedRequest, fault: Fault) -> Reply:
        if fault.slow_upload:
            time.sleep(fault.slow_upload)
        if "authorization" in request.headers:
            return _oss_error(
                400,
                "InvalidArgument",
                "An Authorization header was sent with a form upload: the API key must "
                "never be sent to OSS (emulator check).",
            )
        ctype = request.headers.get("content-type", "")
        if not ctype.lower().startswith("multipart/form-data"):
            return _oss_error(400, "InvalidArgument", "The body must be multipart/form-data.")
        parts = _parse_form(ctype, request.body)
        names = [name for name, _, _ in parts]
        if names != list(FORM_FIELDS):
            return _oss_error(
                400,
                "InvalidArgument",
                f"Form fields {names} differ from the SDK's {list(FORM_FIELDS)} (emulator check).",
            )
        form = {name: value for name, value, _ in parts}
        issued = self._store.issued(form["Signature"].decode())
        if (
            issued is None
            or form["OSSAccessKeyId"].decode() != ACCESS_KEY_ID
            or form["policy"].decode() != issued.policy
        ):
            return _oss_error(
                403,
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you provided.",
            )
        if issued.expires <= self._store.clock():
            return _oss_error(403, "AccessDenied", "Invalid according to Policy: Policy expired.")
        key = form["key"].decode()
        if not key.startswith(issued.upload_dir + "/") or ".." in key:
            return _oss_error(
                403,
                "AccessDenied",
                f"Invalid according to Policy: Policy Condition failed: "
                f'["starts-with", "$key", "{issued.upload_dir}"]',
            )
        if form["success_action_status"] != b"200":
            return _oss_error(400, "InvalidArgument", "success_action_status must be 200.")
        data = form["file"]
        if len(data) > MAX_FILE_MB * 1024 * 1024:
            return _oss_error(
                400, "EntityTooLarge", "Your proposed upload exceeds the maximum allowed size."
            )
        if not self._store.put(key, data, issued.model, form["x-oss-content-type"].decode()):
            return _oss_error(409, "FileAlreadyExists", "The object you specified already exists.")
        return Reply(200, b"", headers={"Content-Type": "application/xml", "ETag": _etag(data)})


_BOUNDARY = re.compile(r'boundary="?([^";]+)"?')


def _parse_form(content_type: str, body: bytes) -> list[tuple[str, bytes, str | None]]:
    """(name, value, filename) of each multipart part, in order, bytes untouched."""
    match = _BOUNDARY.search(content_type)
    if not match:
        return []
    delimiter = b"\r\n--" + match.group(1).encode()
    parts = []
    for segment in (b"\r\n" + body).split(delimiter)[1:]:
        if segment.startswith(b"--"):
            break
        head, _, value = segment.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        disposition = next(
            (
                line.decode("latin-1")
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-disposition:")
            ),
            "",
        )
        name = re.search(r'\bname="([^"]*)"', disposition)
        filename = re.search(r'\bfilename="([^"]*)"', disposition)
        parts.append(
            (name.group(1) if name else "", value, filename.group(1) if filename else None)
        )
    return parts


def _host_of(request: RecordedRequest) -> str:
    return "http://" + request.headers.get("host", "127.0.0.1")


def _etag(data: bytes) -> str:
    return '"' + hashlib.md5(data, usedforsecurity=False).hexdigest().upper() + '"'


def _json_error(status: int, code: str, message: str, rid: str) -> Reply:
    return Reply(status, {"code": code, "message": message, "request_id": rid})


def _oss_error(status: int, code: str, message: str) -> Reply:
    rid = uuid.uuid4().hex[:24].upper()
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n<Error>\n'
        f"  <Code>{escape(code)}</Code>\n  <Message>{escape(message)}</Message>\n"
        f"  <RequestId>{rid}</RequestId>\n  <HostId>dashscope-file-emulator</HostId>\n</Error>\n"
    )
    return Reply(status, body, headers={"Content-Type": "application/xml", "x-oss-request-id": rid})
