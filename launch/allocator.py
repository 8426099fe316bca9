"""A malloc set-up that suits XLA:CPU, applied by re-executing the entry point once at start-up.

XLA:CPU allocates each execution's temporaries afresh, and glibc serves and frees blocks that large with
mmap/munmap, so every step pays page faults on fresh memory: about 6.5 million minor faults in 40 steps of
the 4x256 transformer, and a fifth of its throughput (BENCHMARKS.md, "Allocator"). glibc's transparent-huge-
page option cuts the faults 47-fold (+13% for that transformer, nothing lost on small models); jemalloc told
to keep freed memory gains +25% there but costs small models 2-5% and made the text CNN's runs erratic.
Both are read from the environment when a process starts, hence the re-exec (same PID, same arguments).

FLAXFORGE_MALLOC: unset or "auto" = glibc huge pages; "jemalloc" (when libjemalloc.so.2 is installed);
"system" = leave the process as it is. Unset, a config's own `malloc` field decides: flaxforge.launch.train re-executes
a second time when its config asks for what the first one did not apply (the transformer configs: jemalloc).
"""
import os
import platform
import sys

CHOICE = "FLAXFORGE_MALLOC"
APPLIED = "FLAXFORGE_MALLOC_APPLIED"
JEMALLOC = ("/usr/lib/x86_64-linux-gnu/libjemalloc.so.2", "/usr/lib/aarch64-linux-gnu/libjemalloc.so.2",
            "/usr/lib64/libjemalloc.so.2", "/usr/local/lib/libjemalloc.so.2")
RETAIN = "dirty_decay_ms:-1,muzzy_decay_ms:-1"  # jemalloc: never hand freed pages back to the OS
HUGE_PAGES = "glibc.malloc.hugetlb=1"  # glibc >= 2.35: madvise(MADV_HUGEPAGE) on the heap and mmap'd blocks


def environment(env, exists=os.path.exists, linux_glibc=None, config_choice: str = "auto") -> dict | None:
  """The environment to re-execute with, or None to leave this process as it is. FLAXFORGE_MALLOC, when
  set, overrides `config_choice`."""
  if linux_glibc is None:
    linux_glibc = sys.platform == "linux" and platform.libc_ver()[0] == "glibc"
  choice = env.get(CHOICE) or config_choice or "auto"
  if choice not in ("auto", "jemalloc", "system"):
    fix = "unset it for the default" if env.get(CHOICE) else "--config.malloc=auto is the default"
    where = CHOICE if env.get(CHOICE) else "config.malloc"
    raise ValueError(f"{where} must be auto, jemalloc or system, not {choice!r}; {fix}")
  if not linux_glibc or choice == "system":
    return None
  jemalloc = next((path for path in JEMALLOC if exists(path)), None)
  if choice == "jemalloc" and jemalloc and not env.get("LD_PRELOAD"):
    new = dict(env, **{APPLIED: "jemalloc", "LD_PRELOAD": jemalloc, "MALLOC_CONF": env.get("MALLOC_CONF") or RETAIN})
  else:
    tunables = ":".join(filter(None, (env.get("GLIBC_TUNABLES"), HUGE_PAGES)))
    new = dict(env, **{APPLIED: "glibc-hugetlb", "GLIBC_TUNABLES": tunables})
  # Applied already: only a config asking for jemalloc where the first pass put huge pages changes it.
  return None if env.get(APPLIED) in (new[APPLIED], "jemalloc") else new


def reexec_once(config_choice: str = "auto"):
  """Replaces this process by itself under `environment()`; returns only if nothing needs changing."""
  try:
    new = environment(os.environ, config_choice=config_choice)
  except ValueError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  if new is not None:
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], new)
