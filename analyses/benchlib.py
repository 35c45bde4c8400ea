"""Shared plumbing for analyses/bench_*.py: peer environments, machine facts, alternated timing, the JSON line.

Why side environments: the peers (transformers, eai-sparsify, sae-lens, reverse-distillation) pin
packages we do not want in the project's environment. Each lives in `.bench/<peer>/` inside the
repository (git-ignored), created on first use with pinned versions and reused afterwards. The side
environment is an *overlay*: a `.pth` file puts the running interpreter's site-packages after its own,
so the peer runs on the very same torch build (same GEMM kernels, same thread pool) as ours, and pip
only installs what is missing; torch is pinned to the running version by a constraint so a peer can
never pull in another build. Nothing outside the repository is written except pip's download cache.

Why alternate: the machine is shared; timing ours and the peer in turns (ours, peer, ours, peer, ...)
and reporting medians keeps slow drifts in background load from favouring either side. The load that
other processes put on the CPUs during the run is measured from /proc/stat and stated in the result.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import sysconfig
import time
from collections.abc import Callable, Iterable
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BENCH_DIR = ROOT / ".bench"
MARKER = "rd_interp_peer.json"

# Peer name -> pinned requirements (what `pip install` gets, exactly).
PEERS: dict[str, list[str]] = {
    "transformers": ["transformers==5.24.0"],
    "sparsify": ["eai-sparsify==1.3.3"],
    "saelens": ["sae-lens==6.54.12"],
    # reverse-distillation 0.1.0 declares no usable dependency list: install it alone, then what it imports.
    "rdref": ["--no-deps reverse-distillation==0.1.0", "scikit-learn", "fbpca", "loguru", "huggingface_hub"],
}


class PeerError(RuntimeError):
    """A peer environment could not be created or a peer worker failed."""


# ------------------------------------------------------------------------------------------------
# side environments
# ------------------------------------------------------------------------------------------------
def _parent_paths() -> list[str]:
    paths = sysconfig.get_paths()
    out = []
    for key in ("purelib", "platlib"):
        p = paths[key]
        if p not in out:
            out.append(p)
    return out


def _torch_pin() -> list[str]:
    try:
        v = metadata.version("torch").split("+")[0]
    except metadata.PackageNotFoundError:
        return []
    return [f"torch=={v}"]


def peer_spec(peer: str) -> dict[str, Any]:
    """What determines a peer environment; a change in any of it rebuilds the environment."""
    if peer not in PEERS:
        raise PeerError(f"unknown peer {peer!r}; known: {sorted(PEERS)}")
    return {"peer": peer, "requirements": PEERS[peer], "constraints": _torch_pin(), "overlay": _parent_paths(),
            "python": sys.version.split()[0]}


def peer_python(peer: str, *, quiet: bool = True) -> str:
    """Path of the python of `.bench/<peer>/`, creating the environment on first use (then reused)."""
    spec = peer_spec(peer)
    env_dir = BENCH_DIR / peer
    py = env_dir / "bin" / "python"
    marker = env_dir / MARKER
    if marker.is_file() and py.exists():
        try:
            if json.loads(marker.read_text()) == spec:
                return str(py)
        except (OSError, ValueError):
            pass
    if env_dir.exists():
        shutil.rmtree(env_dir)
    BENCH_DIR.mkdir(exist_ok=True)
    print(f"[bench] creating the {peer} environment in .bench/{peer} (first use) ...", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    _check(subprocess.run([sys.executable, "-m", "venv", str(env_dir)], capture_output=True, text=True),
           f"python -m venv .bench/{peer}")
    site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    # Overlay: the side environment's own packages first, then the running interpreter's.
    Path(site, "zz_rd_interp_overlay.pth").write_text("\n".join(spec["overlay"]) + "\n")
    constraints = env_dir / "constraints.txt"
    constraints.write_text("\n".join(spec["constraints"]) + "\n")
    base = [str(py), "-m", "pip", "install", "--disable-pip-version-check"] + (["-q"] if quiet else [])
    for req in spec["requirements"]:
        args = req.split()
        _check(subprocess.run(base + ["-c", str(constraints)] + args, capture_output=True, text=True),
               f".bench/{peer}: pip install {req}")
    marker.write_text(json.dumps(spec))
    print(f"[bench] .bench/{peer} ready in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    return str(py)


def _check(proc: subprocess.CompletedProcess, what: str) -> None:
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout or "").strip().splitlines()
        raise PeerError(f"{what} failed: {tail[-1] if tail else 'exit ' + str(proc.returncode)}")


def peer_versions(python: str, packages: Iterable[str]) -> dict[str, str]:
    code = ("import json, sys\nfrom importlib import metadata\nout = {}\nfor p in sys.argv[1:]:\n"
            "    try: out[p] = metadata.version(p)\n    except metadata.PackageNotFoundError: out[p] = None\n"
            "print(json.dumps(out))")
    proc = subprocess.run([python, "-c", code, *packages], capture_output=True, text=True)
    _check(proc, "reading peer versions")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def thread_env(threads: int) -> dict[str, str]:
    """Environment that caps every thread pool a peer may start (OpenMP, MKL, OpenBLAS, tokenizers)."""
    t = str(threads)
    return dict(os.environ, OMP_NUM_THREADS=t, MKL_NUM_THREADS=t, OPENBLAS_NUM_THREADS=t,
                TOKENIZERS_PARALLELISM="false", WANDB_MODE="disabled", TQDM_DISABLE="1",
                HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONWARNINGS="ignore")


class PeerWorker:
    """A long-lived peer process that runs `code` and then serves JSON requests line by line.

    `code` must define `handle(request: dict) -> dict`. Lines the peer prints that do not start with
    the result tag (library banners) are ignored. A persistent worker lets the caller alternate
    ours/peer rounds without paying the peer's import time in every round.
    """

    TAG = "RD_PEER_RESULT "

    def __init__(self, python: str, code: str, threads: int, cwd: str | os.PathLike | None = None):
        loop = (
            "\nimport json as _json, sys as _sys, traceback as _tb\n"
            "for _line in _sys.stdin:\n"
            "    try:\n"
            "        _out = {'ok': True, 'result': handle(_json.loads(_line))}\n"
            "    except Exception as _exc:\n"
            "        _out = {'ok': False, 'error': f'{type(_exc).__name__}: {_exc}', 'trace': _tb.format_exc()[-2000:]}\n"
            f"    print({self.TAG!r} + _json.dumps(_out), flush=True)\n"
        )
        self.proc = subprocess.Popen([python, "-c", code + loop], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=thread_env(threads), cwd=cwd)

    def call(self, **request) -> dict:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        try:
            self.proc.stdin.write(json.dumps(request) + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            raise PeerError(f"peer worker died: {self._stderr_tail()}") from None
        for line in self.proc.stdout:
            if line.startswith(self.TAG):
                out = json.loads(line[len(self.TAG):])
                if not out["ok"]:
                    raise PeerError(f"peer failed on {request.get('op')}: {out['error']}\n{out['trace']}")
                return out["result"]
        raise PeerError(f"peer worker exited: {self._stderr_tail()}")

    def _stderr_tail(self) -> str:
        self.proc.wait(timeout=30)
        err = self.proc.stderr.read() if self.proc.stderr else ""
        lines = [ln for ln in err.strip().splitlines() if ln.strip()]
        return lines[-1] if lines else f"exit code {self.proc.returncode}"

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> PeerWorker:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ------------------------------------------------------------------------------------------------
# machine facts and background load
# ------------------------------------------------------------------------------------------------
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cpu_busy_seconds() -> float | None:
    """Seconds all CPUs spent busy since boot (user+nice+system+irq+softirq+steal), from /proc/stat."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return None
    vals = [int(v) for v in fields]
    busy = vals[0] + vals[1] + vals[2] + vals[5] + vals[6] + (vals[7] if len(vals) > 7 else 0)
    return busy / os.sysconf("SC_CLK_TCK")


