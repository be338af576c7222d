"""A real local HTTP server speaking the part of Supabase Storage's API the edge uses, as
supabase-py's storage client calls it: `POST /storage/v1/object/sign/{bucket}/{path}` with
`{"expiresIn"}` and the service key (`apiKey` and `Authorization: Bearer`) answers
`{"signedURL": "/object/sign/{bucket}/{path}?token=…"}`; `GET` of that URL serves the object,
honouring `Range: bytes=N-` with 206; `GET /storage/v1/object/{bucket}/{path}` with the service
key (as the client's `download` sends it) serves the object; `POST
/storage/v1/object/{bucket}/{path}` with the multipart field `file` (as the client's `upload`
sends it) stores an object and answers
`{"Key": "{bucket}/{path}", "Id"}`; `DELETE /storage/v1/object/{bucket}` with
`{"prefixes": [path, …]}` (as the client's `remove` sends it) removes those objects and answers
the ones it removed (a path not there is left out, not an error). Errors are Storage's JSON
`{statusCode, error, message}`.
Tests put the objects (and, for the policies, write the storage.objects rows themselves)."""

import json
import secrets
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, unquote, urlsplit

from tests.fakes.http_server import serve

SERVICE_KEY = "sb_secret_test_0123456789abcdefghijklmnop"
SIGN = "/storage/v1/object/sign/"
OBJECT = "/storage/v1/object/"


@dataclass
class StorageServer:
    base_url: str = ""
    objects: dict[tuple[str, str], bytes] = field(default_factory=dict)
    tokens: dict[str, tuple[str, str]] = field(default_factory=dict)
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)
    fail_uploads: int | None = None  # answer uploads with this status (an outage)
    fail_removals: int | None = None  # answer removals with this status
    signed_for: list[int] = field(default_factory=list)  # each signing's expiresIn

    def put(self, bucket: str, path: str, data: bytes) -> None:
        self.objects[(bucket, path)] = data


def storage_handler(server: StorageServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_: object) -> None:
            pass

        def error(self, status: int, code: str, message: str) -> None:
            body = json.dumps({"statusCode": str(status), "error": code, "message": message})
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body.encode())

        def target(self) -> tuple[str, str] | None:
            path = urlsplit(self.path).path
            if not path.startswith(SIGN):
                return None
            bucket, _, name = path[len(SIGN) :].partition("/")
            return bucket, unquote(name)

        def upload(self, raw: bytes) -> None:
            path = urlsplit(self.path).path
            bucket, _, name = path[len(OBJECT) :].partition("/")
            if server.fail_uploads:
                self.error(server.fail_uploads, "InternalError", "Storage is unavailable")
                return
            parsed = BytesParser(policy=HTTP).parsebytes(
                f"Content-Type: {self.headers.get('Content-Type')}\r\n\r\n".encode() + raw
            )
            for part in parsed.iter_parts() if parsed.is_multipart() else []:
                if part.get_param("name", header="content-disposition") == "file":
                    payload = part.get_payload(decode=True)
                    server.put(
                        bucket, unquote(name), payload if isinstance(payload, bytes) else b""
                    )
                    body = json.dumps({"Key": f"{bucket}/{unquote(name)}", "Id": str(uuid.uuid4())})
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body.encode())
                    return
            self.error(400, "InvalidRequest", "No file in the upload")

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            path = urlsplit(self.path).path
            if path.startswith(OBJECT) and not path.startswith(SIGN):
                server.requests.append(("POST", self.path, None))
                if not (
                    self.headers.get("apiKey") == SERVICE_KEY
                    and self.headers.get("Authorization") == f"Bearer {SERVICE_KEY}"
                ):
                    self.error(403, "Unauthorized", "Invalid key")
                    return
                self.upload(raw)
                return
            sent = json.loads(raw or b"{}")
            server.requests.append(("POST", self.path, self.headers.get("Range")))
            target = self.target()
            authorized = (
                self.headers.get("apiKey") == SERVICE_KEY
                and self.headers.get("Authorization") == f"Bearer {SERVICE_KEY}"
            )
            if not authorized:
                self.error(403, "Unauthorized", "Invalid key")
                return
            if target is None or "expiresIn" not in sent:
                self.error(400, "InvalidRequest", "Unknown route")
                return
            if target not in server.objects:
                self.error(404, "not_found", "Object not found")
                return
            token = secrets.token_urlsafe(16)
            server.tokens[token] = target
            server.signed_for.append(int(sent["expiresIn"]))
            body = json.dumps({"signedURL": f"/object/sign/{target[0]}/{target[1]}?token={token}"})
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body.encode())

        def do_DELETE(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            sent = json.loads(self.rfile.read(length) or b"{}")
            server.requests.append(("DELETE", self.path, None))
            path = urlsplit(self.path).path
            if not (
                self.headers.get("apiKey") == SERVICE_KEY
                and self.headers.get("Authorization") == f"Bearer {SERVICE_KEY}"
            ):
                self.error(403, "Unauthorized", "Invalid key")
                return
            if server.fail_removals:
                self.error(server.fail_removals, "InternalError", "Storage is unavailable")
                return
            bucket = path[len(OBJECT) :].strip("/")
            prefixes = sent.get("prefixes")
            if not path.startswith(OBJECT) or "/" in bucket or not isinstance(prefixes, list):
                self.error(400, "InvalidRequest", "Unknown route")
                return
            removed = []
            for name in prefixes:
                if server.objects.pop((bucket, unquote(str(name))), None) is not None:
                    removed.append(
                        {"name": unquote(str(name)), "bucket_id": bucket, "id": str(uuid.uuid4())}
                    )
            body = json.dumps(removed)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body.encode())

        def download(self) -> None:
            if not (
                self.headers.get("apiKey") == SERVICE_KEY
                and self.headers.get("Authorization") == f"Bearer {SERVICE_KEY}"
            ):
                self.error(403, "Unauthorized", "Invalid key")
                return
            bucket, _, name = urlsplit(self.path).path[len(OBJECT) :].partition("/")
            data = server.objects.get((bucket, unquote(name)))
            if data is None:
                self.error(404, "not_found", "Object not found")
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            server.requests.append(("GET", self.path, self.headers.get("Range")))
            path = urlsplit(self.path).path
            if path.startswith(OBJECT) and not path.startswith(SIGN):
                self.download()
                return
            token = parse_qs(urlsplit(self.path).query).get("token", [""])[0]
            target = self.target()
            if target is None or server.tokens.get(token) != target:
                self.error(400, "InvalidSignature", "Invalid signature")
                return
            data = server.objects.get(target)
            if data is None:
                self.error(404, "not_found", "Object not found")
                return
            status, start = 200, 0
            wanted = self.headers.get("Range", "")
            if wanted.startswith("bytes=") and wanted.endswith("-"):
                status, start = 206, int(wanted[6:-1])
            self.send_response(status)
            self.send_header("Content-Type", "text/csv")
            self.send_header("Content-Length", str(len(data) - start))
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.end_headers()
            self.wfile.write(data[start:])

    return Handler


@contextmanager
def serve_storage() -> Iterator[StorageServer]:
    server = StorageServer()
    with serve(storage_handler(server)) as url:
        server.base_url = url
        yield server
