"""A real single-node Apache Kafka broker (KRaft mode, no ZooKeeper, no Docker) on this machine.

The jars come from Maven Central through `deploy/local/pom.xml` (see `ensure_jars`). The
config comes from `deploy/local/server.properties.template` and `deploy/local/log4j.properties`.
The broker runs as a detached JVM, and all of its state lives in one home folder:

    <home>/server.properties   rendered from the template on every start
    <home>/cluster.id          the KRaft cluster id the storage was formatted with
    <home>/data/               log.dirs; data/meta.properties means "storage is formatted"
    <home>/logs/broker.log     the JVM's stdout and stderr, appended across runs
    <home>/broker.pid          pid of the running broker (absent when stopped)

`LocalBroker(home).start()`, `.stop()` and `.status()` manage the broker.
`broker_answers` (pipeline.kafka.probe) tells whether the broker answers.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import filecmp
import hashlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from string import Template

from pipeline import resources
from pipeline.kafka.probe import broker_answers, port_open

KAFKA_VERSION = "3.9.1"

DEPLOY_DIR = resources.folder("broker")
POM_FILE = DEPLOY_DIR / "pom.xml"
SERVER_TEMPLATE = DEPLOY_DIR / "server.properties.template"
LOG4J_CONFIG = DEPLOY_DIR / "log4j.properties"


def _default_cache_dir() -> Path:
    """deploy/local/.cache in a checkout; the user's cache folder for an installed Uptake."""
    root = resources.checkout()
    if root is not None:
        return root / "deploy" / "local" / ".cache"
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "uptake" / f"kafka-{KAFKA_VERSION}"


DEFAULT_CACHE_DIR = _default_cache_dir()

LOG_TAIL_LINES = 20
MAVEN_TIMEOUT_S = 900.0
FORMAT_TIMEOUT_S = 120.0

# Debian/Ubuntu package that provides each external tool.
_DEBIAN_PACKAGES = {"java": "openjdk-17-jre-headless", "mvn": "maven"}

# Brokers this Python process spawned, by pid: polling the Popen reaps them when they exit,
# so that a dead broker is never mistaken for a live zombie.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}

Progress = Callable[[str], None]


class BrokerError(Exception):
    """The local broker could not be set up, started or stopped.

    The message is meant for a human. It says what failed, where the log is (if there is one)
    and what to do next.
    """


@dataclass(frozen=True)
class BrokerStatus:
    """A snapshot of a local broker.

    `running` means the pid in the pid file is a live Kafka JVM of this home. `answering`
    means something at `bootstrap` answered a Kafka metadata request. That something may be a
    foreign broker when `running` is False.
    """

    running: bool
    pid: int | None
    bootstrap: str
    home: Path
    log_file: Path
    answering: bool


# --------------------------------------------------------------------------------------------
# jars