def _own_cpu_seconds() -> float:
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


class LoadMeter:
    """CPU cores kept busy by OTHER processes while the benchmark ran (our process and its waited-for
    children excluded). Live peer workers are not yet counted as ours until they exit, so call
    `stop()` after closing them."""

    def __init__(self) -> None:
        self.t0, self.busy0, self.own0 = time.perf_counter(), _cpu_busy_seconds(), _own_cpu_seconds()
        self.load0 = os.getloadavg()[0]

    def stop(self) -> dict[str, Any]:
        wall = time.perf_counter() - self.t0
        busy1, own1 = _cpu_busy_seconds(), _own_cpu_seconds()
        others = None
        if self.busy0 is not None and busy1 is not None and wall > 0:
            others = max(0.0, ((busy1 - self.busy0) - (own1 - self.own0)) / wall)
        return {"wall_s": round(wall, 1), "other_processes_cores_busy": None if others is None else round(others, 2),
                "loadavg_1m_start": round(self.load0, 2), "loadavg_1m_end": round(os.getloadavg()[0], 2)}


def machine(threads: int) -> dict[str, Any]:
    import numpy as np
    import torch

    out = {"cpu_model": cpu_model(), "cpu_count": os.cpu_count(), "threads": threads,
           "torch_threads": torch.get_num_threads(), "python": sys.version.split()[0], "torch": torch.__version__,
           "numpy": np.__version__, "platform": platform.platform()}
    try:
        out["rd_interp"] = metadata.version("rd_interp")
    except metadata.PackageNotFoundError:
        out["rd_interp"] = "source tree"
    try:
        out["git_commit"] = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                                           capture_output=True, text=True).stdout.strip() or None
        # code changed since that commit (the package or the benchmark scripts): the figures are not that commit's
        changed = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no", "--",
                                  "rd_interp", "analyses/*.py"], capture_output=True, text=True).stdout.strip()
        if out["git_commit"] and changed:
            out["git_commit"] += "-dirty"
    except OSError:
        out["git_commit"] = None
    return out


