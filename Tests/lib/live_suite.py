"""What the Python suites under Tests/ share: their ok / not ok lines and a tollgated started for them.

    sys.path.insert(0, os.path.join(here, "..", "lib"))
    from live_suite import Results, LiveDaemon

A suite prints one line per check and ends with "N passed, M failed" (the line scripts/test.sh counts), and runs
one daemon it starts, restarts and stops itself. Nothing here sleeps to let time pass: start-up is polled with a
bound.
"""
import subprocess
import sys
import time


class Results:
    """The ok / not ok lines of a suite and their counts."""

    def __init__(self):
        self.passed = 0
        self.failed = 0

    def record(self, ok: bool, name: str, detail: str = "") -> bool:
        if ok:
            self.passed += 1
            print(f"ok - {name}")
        else:
            self.failed += 1
            print(f"not ok - {name}")
            for line in str(detail).splitlines()[-30:]:
                print(f"#   {line}")
        return ok

    def finish(self):
        """Prints the summary line and exits 1 when any check failed."""
        print(f"{self.passed} passed, {self.failed} failed")
        sys.exit(0 if self.failed == 0 else 1)


class LiveDaemon:
    """A tollgated run as `argv` in `cwd`, its output appended to `log_path`; `ready()` says when it serves."""

    def __init__(self, argv: list, cwd: str, log_path: str, ready):
        self.argv = argv
        self.cwd = cwd
        self.log_path = log_path
        self.ready = ready
        self.proc = None

    def start(self, seconds: float = 30):
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.argv, cwd=self.cwd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"tollgated exited with {self.proc.returncode}:\n{self.read_log()}")
            if self.ready():
                return
            time.sleep(0.05)
        raise RuntimeError(f"tollgated did not come up within {seconds:.0f} s:\n" + self.read_log())

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def read_log(self, tail: int | None = None) -> str:
        """The daemon's output so far (its last `tail` bytes when given)."""
        try:
            with open(self.log_path, "rb") as f:
                data = f.read()
        except OSError:
            return ""
        return (data[-tail:] if tail else data).decode("utf-8", "replace")