def ensure_jars(cache_dir: Path | None = None, *, progress: Progress = print) -> Path:
    """Make sure the broker's runtime jars are in `<cache_dir>/lib`, and return that folder.

    Maven runs only when `lib/` is missing or holds no jar, or when the sha256 of
    `deploy/local/pom.xml` differs from the one in `<cache_dir>/pom.sha256`. That marker is
    written only after a successful copy. Maven copies into a temporary folder first. Then
    changed jars replace their old versions one at a time, and jars the pom no longer needs
    are removed. A JVM that already runs from `lib/` keeps working.
    `cache_dir` defaults to `deploy/local/.cache`. Concurrent callers are serialised by a
    lock file in `cache_dir`.

    Raises BrokerError when `mvn` or `java` is missing (naming the package to install), or
    when Maven fails (with the tail of its output).
    """
    cache = (cache_dir if cache_dir is not None else DEFAULT_CACHE_DIR).expanduser().resolve()
    lib = cache / "lib"
    marker = cache / "pom.sha256"
    try:
        want = hashlib.sha256(POM_FILE.read_bytes()).hexdigest()
    except OSError as exc:
        raise BrokerError(
            f"Cannot read {POM_FILE} ({exc.strerror or exc}). It lists the Kafka jars to fetch. "
            "Restore it from git."
        ) from exc
    if _jars_current(lib, marker, want):
        return lib

    cache.mkdir(parents=True, exist_ok=True)
    with _file_lock(cache / ".lock"):
        if _jars_current(lib, marker, want):  # another process fetched them meanwhile
            return lib
        mvn = _require_tool("mvn")
        _require_tool("java")
        progress(
            f"Fetching the Kafka {KAFKA_VERSION} jars from Maven Central into {lib} "
            "(about 46 MB on the first run) ..."
        )
        with tempfile.TemporaryDirectory(dir=cache, prefix="lib-") as tmp:
            cmd = [
                mvn,
                "-q",
                "-B",
                "-f",
                str(POM_FILE),
                "dependency:copy-dependencies",
                f"-DoutputDirectory={tmp}",
                "-DincludeScope=runtime",
            ]
            try:
                result = subprocess.run(
                    cmd, capture_output=True, text=True, timeout=MAVEN_TIMEOUT_S, check=False
                )
            except subprocess.TimeoutExpired as exc:
                raise BrokerError(
                    f"Maven did not finish fetching the Kafka jars within {MAVEN_TIMEOUT_S:g} s. "
                    "Check network access to Maven Central (repo.maven.apache.org) or the "
                    "proxy in ~/.m2/settings.xml, then try again."
                ) from exc
            except OSError as exc:
                raise BrokerError(f"Could not run Maven ({mvn}): {exc}") from exc
            if result.returncode != 0:
                output = _tail_text((result.stdout or "") + (result.stderr or ""))
                raise BrokerError(
                    f"Maven failed (exit {result.returncode}) while fetching the Kafka jars.\n"
                    f"Command: {' '.join(cmd)}\n"
                    f"Last lines of its output:\n{output}\n"
                    "Check network access to Maven Central (repo.maven.apache.org) or the "
                    "proxy in ~/.m2/settings.xml, then try again."
                )
            fetched = sorted(p for p in Path(tmp).iterdir() if p.name.endswith(".jar"))
            if not fetched:
                raise BrokerError(
                    f"Maven succeeded but copied no jar. Is {POM_FILE} intact? "
                    "Restore it from git and try again."
                )
            _sync_jars(fetched, lib)
        marker.write_text(want + "\n", encoding="utf-8")
        progress(f"Kafka jars ready: {len(fetched)} jars in {lib}.")
    return lib


def _jars_current(lib: Path, marker: Path, want: str) -> bool:
    try:
        return (
            lib.is_dir()
            and any(lib.glob("*.jar"))
            and marker.read_text(encoding="utf-8").strip() == want
        )
    except OSError:
        return False


def _sync_jars(fetched: list[Path], lib: Path) -> None:
    """Make `lib` hold exactly `fetched` (same folder's filesystem), touching only changes."""
    lib.mkdir(parents=True, exist_ok=True)
    names = {p.name for p in fetched}
    for src in fetched:
        dst = lib / src.name
        if dst.is_file() and filecmp.cmp(src, dst, shallow=False):
            continue
        os.replace(src, dst)
    for old in lib.iterdir():
        if old.name not in names and old.is_file():
            old.unlink()


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock on `path` (created if needed), held for the `with` block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _require_tool(name: str) -> str:
    """The absolute path of `name` on PATH, or a BrokerError saying which package to install."""
    found = shutil.which(name)
    if found is None:
        package = _DEBIAN_PACKAGES.get(name, name)
        raise BrokerError(
            f"`{name}` is not on PATH, and the local Kafka broker needs it. Install it "
            f"(Debian/Ubuntu: `sudo apt-get install {package}`) and try again."
        )
    return found


# --------------------------------------------------------------------------------------------
# processes


