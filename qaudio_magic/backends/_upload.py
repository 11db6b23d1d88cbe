"""DashScope's temporary file upload, so local audio crosses the wire once per conversation.

The official SDK re-uploads a local file on every turn. Here each prepared clip is uploaded
once per (clip sha256, window, model) and its ``oss://`` URL is reused by later turns
while the file lives (48 h on the service; we stop trusting it an hour earlier). The wire
follows the SDK's captured requests exactly (``shared/protocol/captures/v202_02..04``):

1. ``GET {base}/uploads?action=getPolicy&model=<model>`` with the API key; the reply's
   ``data`` holds a signed OSS policy and ``upload_host``. One policy serves every upload
   until it expires (``expire_in_seconds``, about 300 s).
2. ``POST <upload_host>`` as ``multipart/form-data`` with the fields in the SDK's order
   (``OSSAccessKeyId, Signature, policy, key, x-oss-object-acl, x-oss-forbid-overwrite,
   success_action_status=200, x-oss-content-type, file``) and **no Authorization header**:
   the key never goes to OSS. Only to the host the policy names, over https unless the
   API base URL is itself a loopback emulator.
3. The model call carries ``oss://<key>`` and ``X-DashScope-OssResourceResolve: enable``.

Object keys are ``<upload_dir>/<sha256 of the bytes, 16 hex>-<name>``, so two clips that
share a basename never collide, and the service's ``x-oss-forbid-overwrite`` can only
ever meet the very same bytes (which is then treated as uploaded).

The temporary store exists only in the Beijing region; :func:`upload_available` says
whether a base URL has it. Both requests end by the question's deadline (``at``), however
slowly the replies come, and read at most a few KB of them.
"""

from __future__ import annotations

import email.utils
import functools
import hashlib
import json
import mimetypes
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit
from xml.etree import ElementTree

import httpx

from .._net import current_deadline, deadline, is_loopback
from .._prepare import PreparedAudio
from .._secret import Secret, scrub
from ..errors import APIError, ConfigError, TransportError
from ._body import MAX_ERROR_BODY, read_body, read_error_body
from ._http import (
    BearerAuth,
    clean_id,
    error_from_response,
    retry_after,
    too_late,
    transport_error,
)

__all__ = ["UPLOAD_MODES", "TemporaryUploads", "upload_available"]

UPLOAD_MODES = ("auto", "always", "never")
BEIJING_HOST = "dashscope.aliyuncs.com"
FILE_LIFETIME = 48 * 3600.0  # the service keeps temporary files 48 h
TRUST_FOR = FILE_LIFETIME - 3600.0  # reuse an oss:// URL for 47 h after its upload began
POLICY_MARGIN = 30.0  # fetch a new policy this long before the old one expires
_SALT = secrets.token_bytes(16)  # per process: cache keys never hold even a plain key hash


def _now() -> float:
    """Wall-clock seconds (a function so tests can move time forward)."""
    return time.time()


@functools.lru_cache(maxsize=32)  # asked on every question; parsing an IP costs ~15 µs
def upload_available(base_url: str) -> bool:
    """Whether ``base_url`` offers the temporary store: Beijing over https, or a loopback emulator."""
    parts = urlsplit(base_url)
    return (parts.scheme == "https" and parts.hostname == BEIJING_HOST) or is_loopback(base_url)


@dataclass(frozen=True)
class _Policy:
    data: dict[str, Any]
    expires: float


@dataclass(frozen=True)
class _Uploaded:
    url: str
    expires: float