# ------------------------------------------------------------------------------------------------
# timing
# ------------------------------------------------------------------------------------------------
def alternate(runners: dict[str, Callable[[], float | None]], rounds: int) -> dict[str, list[float]]:
    """Run each runner once per round, in turns, starting with a different one each round.

    A runner returns the seconds it measured itself (e.g. inside a peer process) or None, in which
    case its wall time here is used.
    """
    names = list(runners)
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        for n in names[r % len(names):] + names[: r % len(names)]:
            t0 = time.perf_counter()
            got = runners[n]()
            times[n].append(float(got) if got is not None else time.perf_counter() - t0)
    return times


def interleave(units: dict[str, list[Callable[[], float | None]]], rounds: int) -> dict[str, dict[str, Any]]:
    """Time several tools' work units finely interleaved, `rounds` times.

    Each tool's work is a list of units (e.g. one batch each); within a round the units of all tools are
    merged by their relative position in their own list, so every tool sees the same background load
    over the same stretch of time; the tools' order rotates between rounds. A unit returns the seconds it
    measured itself (inside a peer process) or None (wall time here). Per tool: `round_s` (total of each
    round), `median_s`, and `best_s` = sum over units of the unit's fastest round (the least load-
    sensitive estimate, used for ratios).
    """
    names = list(units)
    per: dict[str, list[list[float]]] = {n: [[0.0] * len(units[n]) for _ in range(rounds)] for n in names}
    for r in range(rounds):
        rot = names[r % len(names):] + names[: r % len(names)]
        sched = sorted(((j + 0.5) / len(units[n]), rot.index(n), n, j) for n in names for j in range(len(units[n])))
        for _, _, n, j in sched:
            t0 = time.perf_counter()
            got = units[n][j]()
            per[n][r][j] = float(got) if got is not None else time.perf_counter() - t0
    out = {}
    for n in names:
        totals = [sum(x) for x in per[n]]
        best = sum(min(per[n][r][j] for r in range(rounds)) for j in range(len(units[n])))
        out[n] = {"round_s": [round(t, 3) for t in totals], "median_s": median(totals), "best_s": best}
    return out