def _pid_alive(pid: int) -> bool:
    """True if `pid` is a live (not zombie) process. Reaps it if it is our exited child."""
    child = _CHILDREN.get(pid)
    if child is not None:
        return child.poll() is None
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)
        if waited == pid:  # our child (spawned by another LocalBroker object), now reaped
            return False
    except ChildProcessError:
        pass  # not our child: the normal case
    except OSError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, but belongs to another user
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8", errors="replace")
        return stat.rpartition(")")[2].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _cmdline(pid: int) -> list[str] | None:
    """The argv of `pid` from /proc, or None where that cannot be read."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


def _wait_for_exit(pid: int, timeout: float) -> bool:
    """Wait up to `timeout` seconds for `pid` to end; True if it did."""
    deadline = time.monotonic() + timeout
    while _pid_alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
    return True


def _tail_text(text: str, lines: int = LOG_TAIL_LINES) -> str:
    kept = text.rstrip("\n").splitlines()[-lines:]
    return "\n".join("    " + line for line in kept) if kept else "    (no output)"


def _new_cluster_id() -> str:
    """A random KRaft cluster id: a UUID in unpadded base64url, as `kafka-storage random-uuid`
    prints it. Kafka rerolls ids that start with "-", which CLI parsers take for an option."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode("ascii").rstrip("=")
        if not cid.startswith("-"):
            return cid


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


# --------------------------------------------------------------------------------------------
# the broker

_HEAP_RE = re.compile(r"^[1-9][0-9]*[kKmMgG]?$")


