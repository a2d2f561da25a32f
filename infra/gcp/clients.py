"""The Google clients the adapters use, made the Google way.

Credentials are application default credentials (``gcloud auth application-default login``
on a laptop, ``GOOGLE_APPLICATION_CREDENTIALS``, or the service account of the VM, pod or
Cloud Run service), checked once at start so a missing one is one line, not a stack trace
at the first upload. The emulator variables are honoured:

- ``STORAGE_EMULATOR_HOST`` (``http://host:port``): google-cloud-storage's own;
- ``FIREBASE_DATABASE_EMULATOR_HOST`` (``host:port``): firebase-admin's own;
- ``BIGQUERY_EMULATOR_HOST`` (``http://host:port``): ours (the BigQuery client has none),
  the REST endpoint of an emulator such as bqemulator;
- ``CLOUDBUILD_EMULATOR_HOST`` (``http://host:port``): ours too, the REST endpoint of a
  Cloud Build stand-in (``infra.emulators.cloudbuild``).

With an emulator variable set, no credentials are needed for that service.
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING, Any

from infra.settings import SettingsError

if TYPE_CHECKING:
    from firebase_admin import db
    from google.cloud import bigquery
    from google.cloud.storage import Client as StorageClient

TIMEOUT_S = 60.0
CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"
# what firebase-admin asks for, and the database's REST API (rules included) takes
FIREBASE_SCOPES = (
    "https://www.googleapis.com/auth/firebase.database",
    "https://www.googleapis.com/auth/userinfo.email",
)
_lock = threading.Lock()


def _emulated(var: str) -> str | None:
    return os.environ.get(var, "").strip() or None


def credentials(scopes: tuple[str, ...] = (CLOUD_PLATFORM,)) -> Any:
    """Application default credentials, or ``SettingsError`` in one line."""
    import google.auth
    from google.auth.exceptions import DefaultCredentialsError

    try:
        found, _project = google.auth.default(scopes=list(scopes))
    except DefaultCredentialsError:
        raise SettingsError(
            "GOOGLE_APPLICATION_CREDENTIALS: no Google credentials found (run `gcloud auth "
            "application-default login`, or run on a service account)"
        ) from None
    return found


def storage_client(project: str | None) -> StorageClient:
    from google.cloud.storage import Client

    if _emulated("STORAGE_EMULATOR_HOST"):  # the client goes anonymous by itself
        return Client(project=project or "local")
    return Client(project=project, credentials=credentials())


def bigquery_client(project: str) -> bigquery.Client:
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import bigquery

    endpoint = _emulated("BIGQUERY_EMULATOR_HOST")
    if endpoint:
        if "://" not in endpoint:
            endpoint = f"http://{endpoint}"
        return bigquery.Client(
            project=project,
            credentials=AnonymousCredentials(),
            client_options=ClientOptions(api_endpoint=endpoint),
        )
    return bigquery.Client(project=project, credentials=credentials())


def firebase_root(url: str, project: str | None) -> db.Reference:
    """The root of the Realtime Database at ``url`` (one firebase-admin app per URL)."""
    import firebase_admin
    from firebase_admin import credentials as fb_credentials
    from firebase_admin import db

    name = f"tradeops:{url}"
    with _lock:
        try:
            app = firebase_admin.get_app(name)
        except ValueError:
            options: dict[str, Any] = {"databaseURL": url}
            if project:
                options["projectId"] = project
            cred = None
            if not _emulated("FIREBASE_DATABASE_EMULATOR_HOST"):
                credentials()  # one line now if there are none
                cred = fb_credentials.ApplicationDefault()
            app = firebase_admin.initialize_app(cred, options=options, name=name)
    return db.reference("/", app=app)


def firebase_rules_endpoint(url: str) -> tuple[Any, str]:
    """A requests session that may read and write the rules of the Realtime Database at
    ``url`` (its owner's credentials, or the emulator's ``owner``) and the rules' address."""
    import urllib.parse

    import requests

    host = urllib.parse.urlsplit(url).hostname or ""
    namespace = host.split(".")[0]
    emulator = _emulated("FIREBASE_DATABASE_EMULATOR_HOST")
    if emulator:
        session = requests.Session()
        session.headers["Authorization"] = "Bearer owner"  # what firebase-admin sends it
        return session, f"http://{emulator}/.settings/rules.json?ns={namespace}"
    from google.auth.transport.requests import AuthorizedSession

    return AuthorizedSession(
        credentials(FIREBASE_SCOPES)
    ), f"{url.rstrip('/')}/.settings/rules.json"


def cloudbuild_client() -> Any:
    """The Cloud Build client (REST transport), or one for ``CLOUDBUILD_EMULATOR_HOST``."""
    from google.api_core.client_options import ClientOptions
    from google.cloud.devtools import cloudbuild_v1

    endpoint = _emulated("CLOUDBUILD_EMULATOR_HOST")
    if endpoint:
        from google.auth.credentials import AnonymousCredentials

        if "://" not in endpoint:
            endpoint = f"http://{endpoint}"
        return cloudbuild_v1.CloudBuildClient(
            transport="rest",
            credentials=AnonymousCredentials(),
            client_options=ClientOptions(api_endpoint=endpoint),
        )
    return cloudbuild_v1.CloudBuildClient(transport="rest", credentials=credentials())
