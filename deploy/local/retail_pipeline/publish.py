"""Publishes a workbook to Tableau Server or Tableau Cloud, overwriting the one of the same
name in the project:

    python -m retail_pipeline.publish dashboard/retail.twbx      # or deploy/tableau/retail.twb

From the environment: TABLEAU_SERVER (https://...), TABLEAU_SITE (the site's content URL; empty
for the default site), TABLEAU_PROJECT, TABLEAU_TOKEN_NAME and TABLEAU_TOKEN_SECRET (a
personal access token). For the live workbook, SYNAPSE_USER and SYNAPSE_PASSWORD (and
SYNAPSE_SERVER), when set, are embedded as its connection's credentials. No secret is printed or logged.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from .errors import PipelineError

REQUIRED = ("TABLEAU_SERVER", "TABLEAU_PROJECT", "TABLEAU_TOKEN_NAME", "TABLEAU_TOKEN_SECRET")
API_VERSION = "3.24"


def publish(workbook: Path, environment: dict[str, str], name: str | None = None) -> str:
    """Publishes `workbook`; returns the id the server gave it."""
    import tableauserverclient as TSC

    missing = [key for key in REQUIRED if not environment.get(key)]
    if missing:
        raise PipelineError(f"set {', '.join(missing)} to publish (see deploy/tableau/README.md)")
    if not workbook.is_file():
        raise PipelineError(f"{workbook}: no such workbook")
    server = TSC.Server(environment["TABLEAU_SERVER"], use_server_version=False)
    server.version = API_VERSION
    auth = TSC.PersonalAccessTokenAuth(environment["TABLEAU_TOKEN_NAME"], environment["TABLEAU_TOKEN_SECRET"],
                                       site_id=environment.get("TABLEAU_SITE", ""))
    try:
        with server.auth.sign_in(auth):
            wanted = environment["TABLEAU_PROJECT"]
            projects = [p for p in TSC.Pager(server.projects) if p.name == wanted]
            if not projects:
                raise PipelineError(f"TABLEAU_PROJECT: the site has no project named {wanted!r}")
            item = TSC.WorkbookItem(project_id=projects[0].id, name=name or workbook.stem, show_tabs=True)
            connections = None
            if environment.get("SYNAPSE_USER") and environment.get("SYNAPSE_PASSWORD"):
                connection = TSC.ConnectionItem()
                connection.server_address = environment.get("SYNAPSE_SERVER") or None
                connection.connection_credentials = TSC.ConnectionCredentials(
                    environment["SYNAPSE_USER"], environment["SYNAPSE_PASSWORD"], embed=True)
                connections = [connection]
            published = server.workbooks.publish(item, str(workbook), TSC.Server.PublishMode.Overwrite,
                                                 connections=connections)
            return published.id
    except TSC.ServerResponseError as error:
        # The server's own words (code, summary, detail); never the request, which holds the token.
        raise PipelineError(f"Tableau refused: {error.code} {error.summary}: {error.detail}") from None
    except OSError as error:
        raise PipelineError(f"TABLEAU_SERVER: cannot reach the server: {error.__class__.__name__}") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m retail_pipeline.publish", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("workbook", type=Path, help="retail.twbx (packaged) or retail.twb (live on Synapse)")
    parser.add_argument("--name", help="the workbook's name on the server (default: the file's name)")
    args = parser.parse_args(argv)
    # The client logs requests at debug level: keep it quiet whatever the root logger says.
    logging.getLogger("tableau").setLevel(logging.WARNING)
    try:
        workbook_id = publish(args.workbook, dict(os.environ), args.name)
    except PipelineError as error:
        print(f"publish: {error}", file=sys.stderr)
        return 2
    print(f"publish: {args.workbook.name} published (overwrite) as workbook {workbook_id}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