def median(xs: list[float]) -> float:
    s = sorted(xs)
    m = len(s) // 2
    return s[m] if len(s) % 2 else 0.5 * (s[m - 1] + s[m])


def median_item(items: list, key: Callable[[Any], float]) -> Any:
    """The item whose key is the median (the lower middle one for an even count): a whole run's record, not
    an average of two runs."""
    return sorted(items, key=key)[(len(items) - 1) // 2]


def gemm_ceiling(shapes: list[tuple[int, int, int]], threads: int, seconds: float = 0.6,
                 dtype: str = "float32") -> dict[str, Any]:
    """Best GFLOP/s of torch.mm over `shapes` (M, K, N) on this machine now, with `threads` threads.

    Each shape is run for about `seconds` after a warm-up; the ceiling is the fastest shape's rate.
    """
    import torch

    torch.set_num_threads(threads)
    dt = getattr(torch, dtype)
    g = torch.Generator().manual_seed(0)
    rates = {}
    for M, K, N in shapes:
        a = torch.randn(M, K, generator=g).to(dt)
        b = torch.randn(K, N, generator=g).to(dt)
        out = torch.empty(M, N, dtype=dt)
        torch.mm(a, b, out=out)
        n, t0 = 0, time.perf_counter()
        best = float("inf")
        while time.perf_counter() - t0 < seconds or n < 3:
            t1 = time.perf_counter()
            torch.mm(a, b, out=out)
            best = min(best, time.perf_counter() - t1)
            n += 1
        rates[f"{M}x{K}x{N}"] = 2.0 * M * K * N / best / 1e9
    top = max(rates, key=rates.get)
    return {"dtype": dtype, "gflops": round(rates[top], 1), "best_shape": top,
            "by_shape": {k: round(v, 1) for k, v in rates.items()}}


def cpu_profile():
    """torch's profiler over CPU operators, for the benchmarks' breakdowns of where time goes. Its tracing library
    (kineto) logs an "ERROR ... gpuGetDeviceCount failed" on every machine without a GPU; that is no error here,
    so its log level is raised (unless the user set one)."""
    from torch.profiler import ProfilerActivity, profile

    os.environ.setdefault("KINETO_LOG_LEVEL", "5")
    return profile(activities=[ProfilerActivity.CPU])


def op_seconds(prof, match: Callable[[str], bool], *, inclusive: bool = False) -> float:
    """Seconds a finished `cpu_profile` spent in the operators whose name `match`es: their self time (a wrapper
    never counts its kernel twice), or with `inclusive` their total with everything they called (an autograd
    node's own Python kernels are no operators of their own)."""
    field = "cpu_time_total" if inclusive else "self_cpu_time_total"
    return sum(getattr(ev, field) for ev in prof.key_averages() if match(ev.key)) / 1e6


# ------------------------------------------------------------------------------------------------
# the final line
# ------------------------------------------------------------------------------------------------
def _plain(o: Any) -> Any:
    import numpy as np

    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, np.bool_):
        return bool(o)
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON-serialisable: {type(o).__name__}")


def emit(result: dict[str, Any]) -> None:
    """Print the benchmark's ONE final JSON line (what `make bench` collects)."""
    sys.stdout.flush()
    print(json.dumps(result, default=_plain, allow_nan=False), flush=True)


def last_json_line(text: str) -> dict[str, Any]:
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            return json.loads(line)
    raise ValueError("no JSON line in the benchmark's output")


def replace_section(name: str, text: str, readme: Path = ROOT / "README.md") -> None:
    """Replace the README between `<!-- name:start -->` and `<!-- name:end -->` (figures are generated, never
    typed; each generator owns one such section)."""
    from rd_interp.io.atomic import write_text

    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    body = readme.read_text()
    if start not in body or end not in body:
        raise SystemExit(f"{readme}: markers {start} / {end} not found")
    a, b = body.index(start) + len(start), body.index(end)
    write_text(readme, body[:a] + "\n" + text + body[b:])