class TemporaryUploads:
    """getPolicy + OSS form POST for one DashScope base URL, with the ``oss://`` URL cache."""

    def __init__(
        self,
        client: httpx.Client,
        base_url: str,
        *,
        headers: Callable[[], dict[str, str]] | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self._client = client
        self.base_url = base_url.rstrip("/")
        self._extra = headers or dict
        self._clock = clock
        self._policies: dict[tuple[str, str], _Policy] = {}
        self._uploaded: dict[tuple[object, ...], _Uploaded] = {}
        self._lock = threading.Lock()
        self._key_locks: dict[tuple[object, ...], threading.Lock] = {}
        self.uploads = 0  # OSS form POSTs made (for tests and benchmarks)

    def _time(self) -> float:
        return (self._clock or _now)()

    # ------------------------------------------------------------------ cache
    @staticmethod
    def _fingerprint(key: Secret | None) -> str:
        if key is None:
            return "-"
        return hashlib.blake2b(key.reveal().encode(), key=_SALT, digest_size=12).hexdigest()

    @staticmethod
    def cache_key(audio: PreparedAudio, model: str, key: Secret | None) -> tuple[object, ...]:
        """(account, model, clip sha256, window, format): one upload each."""
        clip = audio.clip
        return (
            TemporaryUploads._fingerprint(key),
            model,
            clip.sha256,
            round(audio.start, 3),
            None if audio.seconds is None else round(audio.seconds, 3),
            audio.format,
        )

    def planned(self, audio: PreparedAudio, model: str, key: Secret | None) -> tuple[str, str, int]:
        """What a dry run shows for ``audio`` sent by upload: the ``oss://`` URL (the cached
        one, or a placeholder of the real length), ``"uploaded"`` or ``"upload"``, and the
        bytes that would travel (the upload's form included)."""
        url = self.cached(audio, model, key)
        if url is not None:
            return url, "uploaded", len(url)
        return (
            "oss://dashscope-instant/" + "x" * 72 + "/" + audio.filename,
            "upload",
            audio.size + 1_000,
        )

    def cached(self, audio: PreparedAudio, model: str, key: Secret | None) -> str | None:
        """The ``oss://`` URL of an earlier upload of this audio, while it is still valid."""
        with self._lock:
            hit = self._uploaded.get(self.cache_key(audio, model, key))
        return hit.url if hit is not None and hit.expires > self._time() else None

    # ------------------------------------------------------------------ upload
    def url_for(
        self,
        audio: PreparedAudio,
        model: str,
        key: Secret,
        *,
        at: float | None = None,
        total: float | None = None,
    ) -> str:
        """The ``oss://`` URL for ``audio``: cached, or uploaded now (once, even across
        threads), by the deadline ``at`` (``time.monotonic()``) of a question that may
        take ``total`` seconds, when one is given."""
        ck = self.cache_key(audio, model, key)
        with self._lock:
            lock = self._key_locks.setdefault(ck, threading.Lock())
        wait = -1.0 if at is None else max(at - time.monotonic(), 0.0)
        if not lock.acquire(timeout=wait):  # another question is uploading the same clip
            host = urlsplit(self.base_url).netloc
            raise TransportError(f"{host}: the upload of {audio.filename} took too long")
        try:
            url = self.cached(audio, model, key)
            if url is not None:
                return url
            began = self._time()
            try:
                with deadline(at):
                    url = self._upload(audio, model, key)
            except TransportError:
                if at is not None and time.monotonic() >= at - 0.05:
                    raise too_late(urlsplit(self.base_url).netloc, total, None) from None
                raise
            with self._lock:
                self._uploaded[ck] = _Uploaded(url, began + TRUST_FOR)
            return url
        finally:
            lock.release()

    def _upload(self, audio: PreparedAudio, model: str, key: Secret) -> str:
        assert audio.data is not None
        for attempt in (1, 2):
            policy = self._policy(model, key, fresh=attempt == 2)
            try:
                return self._post(policy.data, audio)
            except APIError as exc:
                # A policy can expire between getPolicy and the POST: fetch one more, once.
                if attempt == 2 or exc.status != 403:
                    raise
        raise AssertionError("unreachable")

    def _policy(self, model: str, key: Secret, *, fresh: bool = False) -> _Policy:
        pk = (self._fingerprint(key), model)
        with self._lock:
            hit = self._policies.get(pk)
        if hit is not None and not fresh and hit.expires > self._time():
            return hit
        url = f"{self.base_url}/uploads"
        headers = {"Accept": "application/json; charset=utf-8", **self._extra()}
        host = urlsplit(self.base_url).netloc
        request = self._client.build_request(
            "GET", url, params={"action": "getPolicy", "model": model}, headers=headers
        )
        try:  # to the API host only; never to the upload host
            response = self._client.send(request, auth=BearerAuth(key), stream=True)
            try:
                if response.status_code != 200:
                    body = read_error_body(response, host)
                    raise error_from_response(
                        response.status_code, response.headers, body, service="DashScope"
                    )
                # protocol data, used as sent (never shown): not scrubbed
                text = read_body(response, host, MAX_ERROR_BODY).decode("utf-8", "replace")
            finally:
                response.close()
        except httpx.HTTPError as exc:
            raise transport_error(exc, host, deadline=current_deadline()) from None
        try:
            data = json.loads(text)["data"]
            for name in ("policy", "signature", "upload_dir", "upload_host", "oss_access_key_id"):
                if not isinstance(data[name], str) or not data[name]:
                    raise KeyError(name)
        except (ValueError, KeyError, TypeError) as exc:
            raise TransportError(f"{host} sent an unusable upload policy (missing {exc})") from None
        self._check_host(str(data["upload_host"]))
        lifetime = float(data.get("expire_in_seconds") or 300)
        policy = _Policy(data, self._time() + lifetime - POLICY_MARGIN)
        with self._lock:
            self._policies[pk] = policy
        return policy

    def _check_host(self, upload_host: str) -> None:
        """Uploads go to the policy's host over https; plain http only between loopback hosts."""
        parts = urlsplit(upload_host)
        if parts.scheme == "https" and parts.hostname:
            return
        if parts.scheme == "http" and is_loopback(self.base_url) and is_loopback(upload_host):
            return
        raise ConfigError(
            f"refusing to upload audio to {parts.scheme or '?'}://{parts.hostname or upload_host}: "
            "temporary uploads go over https only"
        )

    def _post(self, policy: dict[str, Any], audio: PreparedAudio) -> str:
        assert audio.data is not None
        name = audio.filename
        object_key = f"{policy['upload_dir']}/{hashlib.sha256(audio.data).hexdigest()[:16]}-{name}"
        fields = {  # the SDK's order, field for field
            "OSSAccessKeyId": policy["oss_access_key_id"],
            "Signature": policy["signature"],
            "policy": policy["policy"],
            "key": object_key,
            "x-oss-object-acl": policy.get("x_oss_object_acl") or "private",
            "x-oss-forbid-overwrite": policy.get("x_oss_forbid_overwrite") or "true",
            "success_action_status": "200",
            "x-oss-content-type": mimetypes.guess_type(name)[0] or "application/octet-stream",
        }
        headers = {  # deliberately no Authorization: OSS trusts the signed policy alone
            "Accept": "application/json",
            "Date": email.utils.formatdate(usegmt=True),
        }
        host = str(policy["upload_host"])
        try:  # the client's own timeouts: connect, write stalls, and the wait for OSS's reply
            request = self._client.build_request(
                "POST",
                host,
                data=fields,
                files={"file": (name, audio.data, None)},
                headers=headers,
            )
            # The form in one write: httpx streams each part and its headers as its own
            # write (~36 syscalls, each a chance for a batch's other threads to take the GIL)
            request.read()
            response = self._client.send(request, stream=True)
            try:
                body = read_error_body(response, urlsplit(host).netloc)
            finally:
                response.close()
        except httpx.HTTPError as exc:
            raise transport_error(exc, urlsplit(host).netloc, deadline=current_deadline()) from None
        self.uploads += 1
        if response.status_code == 200:
            return f"oss://{object_key}"
        code, message, request_id = _oss_error(response, scrub(body.decode("utf-8", "replace")))
        if response.status_code == 409 and code == "FileAlreadyExists":
            return f"oss://{object_key}"  # same key = same sha256: these bytes are there
        raise APIError(
            response.status_code,
            code,
            message,
            request_id,
            retry_after=retry_after(response.headers),
            service="OSS temporary upload",
        )


def _oss_error(response: httpx.Response, text: str) -> tuple[str | None, str, str | None]:
    """Code, message and request id from OSS's XML error body ``text`` (or JSON from a
    gateway), scrubbed and cut."""
    try:
        root = ElementTree.fromstring(text)
    except ElementTree.ParseError:
        try:
            payload = json.loads(text)
        except ValueError:
            payload = None
        if isinstance(payload, dict) and payload.get("code"):
            message = str(payload.get("message") or "")
            return str(payload["code"])[:80], message[:300], clean_id(payload.get("request_id"))
        return None, text.strip()[:200] or scrub(response.reason_phrase)[:80], None
    code = root.findtext("Code")
    return (
        code[:80] if code else None,
        (root.findtext("Message") or "")[:300],
        clean_id(root.findtext("RequestId")),
    )