class LocalBroker:
    """One single-node Kafka broker+controller (KRaft) whose state lives in `home`.

    It listens on 127.0.0.1 only: `port` for clients (PLAINTEXT) and `controller_port`
    (default `port + 1`) for the KRaft controller. `heap` is the JVM's -Xmx ("512m", "1g").
    With `sasl_port`, it also listens there with SASL_PLAINTEXT (mechanism PLAIN) for the
    `sasl_users` (user -> password), to test Uptake's Kafka security settings.
    Calls from several processes on the same home are serialised by `<home>/.lock`.
    """

    def __init__(
        self,
        home: Path,
        port: int = 9092,
        controller_port: int | None = None,
        heap: str = "512m",
        sasl_port: int | None = None,
        sasl_users: Mapping[str, str] | None = None,
    ) -> None:
        if controller_port is None:
            controller_port = port + 1
        for name, value in (("port", port), ("controller_port", controller_port)):
            if not 1 <= value <= 65535:
                raise ValueError(f"{name} must be between 1 and 65535, not {value}")
        if controller_port == port:
            raise ValueError(f"port and controller_port must differ (both are {port})")
        if not _HEAP_RE.match(heap):
            raise ValueError(f"heap must look like 512m or 1g, not {heap!r}")
        self.home = Path(home).expanduser().resolve()
        self.port = port
        self.controller_port = controller_port
        self.heap = heap
        if sasl_port is not None and sasl_port in (port, controller_port):
            raise ValueError(f"sasl_port must differ from the other ports, not {sasl_port}")
        users = dict(sasl_users or {})
        if sasl_port is not None and not users:
            raise ValueError("sasl_port needs sasl_users (user -> password)")
        for user, password in users.items():
            if not re.fullmatch(r"[A-Za-z0-9_.-]+", user) or re.search(r'["\\;\s]', password):
                raise ValueError(f"unusable SASL user or password for {user!r}")
        self.sasl_port = sasl_port
        self.sasl_users = users

    def __repr__(self) -> str:
        return f"LocalBroker(home={str(self.home)!r}, port={self.port})"

    # -- paths -----------------------------------------------------------------------------

    @property
    def bootstrap(self) -> str:
        """The clients' bootstrap address, "127.0.0.1:<port>"."""
        return f"127.0.0.1:{self.port}"

    @property
    def properties_file(self) -> Path:
        return self.home / "server.properties"

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def log_file(self) -> Path:
        return self.home / "logs" / "broker.log"

    @property
    def pid_file(self) -> Path:
        return self.home / "broker.pid"

    @property
    def cluster_id_file(self) -> Path:
        return self.home / "cluster.id"

    # -- public API ------------------------------------------------------------------------

    def start(self, timeout: float = 60.0, progress: Progress = print) -> BrokerStatus:
        """Start the broker unless it already runs. Return once it answers a metadata request.

        - If this home's broker already runs, say so through `progress` and return its status
          (after waiting up to `timeout` for it to answer, if it is still coming up).
        - If a foreign process holds `port` or `controller_port`, raise BrokerError naming the
          port.
        - Otherwise fetch the jars if needed (`ensure_jars`), render `server.properties`,
          format the storage if `data/meta.properties` is missing (first start only), spawn
          the JVM detached from this process (its own session, output appended to
          `logs/broker.log`), write `broker.pid` and wait until it answers.

        If the JVM exits before it answers, BrokerError carries the last log lines. If it does
        not answer within `timeout` seconds, it is stopped and BrokerError carries the last
        log lines.
        """
        self.home.mkdir(parents=True, exist_ok=True)
        with _file_lock(self.home / ".lock"):
            pid = self._live_pid()
            if pid is not None:
                if broker_answers(self.bootstrap):
                    progress(f"Kafka broker already running (pid {pid}) at {self.bootstrap}.")
                    return self._status_of(pid, answering=True)
                progress(
                    f"Kafka broker (pid {pid}) is running but does not answer yet; "
                    f"waiting up to {timeout:g} s ..."
                )
                return self._wait_until_answering(pid, timeout, spawned_now=False)

            self._check_port_free(self.port, "client port")
            self._check_port_free(self.controller_port, "controller port")
            if self.sasl_port is not None:
                self._check_port_free(self.sasl_port, "SASL port")
            java = _require_tool("java")
            lib = ensure_jars(progress=progress)
            self._render_config()
            self._format_storage(java, lib, progress)
            pid = self._spawn(java, lib)
            progress(
                f"Started Kafka {KAFKA_VERSION} (pid {pid}); waiting for it to answer at "
                f"{self.bootstrap} ..."
            )
            return self._wait_until_answering(pid, timeout, spawned_now=True)

    def stop(self, timeout: float = 30.0) -> bool:
        """Stop this home's broker: SIGTERM, wait up to `timeout` s, then SIGKILL.

        Returns True if a broker was running and is now stopped, or False if none was
        running. A stale pid file (dead pid, or a pid reused by an unrelated process) is
        removed and gives False. Raises BrokerError if the process survives SIGKILL.
        """
        self.home.mkdir(parents=True, exist_ok=True)
        with _file_lock(self.home / ".lock"):
            return self._stop_unlocked(timeout)

    def status(self, timeout: float = 3.0) -> BrokerStatus:
        """The broker's current status. Stale pid files are removed on the way.

        `timeout` bounds each step of the metadata probe (see `broker_answers`).
        """
        pid = self._live_pid()
        return self._status_of(pid, answering=broker_answers(self.bootstrap, timeout))

    # -- internals -------------------------------------------------------------------------

    def _status_of(self, pid: int | None, *, answering: bool) -> BrokerStatus:
        return BrokerStatus(
            running=pid is not None,
            pid=pid,
            bootstrap=self.bootstrap,
            home=self.home,
            log_file=self.log_file,
            answering=answering,
        )

    def _read_pid(self) -> int | None:
        try:
            text = self.pid_file.read_text(encoding="utf-8").strip()
        except OSError:
            return None
        return int(text) if text.isdigit() and int(text) > 0 else None

    def _is_ours(self, pid: int) -> bool:
        """True if `pid` is alive and is the Kafka JVM of this home (not a reused pid)."""
        if not _pid_alive(pid):
            return False
        args = _cmdline(pid)
        if args is None:  # no /proc: trust the pid file
            return True
        return "kafka.Kafka" in args and str(self.properties_file) in args

    def _live_pid(self) -> int | None:
        """The pid of this home's running broker, or None. Removes a stale pid file."""
        pid = self._read_pid()
        if pid is not None and self._is_ours(pid):
            return pid
        if self.pid_file.exists():
            with contextlib.suppress(OSError):
                self.pid_file.unlink()
        return None

    def _check_port_free(self, port: int, what: str) -> None:
        if not port_open("127.0.0.1", port):
            return
        flag = "--port or UPTAKE_BROKER_PORT" if port == self.port else "--controller-port"
        kind = (
            "another Kafka broker"
            if broker_answers(f"127.0.0.1:{port}", timeout=2.0)
            else "another process"
        )
        raise BrokerError(
            f"The {what} {port} on 127.0.0.1 is already in use by {kind}, not by the broker "
            f"of {self.home}. Stop that process (`ss -ltnp 'sport = :{port}'` shows which one) "
            f"or choose another {what} ({flag})."
        )

    def _render_config(self) -> None:
        try:
            template = Template(SERVER_TEMPLATE.read_text(encoding="utf-8"))
        except OSError as exc:
            raise BrokerError(
                f"Cannot read the broker config template {SERVER_TEMPLATE} "
                f"({exc.strerror or exc}). Restore it from git."
            ) from exc
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        # Backslashes are escapes in .properties files.
        log_dirs = str(self.data_dir).replace("\\", "\\\\")
        try:
            text = template.substitute(
                port=self.port, controller_port=self.controller_port, log_dirs=log_dirs
            )
        except (KeyError, ValueError) as exc:
            raise BrokerError(
                f"The broker config template {SERVER_TEMPLATE} has an unknown or malformed "
                f"placeholder ({exc}). Only port, controller_port and log_dirs exist; write a "
                "literal dollar sign as $$."
            ) from exc
        _write_atomic(self.properties_file, text + self._sasl_properties())

    def _sasl_properties(self) -> str:
        """Lines appended after the template (later keys win in .properties): a
        SASL_PLAINTEXT listener with PLAIN for `sasl_users`; "" without `sasl_port`."""
        if self.sasl_port is None:
            return ""
        users = " ".join(f'user_{u}="{p}"' for u, p in self.sasl_users.items())
        return (
            "\n############################# SASL listener (LocalBroker sasl_port) #####\n"
            f"listeners=PLAINTEXT://127.0.0.1:{self.port},"
            f"SASL_PLAINTEXT://127.0.0.1:{self.sasl_port},"
            f"CONTROLLER://127.0.0.1:{self.controller_port}\n"
            f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.port},"
            f"SASL_PLAINTEXT://127.0.0.1:{self.sasl_port}\n"
            "listener.security.protocol.map="
            "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT\n"
            "sasl.enabled.mechanisms=PLAIN\n"
            "listener.name.sasl_plaintext.sasl.enabled.mechanisms=PLAIN\n"
            "listener.name.sasl_plaintext.plain.sasl.jaas.config="
            f"org.apache.kafka.common.security.plain.PlainLoginModule required {users};\n"
        )

    def _cluster_id(self) -> str:
        try:
            cid = self.cluster_id_file.read_text(encoding="utf-8").strip()
        except OSError:
            cid = ""
        if not cid:
            cid = _new_cluster_id()
            _write_atomic(self.cluster_id_file, cid + "\n")
        return cid

    def _java_base(self, java: str, lib: Path, heap: str) -> list[str]:
        return [
            java,
            f"-Xmx{heap}",
            "-Djava.awt.headless=true",
            f"-Dlog4j.configuration={LOG4J_CONFIG.as_uri()}",
            f"-Dkafka.logs.dir={self.log_file.parent}",
            "-cp",
            f"{lib}{os.sep}*",
        ]

    def _append_log(self, text: str) -> None:
        with open(self.log_file, "a", encoding="utf-8", errors="replace") as log:
            log.write(text if text.endswith("\n") else text + "\n")

    def _format_storage(self, java: str, lib: Path, progress: Progress) -> None:
        """Run `kafka-storage format` once; data/meta.properties existing means formatted."""
        meta = self.data_dir / "meta.properties"
        if meta.is_file():
            return
        cid = self._cluster_id()
        progress(f"Formatting KRaft storage in {self.data_dir} (cluster id {cid}) ...")
        cmd = [
            *self._java_base(java, lib, "256m"),
            "kafka.tools.StorageTool",
            "format",
            "--cluster-id",
            cid,
            "--config",
            str(self.properties_file),
            "--ignore-formatted",
        ]
        self._append_log(f"---- {time.strftime('%Y-%m-%d %H:%M:%S')} uptake: formatting storage")
        try:
            result = subprocess.run(
                cmd,
                capture_output=True,
                text=True,
                timeout=FORMAT_TIMEOUT_S,
                cwd=self.home,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise BrokerError(
                f"Formatting the Kafka storage in {self.data_dir} did not finish within "
                f"{FORMAT_TIMEOUT_S:g} s. Is the disk or the machine overloaded? Try again."
            ) from exc
        output = (result.stdout or "") + (result.stderr or "")
        self._append_log(output)
        if result.returncode != 0 or not meta.is_file():
            raise BrokerError(
                f"Formatting the Kafka storage in {self.data_dir} failed "
                f"(exit {result.returncode}). Last lines of its output:\n{_tail_text(output)}\n"
                f"If {self.data_dir} holds data of another cluster or Kafka version, stop the "
                f"broker, delete {self.home} and start again."
            )

    def _spawn(self, java: str, lib: Path) -> int:
        cmd = [
            *self._java_base(java, lib, self.heap),
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-XX:InitiatingHeapOccupancyPercent=35",
            "-XX:+ExplicitGCInvokesConcurrent",
            "kafka.Kafka",
            str(self.properties_file),
        ]
        self._append_log(
            f"---- {time.strftime('%Y-%m-%d %H:%M:%S')} uptake: starting Kafka {KAFKA_VERSION} "
            f"at {self.bootstrap}: {' '.join(cmd)}"
        )
        try:
            with open(self.log_file, "ab") as log:
                proc = subprocess.Popen(
                    cmd,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=self.home,
                    start_new_session=True,  # survives this process and its Ctrl-C
                    close_fds=True,
                )
        except OSError as exc:
            raise BrokerError(f"Could not run {java}: {exc}") from exc
        _CHILDREN[proc.pid] = proc
        _write_atomic(self.pid_file, f"{proc.pid}\n")
        return proc.pid

    def _log_tail(self) -> str:
        try:
            with open(self.log_file, "rb") as log:
                log.seek(0, os.SEEK_END)
                log.seek(max(0, log.tell() - 64 * 1024))
                text = log.read().decode("utf-8", errors="replace")
        except OSError:
            return "    (no log yet)"
        return _tail_text(text)

    def _wait_until_answering(self, pid: int, timeout: float, *, spawned_now: bool) -> BrokerStatus:
        deadline = time.monotonic() + timeout
        while True:
            if not _pid_alive(pid):
                child = _CHILDREN.pop(pid, None)
                code = "" if child is None else f" with exit code {child.returncode}"
                with contextlib.suppress(OSError):
                    self.pid_file.unlink()
                raise BrokerError(
                    f"The Kafka broker (pid {pid}) exited{code} before it answered at "
                    f"{self.bootstrap}.\nLast {LOG_TAIL_LINES} lines of {self.log_file}:\n"
                    f"{self._log_tail()}\n"
                    "Fix the cause shown there, then start it again. If the storage in "
                    f"{self.data_dir} is damaged or from another cluster, delete {self.home} "
                    "to start from scratch."
                )
            remaining = deadline - time.monotonic()
            if broker_answers(self.bootstrap, timeout=max(0.5, min(2.0, remaining))):
                return self._status_of(pid, answering=True)
            if time.monotonic() >= deadline:
                if spawned_now:
                    self._stop_unlocked(10.0)
                    what = "It was stopped again."
                else:
                    what = "It is still running; stop it with `uptake broker stop`."
                raise BrokerError(
                    f"The Kafka broker (pid {pid}) did not answer at {self.bootstrap} within "
                    f"{timeout:g} s. {what}\nLast {LOG_TAIL_LINES} lines of {self.log_file}:\n"
                    f"{self._log_tail()}\n"
                    "If the log shows it was still starting, try again with a larger --timeout."
                )
            time.sleep(0.25)

    def _stop_unlocked(self, timeout: float) -> bool:
        pid = self._live_pid()
        if pid is None:
            return False
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        if not _wait_for_exit(pid, timeout):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            if not _wait_for_exit(pid, 10.0):
                raise BrokerError(
                    f"The Kafka broker (pid {pid}) survived SIGTERM and SIGKILL. Check it with "
                    f"`ps -o pid,stat,cmd -p {pid}`; its log is {self.log_file}."
                )
        _CHILDREN.pop(pid, None)
        with contextlib.suppress(OSError):
            self.pid_file.unlink()
        return True
