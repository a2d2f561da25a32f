"""The real BigQuery emulator (bqemulator, in its own venv: ``make emulators``), started for
``tradeops demo --backend gcp`` and the tests.

STYLE.md 6: google-cloud-bigquery's real client talks to a real server speaking BigQuery's
REST API (datasets, tables, load jobs, streaming inserts, parameterised queries)::

    with BqEmulator() as server:
        client = server.client()  # a bigquery.Client bound to this server only

bqemulator pins duckdb 1.5.5 (ours is 2.x), so it runs from ``<venv>/opt/bqemulator``. At
start DuckDB loads its ``spatial`` extension (and tries ``avro``), which it would download:
instead the ``*.duckdb_extension`` files of the PyPI wheels installed there are installed
first into a DuckDB extension folder under a ``HOME`` the server owns (shared CLOUD.md), so
nothing is downloaded. Its uploads go to a ``TMPDIR`` there too. A server that cannot start
raises ``RuntimeError``; nothing is skipped.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from infra.emulators import answers, end, free_port

if TYPE_CHECKING:
    from google.cloud import bigquery

PROJECT = "tradeops-test"
START_TIMEOUT_S = 30.0  # about 3 s when all is well
REQUEST_TIMEOUT_S = 10.0  # each HTTP request of a test client
REPO_ROOT = Path(__file__).resolve().parents[2]

# Run with the emulator's python, HOME set: install the wheels' extension files into
# $HOME/.duckdb/extensions, where DuckDB's INSTALL at the server's start finds them.
_INSTALL_EXTENSIONS = """
import glob, sysconfig, duckdb
site = sysconfig.get_paths()["purelib"]
found = sorted(glob.glob(f"{site}/duckdb_extension_*/extensions/*/*.duckdb_extension"))
names = {f.rsplit("/", 1)[1].split(".")[0] for f in found}
if "spatial" not in names:
    raise SystemExit(f"no spatial extension in {site} (pip install duckdb-extension-spatial)")
con = duckdb.connect()
con.execute("SET autoinstall_known_extensions = false")
for path in found:
    con.execute("INSTALL '" + path.replace("'", "''") + "'")
"""


def emulator_venv() -> Path:
    """The bqemulator venv: ``<this venv>/opt/bqemulator`` (``make emulators``)."""
    for base in (Path(sys.prefix), REPO_ROOT / ".venv"):
        venv = base / "opt" / "bqemulator"
        if (venv / "bin" / "bqemulator").is_file():
            return venv
    raise RuntimeError(
        f"bqemulator is not installed under {Path(sys.prefix) / 'opt' / 'bqemulator'}: "
        "run `make emulators`"
    )


def new_dataset(prefix: str = "fmel") -> str:
    """A dataset name no test has used."""
    return f"{prefix}_{uuid.uuid4().hex[:16]}"


class BqEmulator:
    """One bqemulator process (ephemeral, in memory; REST and gRPC on 127.0.0.1)."""

    def __init__(self) -> None:
        self.rest_port = 0
        self.grpc_port = 0
        self.home: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.rest_port}"

    def start(self, attempts: int = 3) -> BqEmulator:
        """Start on free ports and wait until REST answers; ``RuntimeError`` if it cannot."""
        venv = emulator_venv()
        self.home = Path(tempfile.mkdtemp(prefix="bqemulator-"))
        (self.home / "tmp").mkdir()
        try:
            self._install_extensions(venv)
            for _ in range(attempts):  # another process may take a port between pick and bind
                self.rest_port, self.grpc_port = free_port(), free_port()
                with (self.home / "server.log").open("ab") as out:
                    self._proc = subprocess.Popen(
                        self._command(venv),
                        env=self._env(),
                        stdin=subprocess.DEVNULL,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                if self._wait_ready():
                    return self
                self._stop_process()
            raise RuntimeError(
                f"bqemulator did not start (tried {attempts} times); its log ends:\n{self._tail()}"
            )
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        self._stop_process()
        home, self.home = self.home, None
        if home is not None:
            shutil.rmtree(home, ignore_errors=True)

    def client(self, project: str = PROJECT) -> bigquery.Client:
        """A client bound to this server through ``client_options`` (nothing else in the
        process is redirected), anonymous, each request bounded by REQUEST_TIMEOUT_S. The
        emulator answers some bad requests with a 500 that the client's default retry repeats
        for 10 minutes: give calls a short ``retry`` (the store takes one)."""
        from google.api_core.client_options import ClientOptions
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import bigquery

        credentials = AnonymousCredentials()
        return bigquery.Client(
            project=project,
            credentials=credentials,
            client_options=ClientOptions(api_endpoint=self.url),
            _http=_session_with_timeout(credentials, REQUEST_TIMEOUT_S),
        )

    def __enter__(self) -> BqEmulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ------------------------------------------------------------------ helpers
    def _env(self) -> dict[str, str]:
        assert self.home is not None
        env = {k: v for k, v in os.environ.items() if not k.startswith(("BQEMU", "GOOGLE_"))}
        env.update(HOME=str(self.home), TMPDIR=str(self.home / "tmp"))
        env.pop("VIRTUAL_ENV", None)
        return env

    def _install_extensions(self, venv: Path) -> None:
        done = subprocess.run(
            [str(venv / "bin" / "python"), "-c", _INSTALL_EXTENSIONS],
            env=self._env(),
            capture_output=True,
            timeout=120,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(
                "could not install DuckDB's extensions for bqemulator: "
                + done.stderr.decode(errors="replace")[-2000:]
            )

    def _command(self, venv: Path) -> list[str]:
        return [
            str(venv / "bin" / "bqemulator"),
            "start",
            "--rest-port",
            str(self.rest_port),
            "--grpc-port",
            str(self.grpc_port),
            "--project",
            PROJECT,
            "--log-level",
            "warning",
        ]

    def _wait_ready(self) -> bool:
        """True once REST lists datasets; False if the process exited or timed out."""
        probe = f"{self.url}/bigquery/v2/projects/{PROJECT}/datasets"
        return answers(self._proc, probe, START_TIMEOUT_S, 0.05)

    def _stop_process(self) -> None:
        proc, self._proc = self._proc, None
        end(proc, 10)

    def _tail(self) -> str:
        if self.home is None:
            return ""
        try:
            return (self.home / "server.log").read_text(errors="replace")[-3000:]
        except OSError:
            return ""


def _session_with_timeout(credentials: Any, timeout_s: float) -> Any:
    """An authorized requests session whose requests without a timeout get ``timeout_s``
    (the BigQuery client sends most with none)."""
    from google.auth.transport.requests import AuthorizedSession

    return _DefaultTimeout(AuthorizedSession(credentials), timeout_s)


class _DefaultTimeout:
    """A session's stand-in that fills in the timeout of a request sent without one."""

    def __init__(self, session: Any, timeout_s: float) -> None:
        self._session = session
        self._timeout_s = timeout_s

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self._timeout_s
        return self._session.request(method, url, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)
