"""A loopback stand-in for the Tableau Server REST API: the four calls the publish command
makes (sign in, list projects, publish a workbook, sign out), answered as the API documents
them, and every request recorded for the test to check. Tableau Server itself cannot run
here."""

from __future__ import annotations

import email.parser
import email.policy
import http.server
import threading
import xml.etree.ElementTree as ET
from urllib.parse import parse_qs, urlparse

NS = "http://tableau.com/api"


def _response(body: str) -> bytes:
    return f'<?xml version="1.0" encoding="UTF-8"?><tsResponse xmlns="{NS}">{body}</tsResponse>'.encode()


def _plain(element: ET.Element) -> dict:
    """An XML element as a dict of its attributes and children (namespaces dropped)."""
    value: dict = dict(element.attrib)
    for child in element:
        value[child.tag.split("}")[-1]] = _plain(child)
    return value


class TableauStandIn:
    token = "standin-session-token"
    site_id = "9a8b7c6d-0000-4000-8000-000000000001"
    user_id = "9a8b7c6d-0000-4000-8000-000000000002"
    project_id = "9a8b7c6d-0000-4000-8000-000000000003"
    workbook_id = "9a8b7c6d-0000-4000-8000-000000000004"

    def __init__(self):
        self.requests: list[dict] = []
        stand_in = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _reply(self, status: int, body: bytes = b"") -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _record(self) -> dict:
                url = urlparse(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                record = {"method": self.command, "path": url.path, "query": parse_qs(url.query),
                          "headers": {k.lower(): v for k, v in self.headers.items()}, "body": body}
                stand_in.requests.append(record)
                return record

            def do_GET(self):
                record = self._record()
                if record["path"].endswith(f"/sites/{stand_in.site_id}/projects"):
                    if self.headers.get("X-Tableau-Auth") != stand_in.token:
                        return self._reply(401, _response('<error code="401002"><summary>Unauthorized</summary>'
                                                          '<detail>bad token</detail></error>'))
                    return self._reply(200, _response(
                        '<pagination pageNumber="1" pageSize="100" totalAvailable="1"/><projects>'
                        f'<project id="{stand_in.project_id}" name="Sales" description="" '
                        'contentPermissions="ManagedByOwner"/></projects>'))
                self._reply(404, _response('<error code="404000"><summary>Not found</summary><detail/></error>'))

            def do_POST(self):
                record = self._record()
                path = record["path"]
                if path.endswith("/auth/signin"):
                    record["credentials"] = _plain(ET.fromstring(record["body"]).find("credentials"))
                    return self._reply(200, _response(
                        f'<credentials token="{stand_in.token}"><site id="{stand_in.site_id}" '
                        f'contentUrl="{record["credentials"]["site"]["contentUrl"]}"/>'
                        f'<user id="{stand_in.user_id}"/></credentials>'))
                if path.endswith("/auth/signout"):
                    return self._reply(204)
                if path.endswith(f"/sites/{stand_in.site_id}/workbooks"):
                    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
                        f"Content-Type: {self.headers['Content-Type']}\r\n\r\n".encode() + record["body"])
                    for part in message.iter_parts():
                        name = part.get_param("name", header="content-disposition")
                        if name == "request_payload":
                            record["payload"] = _plain(ET.fromstring(part.get_payload(decode=True)))
                        elif name == "tableau_workbook":
                            record["workbook"] = part.get_payload(decode=True)
                            record["filename"] = part.get_filename()
                    name = record["payload"]["workbook"]["name"]
                    return self._reply(201, _response(
                        f'<workbook id="{stand_in.workbook_id}" name="{name}" contentUrl="{name}" showTabs="true">'
                        f'<project id="{stand_in.project_id}" name="Sales"/><owner id="{stand_in.user_id}"/>'
                        '</workbook>'))
                self._reply(404, _response('<error code="404000"><summary>Not found</summary><detail/></error>'))

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "TableauStandIn":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
